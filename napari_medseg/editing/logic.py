"""Logical operations between two labels (union, intersect, subtract), as in Slicer's editor."""

from __future__ import annotations

import numpy as np

from napari_medseg.editing._validation import (
    EditingError,
    check_label_value,
    check_labels,
    require_label,
)

__all__ = ["combine_labels", "COMBINE_OPS"]

COMBINE_OPS = ("union", "intersect", "subtract")


def combine_labels(
    labels: np.ndarray,
    a: int,
    b: int,
    op: str,
    *,
    other: np.ndarray | None = None,
    overwrite: bool = False,
) -> np.ndarray:
    """Combine label ``a`` with label ``b``; the result is stored as label ``a``.

    Parameters
    ----------
    labels : np.ndarray
        Integer label map, ``(Z, Y, X)`` or ``(Y, X)``; holds label ``a``.
    a : int
        Label that is modified.
    b : int
        Second operand: label ``b`` of ``labels``, or of ``other`` when given (e.g. a second
        Labels layer or a model prediction of the same shape).
    op : {"union", "intersect", "subtract"}
        ``"union"``: voxels of ``b`` become ``a`` (when ``b`` is in ``labels`` itself this merges
        ``b`` into ``a``; from ``other`` only background voxels are taken unless ``overwrite``).
        ``"intersect"``: voxels of ``a`` outside ``b`` become 0.
        ``"subtract"``: voxels of ``a`` inside ``b`` become 0.
        Within one label map two labels never overlap, so ``"intersect"`` of two labels of the
        same map empties ``a`` and ``"subtract"`` changes nothing; use ``other`` for these.
    other : np.ndarray, optional
        Label map holding ``b``; same shape as ``labels``.
    overwrite : bool
        For ``"union"`` with ``other``: also replace other labels of ``labels``.

    Returns
    -------
    np.ndarray
        New label map.
    """
    lab = check_labels(labels)
    va = check_label_value(a, allow_all=False)
    vb = check_label_value(b, allow_all=False)
    if op not in COMBINE_OPS:
        raise EditingError(f"Unknown operation {op!r}; choose one of {COMBINE_OPS}.")
    if other is None:
        src = lab
        if va == vb:
            raise EditingError("Choose two different labels to combine.")
    else:
        src = check_labels(other)
        if src.shape != lab.shape:
            raise EditingError(f"The second label map has shape {src.shape}, but the label map "
                               f"being edited has shape {lab.shape}; they must match.")
    where = "the second label map" if other is not None else "the label map"
    require_label(src, vb, where)
    if op != "union":
        require_label(lab, va)
    mask_b = src == vb
    out = lab.copy()
    if op == "union":
        target = mask_b.copy()
        if other is not None and not overwrite:
            target &= (lab == 0) | (lab == va)
        out[target] = va
    elif op == "intersect":
        out[(lab == va) & ~mask_b] = 0
    else:
        out[(lab == va) & mask_b] = 0
    return out
