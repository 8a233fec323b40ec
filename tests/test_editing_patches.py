"""Undo patches, the operation dispatcher and the undo stack."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.editing import (
    OPERATIONS,
    EditingError,
    EditPatch,
    UndoStack,
    apply_operation,
    grow_label,
    make_patch,
)


def labels_volume():
    labels = np.zeros((10, 30, 30), np.uint16)
    labels[3:6, 5:12, 5:12] = 1
    labels[3:6, 20:25, 20:25] = 2
    return labels


def test_patch_apply_and_revert_are_exact():
    old = labels_volume()
    new = grow_label(old, 1, 2.0, (2.5, 0.8, 0.8))
    patch = make_patch(old, new)
    assert isinstance(patch, EditPatch)
    # bbox is the tight box of the changed voxels
    diff = np.argwhere(old != new)
    assert patch.bbox == tuple(slice(lo, hi + 1) for lo, hi in zip(diff.min(0), diff.max(0), strict=True))
    assert patch.nbytes == patch.old.nbytes + patch.new.nbytes < old.nbytes
    arr = old.copy()
    patch.apply(arr)
    np.testing.assert_array_equal(arr, new)
    patch.revert(arr)
    np.testing.assert_array_equal(arr, old)
    assert make_patch(old, old.copy()) is None
    with pytest.raises(EditingError, match="shapes"):
        make_patch(old, old[1:])


def test_apply_operation_in_place_and_undo_stack():
    arr = labels_volume()
    original = arr.copy()
    stack = UndoStack()
    p1 = apply_operation(arr, "grow_label", label=1, radius_mm=2.0, spacing=(2.5, 0.8, 0.8))
    stack.push(p1)
    after1 = arr.copy()
    np.testing.assert_array_equal(after1, grow_label(original, 1, 2.0, (2.5, 0.8, 0.8)))
    p2 = apply_operation(arr, "shrink_label", label=2, radius_mm=1.0, spacing=(1, 1, 1),
                         slice_index=4)
    stack.push(p2)
    after2 = arr.copy()
    stack.push(apply_operation(arr, "fill_holes", label=1))  # nothing changes -> None ignored
    assert len(stack) == 2
    assert stack.undo(arr) is p2
    np.testing.assert_array_equal(arr, after1)
    assert stack.undo(arr) is p1
    np.testing.assert_array_equal(arr, original)
    assert stack.undo(arr) is None and stack.can_redo
    stack.redo(arr)
    stack.redo(arr)
    np.testing.assert_array_equal(arr, after2)
    assert stack.redo(arr) is None
    # a new edit after undo clears the redo history
    stack.undo(arr)
    stack.push(apply_operation(arr, "shrink_label", label=1, radius_mm=1.0, spacing=(1, 1, 1)))
    assert not stack.can_redo
    with pytest.raises(EditingError, match="Unknown editing operation"):
        apply_operation(arr, "explode")
    assert {"grow_label", "close_label", "interpolate_slices", "combine_labels"} <= set(OPERATIONS)


def test_undo_stack_memory_cap_drops_oldest():
    arr = np.zeros((4, 10, 10), np.uint8)
    patches = []
    for k in range(4):
        new = arr.copy()
        new[k] = k + 1
        patch = make_patch(arr, new)
        patch.apply(arr)
        patches.append(patch)
    stack = UndoStack(max_bytes=2 * patches[0].nbytes)
    for p in patches:
        stack.push(p)
    assert len(stack) == 2 and stack.nbytes <= 2 * patches[0].nbytes
    stack.undo(arr)
    stack.undo(arr)
    assert np.all(arr[2:] == 0) and np.all(arr[1] == 2)
    with pytest.raises(EditingError):
        UndoStack(max_bytes=0)


def test_make_edit_picks_the_smaller_form_and_is_exact():
    from napari_medseg.editing import IndexedEdit, make_edit

    old = labels_volume()
    assert make_edit(old, old.copy()) is None
    grown = grow_label(old, 1, 2.0, (2.5, 0.8, 0.8))
    patch = make_edit(old, grown)  # a compact region: the bounding box is cheaper
    assert isinstance(patch, EditPatch)
    specks = old.copy()
    specks[0, 0, 0] = 3
    specks[9, 29, 29] = 3  # two voxels at opposite corners: a box of the whole volume
    sparse = make_edit(old, specks)
    assert isinstance(sparse, IndexedEdit) and sparse.count == 2
    assert sparse.nbytes < old.nbytes // 10
    for edit, new in ((patch, grown), (sparse, specks)):
        arr = old.copy()
        edit.apply(arr)
        np.testing.assert_array_equal(arr, new)
        edit.revert(arr)
        np.testing.assert_array_equal(arr, old)
    with pytest.raises(EditingError, match="shapes"):
        make_edit(old, old[:2])
