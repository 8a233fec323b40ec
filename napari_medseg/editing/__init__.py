"""Editing and annotation tools on label maps (pure numpy/scipy; no napari, no Qt).

All label functions take an integer label map (``(Z, Y, X)`` or ``(Y, X)``), spacing in mm in
array axis order, and return a NEW array; other labels are left untouched unless
``overwrite=True``. Keyword-only ``axis``/``slice_index`` restrict an edit to one slice (any
orientation) or to every slice in 2D; ``label=None`` (or 0) means all labels where sensible.
Wrong inputs raise :class:`EditingError` (a ``ValueError``) with a readable message.

Modules
-------
morphology     grow/shrink/open/close/smooth/hollow a label, radius in mm (exact ellipsoid)
_structuring   the fast binary morphology behind it (run decomposition or distance transform)
components     fill holes, remove islands, keep largest / clicked piece, component table
logic          union / intersect / subtract of two labels
interpolation  shape-based interpolation between annotated slices
contours       per-slice outlines as polygons (mm, or voxel indices for napari Shapes)
presegment     classical pre-segmentation (the public names of the parts below):
  presegment_intensity   Otsu/window threshold, region growing, watershed, constrained paint
  presegment_air         air threshold and outside-body air on CT
  presegment_clustering  k-means, Gaussian mixture
  presegment_lungs       lungs on CT
patches        EditPatch / make_patch / apply_operation / UndoStack for undo and redo

Quick reference (``L`` label map, ``sp`` spacing in mm; common keywords: ``axis=None,
slice_index=None`` 2D editing, ``overwrite=False``, ``method="auto"``)
-----------------------------------------------------------------------------------------
grow_label(L, label, radius_mm, sp)      shrink_label(L, label, radius_mm, sp)
open_label(L, label, radius_mm, sp)      close_label(L, label, radius_mm, sp)
smooth_label(L, label, radius_mm, sp)    hollow_label(L, label, thickness_mm, sp, side="inside")
fill_holes(L, label)                     remove_islands(L, label, min_volume_mm3, sp)
keep_largest(L, label)                   keep_component(L, label, point)
combine_labels(L, a, b, op, other=None)  interpolate_slices(L, label, axis=0, spacing=, annotated=)
component_table(L, label, sp, origin)    -> list of dicts (id, label, voxels, volume_ml, ...)
label_contours(L, label, axis, sp, origin) -> [(slice, (N, 2) mm)]
label_contours_for_shapes(L, label, axis)  -> [(N, 3) voxel-index polygons]
threshold_segment(img, "otsu"|"window"|"multiotsu", low, high)   region_grow(img, seed, tol)
kmeans_segment(img, n)   gmm_segment(img, n)   watershed_segment(img, markers)
outside_air_mask(img, modality)  -> bool mask of the air around the body (left 0 by clustering)
lungs_ct(img, sp, exclude_airways=True, separate_sides=False, affine=None)  -> 1 lung (1 R, 2 L)
intensity_mask(img, low, high)   constrain_paint(old_L, new_L, img, low, high)
patch = apply_operation(L, "close_label", label=1, radius_mm=3, spacing=sp)  # in place
edit = make_edit(old_L, new_L)  -> EditPatch (bounding box) or IndexedEdit (few voxels) or None
UndoStack(max_bytes).push(patch) / .undo(L) / .redo(L)
"""

from napari_medseg.editing._structuring import (
    BALL_TOLERANCE,
    close_mask,
    dilate_mask,
    ellipsoid_footprint,
    erode_mask,
    open_mask,
)
from napari_medseg.editing._validation import EditingError
from napari_medseg.editing.components import (
    component_table,
    count_holes,
    fill_holes,
    keep_component,
    keep_largest,
    remove_islands,
)
from napari_medseg.editing.contours import label_contours, label_contours_for_shapes
from napari_medseg.editing.interpolation import interpolate_slices, signed_distance
from napari_medseg.editing.logic import COMBINE_OPS, combine_labels
from napari_medseg.editing.morphology import (
    close_label,
    grow_label,
    hollow_label,
    open_label,
    shrink_label,
    smooth_label,
)
from napari_medseg.editing.patches import (
    OPERATIONS,
    EditPatch,
    IndexedEdit,
    UndoStack,
    apply_operation,
    make_edit,
    make_patch,
)
from napari_medseg.editing.presegment import (
    air_threshold,
    constrain_paint,
    gmm_segment,
    intensity_mask,
    kmeans_segment,
    lungs_ct,
    outside_air_mask,
    region_grow,
    threshold_segment,
    watershed_segment,
)

__all__ = [
    "BALL_TOLERANCE",
    "COMBINE_OPS",
    "OPERATIONS",
    "EditPatch",
    "EditingError",
    "IndexedEdit",
    "UndoStack",
    "air_threshold",
    "apply_operation",
    "close_label",
    "close_mask",
    "combine_labels",
    "component_table",
    "constrain_paint",
    "count_holes",
    "dilate_mask",
    "ellipsoid_footprint",
    "erode_mask",
    "fill_holes",
    "gmm_segment",
    "grow_label",
    "hollow_label",
    "intensity_mask",
    "interpolate_slices",
    "keep_component",
    "keep_largest",
    "kmeans_segment",
    "label_contours",
    "label_contours_for_shapes",
    "lungs_ct",
    "make_edit",
    "make_patch",
    "open_label",
    "open_mask",
    "outside_air_mask",
    "region_grow",
    "remove_islands",
    "shrink_label",
    "signed_distance",
    "smooth_label",
    "threshold_segment",
    "watershed_segment",
]
