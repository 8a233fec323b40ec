"""Shape-based interpolation of a label between annotated slices (signed-distance blending)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from napari_medseg.editing._validation import (
    bbox,
    check_axis,
    check_label_value,
    check_labels,
    check_spacing,
    expand_bbox,
    plane_index,
    present_labels,
    require_label,
)

__all__ = ["interpolate_slices", "signed_distance"]


def signed_distance(mask: np.ndarray, spacing: Sequence[float] | None = None) -> np.ndarray:
    """Signed Euclidean distance map of a 2D or 3D mask in mm (negative inside, positive outside).

    Inside voxels hold minus their distance to the nearest background voxel, outside voxels their
    distance to the nearest mask voxel, so the boundary lies half-way between the two voxel
    layers. A mask without any background measures inside distances to outside the array.
    """
    m = np.asarray(mask, dtype=bool)
    sp = check_spacing(spacing, m.ndim)
    if not m.any():
        return np.full(m.shape, np.inf)
    if m.all():
        inside = ndi.distance_transform_edt(np.pad(m, 1), sampling=sp)[(slice(1, -1),) * m.ndim]
    else:
        inside = ndi.distance_transform_edt(m, sampling=sp)
    outside = ndi.distance_transform_edt(~m, sampling=sp)
    return np.where(m, -inside, outside)


def _interpolate_one(out: np.ndarray, original: np.ndarray, value: int, ax: int,
                     sp2: tuple[float, ...], annotated: set[int]) -> None:
    mask = original == value
    other = tuple(i for i in range(original.ndim) if i != ax)
    has_label = mask.any(axis=other)
    keys = sorted(set(np.flatnonzero(has_label).tolist()) | annotated)
    for k0, k1 in zip(keys[:-1], keys[1:], strict=False):
        if k1 - k0 < 2 or not (has_label[k0] and has_label[k1]):
            continue
        a = np.take(mask, k0, axis=ax)
        b = np.take(mask, k1, axis=ax)
        box = bbox(a | b)
        crop = expand_bbox(box, (1, 1), a.shape)
        sd_a = signed_distance(a[crop], sp2)
        sd_b = signed_distance(b[crop], sp2)
        for k in range(k0 + 1, k1):
            t = (k - k0) / (k1 - k0)
            inside = (1.0 - t) * sd_a + t * sd_b <= 0
            idx: list = [slice(None)] * original.ndim
            idx[ax] = k
            plane = out[tuple(idx)][crop]
            plane[inside & (plane == 0)] = value


def interpolate_slices(
    labels: np.ndarray,
    label: int | None,
    axis: int = 0,
    *,
    spacing: Sequence[float] | None = None,
    annotated: Sequence[int] | None = None,
) -> np.ndarray:
    """Fill the slices between annotated slices of a label by shape-based interpolation.

    The annotated slices of a label are the slices along ``axis`` where it has voxels, plus the
    slices listed in ``annotated`` (slices the annotator marked as done, possibly empty). For each
    pair of consecutive annotated slices ``k0 < k1`` with empty slices between them, slice
    ``k = k0 + t (k1 - k0)`` receives the voxels where the linear blend
    ``(1 - t) * sd(k0) + t * sd(k1)`` of their signed distance maps is <= 0, so the shape morphs
    from one outline to the other. Annotated slices are not changed; only background voxels
    (0) of the in-between slices are filled, so other labels are preserved.

    The blend of signed distances only morphs outlines that overlap from one annotated slice to
    the next (as usual for shape-based interpolation): two outlines that do not overlap at all
    give empty slices around the middle, so annotate more slices where a structure moves fast.

    Parameters
    ----------
    labels : np.ndarray
        Integer label map ``(Z, Y, X)``.
    label : int or None
        Label to interpolate; ``None``/0 interpolates every label independently (ascending
        order, each from the original annotation).
    axis : int
        Axis along which slices were annotated (0 = axial slices of a (Z, Y, X) volume).
    spacing : sequence of float, optional
        Voxel size in mm (3 values, array order); only the in-plane values matter, for the
        distance maps. Default isotropic.
    annotated : sequence of int, optional
        Slice indices along ``axis`` marked as annotated. They are never changed, and a marked
        slice without the label stops the interpolation there (the structure has ended), so
        nothing is filled between it and its neighbouring key slices.

    Returns
    -------
    np.ndarray
        New label map.
    """
    lab = check_labels(labels, ndims=(3,))
    ax = check_axis(axis, lab.ndim)
    sp = check_spacing(spacing, lab.ndim)
    sp2 = tuple(s for i, s in enumerate(sp) if i != ax)
    value = check_label_value(label)
    if value is not None:
        require_label(lab, value)
        todo = [value]
    else:
        todo = present_labels(lab)
    marks: set[int] = set()
    for k in annotated or ():
        marks.add(plane_index(lab.shape, ax, k)[ax])
    out = lab.copy()
    for v in todo:
        _interpolate_one(out, lab, v, ax, sp2, marks)
    return out
