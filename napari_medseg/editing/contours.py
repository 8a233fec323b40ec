"""Per-slice contours (outlines) of a label as polygons, for export and napari Shapes layers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage import measure

from napari_medseg.editing._validation import (
    EditingError,
    check_axis,
    check_label_value,
    check_labels,
    check_spacing,
    require_label,
)

__all__ = ["label_contours", "label_contours_for_shapes"]


def _slice_polygons(labels: np.ndarray, value: int, ax: int, level: float):
    """Yield (slice index, polygon (N, 2) in in-plane voxel index coordinates)."""
    mask = labels == value
    other = tuple(i for i in range(labels.ndim) if i != ax)
    for k in np.flatnonzero(mask.any(axis=other)):
        plane = np.take(mask, int(k), axis=ax).astype(np.float32)
        # pad so that outlines touching the image border are closed polygons
        padded = np.pad(plane, 1)
        for poly in measure.find_contours(padded, level):
            yield int(k), poly - 1.0


def label_contours(
    labels: np.ndarray,
    label: int,
    axis: int = 0,
    spacing: Sequence[float] | None = None,
    origin: Sequence[float] | None = None,
    *,
    level: float = 0.5,
) -> list[tuple[int, np.ndarray]]:
    """Outlines of a label on every slice along ``axis``, in physical mm coordinates.

    Parameters
    ----------
    labels : np.ndarray
        Integer label map ``(Z, Y, X)``.
    label : int
        Label whose outline is wanted.
    axis : int
        Slicing axis (0 = axial slices of a ``(Z, Y, X)`` volume).
    spacing : sequence of float, optional
        Voxel size in mm, array axis order (3 values; default 1 mm).
    origin : sequence of float, optional
        Physical position (mm) of voxel index 0, array axis order (default zeros).
    level : float
        Iso-level of ``skimage.measure.find_contours`` on the 0/1 mask (0.5 = half-way between
        label and background voxel centres).

    Returns
    -------
    list of (int, np.ndarray)
        ``(slice_index, polygon)`` pairs in slice order; ``polygon`` has shape ``(N, 2)`` with
        the two in-plane axes in array order (for ``axis=0``: ``(y_mm, x_mm)``), computed as
        ``origin + index * spacing``. Closed outlines repeat their first point at the end. A slice
        with several pieces or holes gives several polygons.
    """
    lab = check_labels(labels, ndims=(3,))
    ax = check_axis(axis, 3)
    sp = np.asarray(check_spacing(spacing, 3))
    org = np.zeros(3) if origin is None else np.asarray(origin, dtype=float)
    if org.shape != (3,):
        raise EditingError(f"The origin must have 3 values in mm, got {tuple(org.ravel())}.")
    value = check_label_value(label, allow_all=False)
    require_label(lab, value)
    keep = [i for i in range(3) if i != ax]
    return [(k, org[keep] + poly * sp[keep]) for k, poly in _slice_polygons(lab, value, ax, level)]


def label_contours_for_shapes(
    labels: np.ndarray,
    label: int,
    axis: int = 0,
    *,
    level: float = 0.5,
) -> list[np.ndarray]:
    """Outlines of a label as polygons for a napari Shapes layer (array index coordinates).

    Each polygon is an ``(N, 3)`` array of ``(z, y, x)`` voxel indices (fractional in-plane,
    the slice index constant along ``axis``), i.e. data coordinates of a layer drawn over the
    label map: give the Shapes layer the image's ``scale``/``translate`` to place it in mm.
    Add them with ``viewer.add_shapes(polys, shape_type="polygon")``.
    """
    lab = check_labels(labels, ndims=(3,))
    ax = check_axis(axis, 3)
    value = check_label_value(label, allow_all=False)
    require_label(lab, value)
    keep = [i for i in range(3) if i != ax]
    out = []
    for k, poly in _slice_polygons(lab, value, ax, level):
        full = np.empty((poly.shape[0], 3))
        full[:, ax] = k
        full[:, keep] = poly
        out.append(full)
    return out
