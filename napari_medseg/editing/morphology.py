"""Morphology on label maps with radii in millimetres (grow, shrink, open, close, smooth, hollow).

Every function takes a label map (integer array, ``(Z, Y, X)`` or ``(Y, X)``), returns a NEW array
and leaves other labels untouched unless ``overwrite=True`` is passed. The structuring element is
the physical ellipsoid of :func:`~napari_medseg.editing.ellipsoid_footprint` (anisotropic spacing
respected), computed exactly and fast (see :mod:`napari_medseg.editing._structuring`).

Where the edit happens (keyword-only, same in every function)
    ``axis=None, slice_index=None``  the whole 3D (or 2D) array;
    ``slice_index=k`` (``axis`` defaults to 0)  only slice ``k`` along ``axis``, in 2D with the
    in-plane spacing (the "current slice" of the viewer, any orientation);
    ``axis=a`` without ``slice_index``  every slice along ``a`` independently in 2D.

``label=None`` or ``0`` means every label (processed as documented per function), except the
value 255 (:data:`~napari_medseg.events.IGNORE_LABEL`, unannotated voxels), which "all labels"
edits leave alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from napari_medseg.editing._structuring import (
    close_mask,
    dilate_mask,
    ellipsoid_footprint,
    erode_mask,
    footprint_margin,
    open_mask,
)
from napari_medseg.editing._validation import (
    EditingError,
    bbox,
    check_label_value,
    check_labels,
    check_radius,
    check_spacing,
    expand_bbox,
    present_labels,
    run_in_plane,
)
from napari_medseg.events import IGNORE_LABEL

__all__ = [
    "grow_label",
    "shrink_label",
    "open_label",
    "close_label",
    "smooth_label",
    "hollow_label",
]


def _grow_all(lab: np.ndarray, r: float, sp: tuple[float, ...], method: str) -> np.ndarray:
    """Grow every label into the background; a voxel reached by several goes to the nearest."""
    out = lab.copy()
    fg = (lab != 0) & (lab != IGNORE_LABEL)
    box = bbox(fg)
    if box is None:
        return out
    crop = expand_bbox(box, footprint_margin(ellipsoid_footprint(r, sp)), lab.shape)
    sub = lab[crop]
    new = dilate_mask(fg[crop], r, sp, method=method) & (sub == 0)
    if not new.any():
        return out
    idx = ndi.distance_transform_edt(~fg[crop], sampling=sp, return_distances=False,
                                     return_indices=True)
    region = out[crop]
    region[new] = sub[tuple(i[new] for i in idx)]
    return out


def _binary_edit(
    labels: np.ndarray,
    label: int | None,
    spacing: Sequence[float] | None,
    axis: int | None,
    slice_index: int | None,
    new_mask_fn,
    *,
    overwrite: bool,
    all_fn=None,
) -> np.ndarray:
    """Shared driver: replace ``labels == label`` by ``new_mask_fn(mask, spacing)``.

    Voxels leaving the label become 0; voxels joining it are taken only from the background
    (value 0) unless ``overwrite``. With ``label`` None every present label is processed in
    ascending order on the running result (or ``all_fn`` is used if given).
    """
    lab = check_labels(labels)
    sp = check_spacing(spacing, lab.ndim)
    value = check_label_value(label)

    def one(sub: np.ndarray, sub_sp: tuple[float, ...]) -> np.ndarray:
        if value is None and all_fn is not None:
            return all_fn(sub, sub_sp)
        todo = [value] if value is not None else present_labels(sub)
        out = sub.copy()
        for v in todo:
            mask = out == v
            if not mask.any():
                continue
            new = new_mask_fn(mask, sub_sp)
            out[mask & ~new] = 0
            add = new & ~mask
            if not overwrite:
                add &= out == 0
            out[add] = v
        return out

    return run_in_plane(lab, sp, axis, slice_index, value, one)


def grow_label(
    labels: np.ndarray,
    label: int | None,
    radius_mm: float,
    spacing: Sequence[float],
    *,
    overwrite: bool = False,
    axis: int | None = None,
    slice_index: int | None = None,
    method: str = "auto",
) -> np.ndarray:
    """Grow (dilate) a label by ``radius_mm`` millimetres.

    Parameters
    ----------
    labels : np.ndarray
        Integer label map, ``(Z, Y, X)`` or ``(Y, X)``.
    label : int or None
        Label value to grow. ``None``/0: all labels grow into the background at once, each
        background voxel within the radius taking the label of the nearest labelled voxel.
    radius_mm : float
        Margin in mm.
    spacing : sequence of float
        Voxel size in mm, array axis order (same length as ``labels.ndim``).
    overwrite : bool
        If True the grown label also replaces other labels; by default it fills background only.
    axis, slice_index : int, optional
        2D editing (see module docstring).
    method : {"auto", "rows", "edt", "reference"}
        Morphology algorithm; all give the same result.

    Returns
    -------
    np.ndarray
        New label map, same shape and dtype.
    """
    r = check_radius(radius_mm)

    def all_fn(sub, sub_sp):
        return _grow_all(sub, r, sub_sp, method)

    return _binary_edit(labels, label, spacing, axis, slice_index,
                        lambda m, s: dilate_mask(m, r, s, method=method),
                        overwrite=overwrite, all_fn=all_fn)


def shrink_label(
    labels: np.ndarray,
    label: int | None,
    radius_mm: float,
    spacing: Sequence[float],
    *,
    axis: int | None = None,
    slice_index: int | None = None,
    method: str = "auto",
) -> np.ndarray:
    """Shrink (erode) a label by ``radius_mm`` mm; removed voxels become background (0).

    A label touching the image border is not eroded from that border (scikit-image convention).
    Other labels count as "outside" the label. Parameters as :func:`grow_label`; ``label=None``
    shrinks every label.
    """
    r = check_radius(radius_mm)
    return _binary_edit(labels, label, spacing, axis, slice_index,
                        lambda m, s: erode_mask(m, r, s, method=method), overwrite=False)


def open_label(
    labels: np.ndarray,
    label: int | None,
    radius_mm: float,
    spacing: Sequence[float],
    *,
    axis: int | None = None,
    slice_index: int | None = None,
    method: str = "auto",
) -> np.ndarray:
    """Morphological opening of a label: removes parts thinner than ``2 * radius_mm``.

    Only removes voxels (set to 0). Parameters as :func:`grow_label`; ``label=None`` opens every
    label.
    """
    r = check_radius(radius_mm)
    return _binary_edit(labels, label, spacing, axis, slice_index,
                        lambda m, s: open_mask(m, r, s, method=method), overwrite=False)


def close_label(
    labels: np.ndarray,
    label: int | None,
    radius_mm: float,
    spacing: Sequence[float],
    *,
    overwrite: bool = False,
    axis: int | None = None,
    slice_index: int | None = None,
    method: str = "auto",
) -> np.ndarray:
    """Morphological closing of a label: fills gaps and notches narrower than ``2 * radius_mm``.

    Only adds voxels, taken from the background unless ``overwrite``. Parameters as
    :func:`grow_label`; ``label=None`` closes every label in ascending order.
    """
    r = check_radius(radius_mm)
    return _binary_edit(labels, label, spacing, axis, slice_index,
                        lambda m, s: close_mask(m, r, s, method=method), overwrite=overwrite)


#: Footprints with more voxels than this count neighbours by FFT convolution instead of directly.
FFT_COUNT_THRESHOLD = 125


def neighbour_counts(mask: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Number of ``mask`` voxels in the footprint around every voxel (edges replicated).

    Equals ``scipy.ndimage.correlate(mask, fp, mode="nearest")`` exactly; large footprints use an
    FFT convolution (rounded; exact for counts far below 2**40) so the cost does not grow as r^3.
    """
    m = np.asarray(mask, dtype=bool)
    f = np.asarray(fp, dtype=bool)
    if f.sum() <= FFT_COUNT_THRESHOLD:
        return ndi.correlate(m.astype(np.int32), f.astype(np.int32), mode="nearest")
    from scipy.signal import fftconvolve

    pad = [(k // 2, k // 2) for k in f.shape]
    padded = np.pad(m, pad, mode="edge").astype(np.float64)
    # the footprint is symmetric, so convolution equals correlation
    counts = fftconvolve(padded, f.astype(np.float64), mode="valid")
    return np.rint(counts).astype(np.int32)


def _majority(mask: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Voxels where more than half of the footprint neighbourhood is in ``mask`` (median filter)."""
    box = bbox(mask)
    out = np.zeros_like(mask)
    if box is None:
        return out
    crop = expand_bbox(box, footprint_margin(fp), mask.shape)
    counts = neighbour_counts(mask[crop], fp)
    out[crop] = 2 * counts > int(fp.sum())
    return out


def smooth_label(
    labels: np.ndarray,
    label: int | None,
    radius_mm: float,
    spacing: Sequence[float],
    *,
    overwrite: bool = False,
    axis: int | None = None,
    slice_index: int | None = None,
) -> np.ndarray:
    """Median (majority-vote) smoothing of a label within an ellipsoid of ``radius_mm`` mm.

    A voxel belongs to the smoothed label when more than half of the voxels in its ellipsoid
    neighbourhood belong to it (the binary median filter; image edges replicate the border
    voxels). Removes bumps and fills dents smaller than about the radius, keeps the volume roughly
    unchanged. With ``label=None`` every voxel takes the majority label of its neighbourhood
    (background included; ties keep the current value; voxels of
    :data:`~napari_medseg.events.IGNORE_LABEL` stay as they are and do not spread).

    Parameters as :func:`grow_label` (``overwrite`` lets the smoothed label take voxels of other
    labels).
    """
    r = check_radius(radius_mm)

    def all_fn(sub: np.ndarray, sub_sp: tuple[float, ...]) -> np.ndarray:
        fp = ellipsoid_footprint(r, sub_sp).astype(np.int32)
        values = np.unique(sub)
        best_count = np.full(sub.shape, -1, dtype=np.int32)
        out = sub.copy()
        counts_current = np.zeros(sub.shape, dtype=np.int32)
        for v in values:
            counts = neighbour_counts(sub == v, fp)
            better = counts > best_count
            out[better] = v
            best_count[better] = counts[better]
            counts_current = np.where(sub == v, counts, counts_current)
        # ties keep the current value; unannotated voxels (IGNORE_LABEL) neither change nor spread
        keep = (counts_current == best_count) | (sub == IGNORE_LABEL) | (out == IGNORE_LABEL)
        out[keep] = sub[keep]
        return out

    return _binary_edit(labels, label, spacing, axis, slice_index,
                        lambda m, s: _majority(m, ellipsoid_footprint(r, s)),
                        overwrite=overwrite, all_fn=all_fn)


def hollow_label(
    labels: np.ndarray,
    label: int | None,
    thickness_mm: float,
    spacing: Sequence[float],
    *,
    side: str = "inside",
    overwrite: bool = False,
    axis: int | None = None,
    slice_index: int | None = None,
    method: str = "auto",
) -> np.ndarray:
    """Replace a label by a shell of its surface, ``thickness_mm`` thick.

    Parameters
    ----------
    side : {"inside", "outside", "medial"}
        ``"inside"``: voxels of the label within ``thickness_mm`` of its boundary (the label only
        loses voxels); ``"outside"``: a shell of that thickness around the label (the label's
        voxels become background, the shell is taken from background unless ``overwrite``);
        ``"medial"``: half inside, half outside.

    Other parameters as :func:`grow_label`. Thickness is measured like a morphology radius:
    ``"inside"`` keeps ``label & ~erode(label, thickness)``.
    """
    t = check_radius(thickness_mm, "shell thickness")
    if side not in ("inside", "outside", "medial"):
        raise EditingError(f"Unknown shell side {side!r}; choose 'inside', 'outside' or 'medial'.")

    def shell(m: np.ndarray, s: tuple[float, ...]) -> np.ndarray:
        if side == "inside":
            return m & ~erode_mask(m, t, s, method=method)
        if side == "outside":
            return dilate_mask(m, t, s, method=method) & ~m
        return dilate_mask(m, t / 2, s, method=method) & ~erode_mask(m, t / 2, s, method=method)

    return _binary_edit(labels, label, spacing, axis, slice_index, shell, overwrite=overwrite)
