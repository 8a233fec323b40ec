"""Undo/redo with small memory: changed-region patches, an operation dispatcher and a stack.

Typical GUI use::

    stack = UndoStack(max_bytes=256 * 2**20)
    patch = apply_operation(layer.data, "grow_label", label=3, radius_mm=2.0, spacing=(2.5, .8, .8))
    stack.push(patch)                    # None (nothing changed) is ignored
    layer.refresh()                      # or refresh only patch.bbox
    stack.undo(layer.data); stack.redo(layer.data)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_medseg.editing._validation import EditingError, bbox
from napari_medseg.editing.components import (
    fill_holes,
    keep_component,
    keep_largest,
    remove_islands,
)
from napari_medseg.editing.interpolation import interpolate_slices
from napari_medseg.editing.logic import combine_labels
from napari_medseg.editing.morphology import (
    close_label,
    grow_label,
    hollow_label,
    open_label,
    shrink_label,
    smooth_label,
)

__all__ = ["EditPatch", "IndexedEdit", "make_patch", "make_edit", "apply_operation",
           "OPERATIONS", "UndoStack"]


@dataclass(eq=False)
class EditPatch:
    """The region an edit changed: a bounding box with the values before and after.

    Attributes
    ----------
    bbox : tuple of slice
        Region of the label map (one slice per axis, step 1).
    old, new : np.ndarray
        Values inside ``bbox`` before and after the edit (same shape and dtype).
    """

    bbox: tuple[slice, ...]
    old: np.ndarray
    new: np.ndarray

    def apply(self, arr: np.ndarray) -> None:
        """Write the edited values into ``arr`` in place (redo)."""
        arr[self.bbox] = self.new

    def revert(self, arr: np.ndarray) -> None:
        """Write the original values back into ``arr`` in place (undo)."""
        arr[self.bbox] = self.old

    @property
    def nbytes(self) -> int:
        """Memory held by the patch in bytes."""
        return int(self.old.nbytes + self.new.nbytes)


def make_patch(old_labels: np.ndarray, new_labels: np.ndarray) -> EditPatch | None:
    """Patch covering the bounding box of all voxels that differ, or None if nothing changed.

    Parameters
    ----------
    old_labels, new_labels : np.ndarray
        The label map before and after an edit; same shape.
    """
    old = np.asarray(old_labels)
    new = np.asarray(new_labels)
    if old.shape != new.shape:
        raise EditingError(f"Cannot compare label maps of shapes {old.shape} and {new.shape}.")
    box = bbox(old != new)
    if box is None:
        return None
    return EditPatch(box, old[box].copy(), new[box].astype(old.dtype, copy=True))


@dataclass(eq=False)
class IndexedEdit:
    """A sparse edit: the indices of the changed voxels with their values before and after.

    Cheaper than an :class:`EditPatch` when few voxels changed far apart (two specks removed
    at opposite corners give a bounding box of the whole volume).

    Attributes
    ----------
    indices : tuple of np.ndarray
        One integer array per axis (``np.nonzero`` form).
    old, new : np.ndarray
        Values at ``indices`` before and after the edit.
    """

    indices: tuple[np.ndarray, ...]
    old: np.ndarray
    new: np.ndarray

    def apply(self, arr: np.ndarray) -> None:
        """Write the edited values into ``arr`` in place (redo)."""
        arr[self.indices] = self.new

    def revert(self, arr: np.ndarray) -> None:
        """Write the original values back into ``arr`` in place (undo)."""
        arr[self.indices] = self.old

    @property
    def nbytes(self) -> int:
        """Memory held by the edit in bytes."""
        return int(sum(i.nbytes for i in self.indices) + self.old.nbytes + self.new.nbytes)

    @property
    def count(self) -> int:
        """Number of changed voxels."""
        return int(self.old.size)


def make_edit(old_labels: np.ndarray, new_labels: np.ndarray
              ) -> EditPatch | IndexedEdit | None:
    """The difference of two label maps in its smaller form, or None if nothing changed.

    An :class:`IndexedEdit` (indices of the changed voxels) when that takes less memory than
    the bounding-box :class:`EditPatch`, else the patch. Meant to run in a worker thread: the
    GUI then only writes the small result into the layer.

    Parameters
    ----------
    old_labels, new_labels : np.ndarray
        The label map before and after an edit; same shape.
    """
    old = np.asarray(old_labels)
    new = np.asarray(new_labels)
    if old.shape != new.shape:
        raise EditingError(f"Cannot compare label maps of shapes {old.shape} and {new.shape}.")
    changed = old != new
    box = bbox(changed)
    if box is None:
        return None
    count = int(np.count_nonzero(changed[box]))
    box_voxels = int(np.prod([b.stop - b.start for b in box]))
    if count * (8 * old.ndim + 2 * old.itemsize) < 2 * box_voxels * old.itemsize:
        local = np.nonzero(changed[box])
        indices = tuple(i + b.start for i, b in zip(local, box, strict=True))
        return IndexedEdit(indices, old[indices], new[indices].astype(old.dtype, copy=False))
    return EditPatch(box, old[box].copy(), new[box].astype(old.dtype, copy=True))


#: Operations available to :func:`apply_operation`, by name.
OPERATIONS: dict[str, Callable[..., np.ndarray]] = {
    "grow_label": grow_label,
    "shrink_label": shrink_label,
    "open_label": open_label,
    "close_label": close_label,
    "smooth_label": smooth_label,
    "hollow_label": hollow_label,
    "fill_holes": fill_holes,
    "remove_islands": remove_islands,
    "keep_largest": keep_largest,
    "keep_component": keep_component,
    "interpolate_slices": interpolate_slices,
    "combine_labels": combine_labels,
}


def apply_operation(labels: np.ndarray, op_name: str, **params: Any) -> EditPatch | None:
    """Run an editing operation on ``labels`` IN PLACE and return its undo patch.

    Parameters
    ----------
    labels : np.ndarray
        Label map to edit (e.g. a napari Labels layer's ``data``); modified in place.
    op_name : str
        A key of :data:`OPERATIONS` (the function name, e.g. ``"close_label"``).
    **params
        The operation's other arguments by keyword, e.g.
        ``label=1, radius_mm=3.0, spacing=(2.5, 0.8, 0.8), slice_index=40``.

    Returns
    -------
    EditPatch or None
        The changed region (None when the operation changed nothing).
    """
    if op_name not in OPERATIONS:
        raise EditingError(f"Unknown editing operation {op_name!r}; "
                           f"choose one of {sorted(OPERATIONS)}.")
    new = OPERATIONS[op_name](labels, **params)
    patch = make_patch(labels, new)
    if patch is not None:
        patch.apply(labels)
    return patch


class UndoStack:
    """Undo/redo history of :class:`EditPatch` objects with a memory cap.

    Parameters
    ----------
    max_bytes : int
        Upper bound on the memory held by all patches (undo and redo). The oldest undo steps are
        dropped first; the most recent step is always kept even if larger than the cap.
    """

    def __init__(self, max_bytes: int = 256 * 2**20) -> None:
        if max_bytes <= 0:
            raise EditingError(f"The undo memory limit must be positive, got {max_bytes} bytes.")
        self.max_bytes = int(max_bytes)
        self._undo: list[EditPatch] = []
        self._redo: list[EditPatch] = []

    @property
    def nbytes(self) -> int:
        """Memory currently held (bytes)."""
        return sum(p.nbytes for p in self._undo) + sum(p.nbytes for p in self._redo)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def __len__(self) -> int:
        """Number of steps that can be undone."""
        return len(self._undo)

    def push(self, patch: EditPatch | None) -> None:
        """Record a new edit (already applied to the array); clears the redo history."""
        if patch is None:
            return
        self._redo.clear()
        self._undo.append(patch)
        while len(self._undo) > 1 and self.nbytes > self.max_bytes:
            self._undo.pop(0)

    def undo(self, arr: np.ndarray) -> EditPatch | None:
        """Revert the last edit in ``arr`` in place; returns its patch (None if nothing to undo)."""
        if not self._undo:
            return None
        patch = self._undo.pop()
        patch.revert(arr)
        self._redo.append(patch)
        return patch

    def redo(self, arr: np.ndarray) -> EditPatch | None:
        """Re-apply the last undone edit in ``arr`` in place; returns its patch or None."""
        if not self._redo:
            return None
        patch = self._redo.pop()
        patch.apply(arr)
        self._undo.append(patch)
        return patch

    def clear(self) -> None:
        """Forget all history (e.g. when another image is loaded)."""
        self._undo.clear()
        self._redo.clear()
