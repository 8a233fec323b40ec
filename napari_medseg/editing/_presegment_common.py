"""Helpers shared by the pre-segmentation modules (:mod:`napari_medseg.editing.presegment`).

Concern: the small checks and measurements every pre-segmentation method needs: the label
dtype for ``n`` classes, the ``mask`` argument check, recognising a CT by its air, a cheap stride
sample of a big volume, and which labelled regions touch the array border. No segmentation
method lives here; the ``presegment_*`` modules import from this one, never the other way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_medseg.editing._validation import EditingError


def label_dtype(n: int) -> type:
    """``np.uint8`` for up to 255 classes/markers, ``np.int32`` above."""
    return np.uint8 if n <= 255 else np.int32


def check_mask(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """Return ``mask`` as a bool array of ``shape`` (None: all True), or raise if empty."""
    if mask is None:
        return np.ones(shape, dtype=bool)
    m = np.asarray(mask, dtype=bool)
    if m.shape != shape:
        raise EditingError(f"The mask has shape {m.shape} but the image has shape {shape}.")
    if not m.any():
        raise EditingError("The mask is empty: there are no voxels to classify.")
    return m


def looks_like_ct(img: np.ndarray, modality: str | None) -> bool:
    """True for CT (by ``modality``, or, when it is unknown, by air at about -1000 HU)."""
    if modality:
        name = str(modality).upper()
        if name == "CT":
            return True
        if name not in ("UNKNOWN", "OT"):
            return False
    return float(img.min()) <= -900.0 and float(img.max()) >= -200.0


def stride_sample(img: np.ndarray, n: int = 1_000_000) -> np.ndarray:
    """About ``n`` voxels of ``img`` on a regular stride (cheap percentiles of big volumes)."""
    flat = img.reshape(-1)
    return flat[:: max(flat.size // n, 1)]


def border_labels(regions: np.ndarray, n: int, axes: Sequence[int]) -> np.ndarray:
    """Lookup table ``(n + 1,)`` of bool: True for the labels of ``regions`` (from
    ``ndi.label``, ``n`` labels) found on the first or last index along any of ``axes``.

    Entry 0 (the unlabelled voxels) is set like any other; callers decide what it means.
    """
    touching = np.zeros(n + 1, dtype=bool)
    for ax in axes:
        for end in (0, -1):
            touching[np.unique(np.take(regions, end, axis=ax))] = True
    return touching
