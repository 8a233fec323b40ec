"""Input checks shared by the editing functions (clinician-readable errors)."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence

import numpy as np

from napari_medseg.events import IGNORE_LABEL


class EditingError(ValueError):
    """An editing tool was called with inputs it cannot work on.

    The message is written for the person at the viewer (what is wrong and how to fix it).
    """


def check_labels(labels: np.ndarray, ndims: Sequence[int] = (2, 3)) -> np.ndarray:
    """Return ``labels`` as an integer ndarray of an accepted dimensionality, or raise."""
    arr = np.asarray(labels)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise EditingError(
            f"The label map must hold whole numbers (an integer array), got dtype {arr.dtype}."
        )
    if arr.ndim not in tuple(ndims):
        dims = " or ".join(f"{d}D" for d in ndims)
        raise EditingError(
            f"The label map must be {dims}, got an array with {arr.ndim} dimension(s) "
            f"of shape {arr.shape}."
        )
    return arr


def check_image(image: np.ndarray, ndims: Sequence[int] = (2, 3)) -> np.ndarray:
    """Return ``image`` as a numeric ndarray (2D or 3D), or raise."""
    arr = np.asarray(image)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise EditingError(f"The image must be numeric, got dtype {arr.dtype}.")
    if arr.ndim not in tuple(ndims):
        dims = " or ".join(f"{d}D" for d in ndims)
        raise EditingError(
            f"The image must be {dims}, got an array with {arr.ndim} dimension(s) "
            f"of shape {arr.shape}."
        )
    if arr.size == 0:
        raise EditingError("The image is empty.")
    return arr


def check_spacing(spacing: Sequence[float] | None, ndim: int) -> tuple[float, ...]:
    """Return spacing (mm per voxel, array axis order) as a tuple of ``ndim`` positive floats."""
    if spacing is None:
        return (1.0,) * ndim
    try:
        sp = tuple(float(s) for s in spacing)
    except TypeError as exc:
        raise EditingError(
            f"Voxel spacing must be a sequence of {ndim} numbers in mm, got {spacing!r}."
        ) from exc
    if len(sp) != ndim:
        raise EditingError(
            f"Voxel spacing has {len(sp)} value(s) {sp} but the array has {ndim} dimensions; "
            f"give one spacing in mm per array axis."
        )
    if not all(np.isfinite(s) and s > 0 for s in sp):
        raise EditingError(f"Voxel spacing must be positive finite mm values, got {sp}.")
    return sp


def check_radius(radius_mm: float, what: str = "radius") -> float:
    """Return a non-negative finite radius in mm, or raise."""
    try:
        r = float(radius_mm)
    except (TypeError, ValueError) as exc:
        raise EditingError(f"The {what} must be a number of mm, got {radius_mm!r}.") from exc
    if not np.isfinite(r) or r < 0:
        raise EditingError(f"The {what} must be zero or a positive number of mm, got {r}.")
    return r


def check_label_value(label: int | None, *, allow_all: bool = True) -> int | None:
    """Normalise a label argument: a positive int, or ``None`` for "all labels" (0 too)."""
    if label is None or (isinstance(label, numbers.Integral) and int(label) == 0):
        if not allow_all:
            raise EditingError("Choose one label (a positive number); 'all labels' is not "
                               "possible for this tool.")
        return None
    if isinstance(label, bool) or not isinstance(label, numbers.Integral):
        raise EditingError(f"The label must be a whole number, got {label!r}.")
    if int(label) < 0:
        raise EditingError(f"The label must be positive, got {label}.")
    return int(label)


def present_labels(labels: np.ndarray) -> list[int]:
    """Label values present in ``labels`` for "all labels" edits: not 0 and not
    :data:`~napari_medseg.events.IGNORE_LABEL` (255, unannotated voxels)."""
    return [int(v) for v in np.unique(labels) if v != 0 and v != IGNORE_LABEL]


def require_label(labels: np.ndarray, label: int, where: str = "the label map") -> None:
    """Raise if ``label`` has no voxel in ``labels``."""
    if not np.any(labels == label):
        raise EditingError(f"Label {label} is not present in {where}; nothing to edit.")


def check_axis(axis: int, ndim: int) -> int:
    """Return a valid non-negative axis index, or raise."""
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise EditingError(f"The axis must be a whole number, got {axis!r}.")
    ax = int(axis)
    if not -ndim <= ax < ndim:
        raise EditingError(f"Axis {axis} does not exist in a {ndim}D array.")
    return ax % ndim


def plane_index(shape: tuple[int, ...], axis: int, slice_index: int) -> tuple:
    """Index tuple selecting slice ``slice_index`` along ``axis``, or raise if out of range."""
    if isinstance(slice_index, bool) or not isinstance(slice_index, numbers.Integral):
        raise EditingError(f"The slice index must be a whole number, got {slice_index!r}.")
    n = shape[axis]
    k = int(slice_index)
    if not -n <= k < n:
        raise EditingError(f"Slice {slice_index} is outside the volume: axis {axis} has {n} slices.")
    idx: list = [slice(None)] * len(shape)
    idx[axis] = k % n
    return tuple(idx)


def run_in_plane(
    labels: np.ndarray,
    spacing: tuple[float, ...],
    axis: int | None,
    slice_index: int | None,
    label: int | None,
    fn: Callable[[np.ndarray, tuple[float, ...]], np.ndarray],
) -> np.ndarray:
    """Run ``fn(sub_labels, sub_spacing) -> new_sub_labels`` in 3D, on one slice or per slice.

    * ``slice_index`` given: on that 2D slice along ``axis`` (default 0);
    * only ``axis`` given (3D input): independently on every 2D slice along ``axis``;
    * neither: on the whole array.

    ``label`` (if not None) must be present in the region that is edited. ``fn`` must return
    its input unchanged (as a new array) when the label is absent from a sub-array.
    """
    if slice_index is not None or axis is not None:
        if labels.ndim != 3:
            raise EditingError("Slice-wise editing (axis / slice_index) needs a 3D label map; "
                               "a 2D label map is edited as a whole.")
        ax = check_axis(0 if axis is None else axis, 3)
        sub_spacing = tuple(s for i, s in enumerate(spacing) if i != ax)
        out = labels.copy()
        if slice_index is not None:
            idx = plane_index(labels.shape, ax, slice_index)
            if label is not None:
                require_label(labels[idx], label, f"slice {idx[ax]} along axis {ax}")
            out[idx] = fn(labels[idx], sub_spacing)
            return out
        if label is not None:
            require_label(labels, label)
        for k in range(labels.shape[ax]):
            idx = plane_index(labels.shape, ax, k)
            out[idx] = fn(labels[idx], sub_spacing)
        return out
    if label is not None:
        require_label(labels, label)
    return fn(labels, spacing)


def bbox(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Tight bounding box of the True voxels as a tuple of slices, or None if empty."""
    out = []
    for ax in range(mask.ndim):
        other = tuple(i for i in range(mask.ndim) if i != ax)
        proj = mask.any(axis=other) if other else mask
        nz = np.flatnonzero(proj)
        if nz.size == 0:
            return None
        out.append(slice(int(nz[0]), int(nz[-1]) + 1))
    return tuple(out)


def expand_bbox(
    box: tuple[slice, ...], margin: Sequence[int], shape: tuple[int, ...]
) -> tuple[slice, ...]:
    """Grow a bounding box by ``margin`` voxels per axis, clipped to ``shape``."""
    return tuple(
        slice(max(0, b.start - m), min(n, b.stop + m)) for b, m, n in zip(box, margin, shape, strict=False)
    )
