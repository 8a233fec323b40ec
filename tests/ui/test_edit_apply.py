"""Background label edits come back as patches written in slabs, as one undo step."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def labels_layer(make_napari_viewer):
    viewer = make_napari_viewer()
    data = np.zeros((12, 40, 40), np.uint8)
    data[2:10, 5:30, 5:30] = 1
    return viewer, viewer.add_labels(data)


@pytest.mark.parametrize("sparse", [False, True])
def test_writer_spreads_a_patch_over_turns_keeps_strokes_and_is_one_undo_step(
        labels_layer, qtbot, monkeypatch, sparse):
    from napari_medseg.editing import EditPatch, IndexedEdit
    from napari_medseg.ui import _edit_apply
    from napari_medseg.ui._edit_apply import EditWriter, compute_edit

    monkeypatch.setattr(_edit_apply, "SLAB_VOXELS", 40 * 40)  # one plane per slab
    monkeypatch.setattr(_edit_apply, "TURN_BUDGET_S", 0.0)  # one slab per event-loop turn
    _viewer, layer = labels_layer
    original = layer.data.copy()
    if sparse:
        def compute(a):
            out = a.copy()
            out[0, 0, 0] = out[11, 39, 39] = 2  # two far-apart voxels: indices, not a box
            return out
    else:
        def compute(a):
            return np.where(a == 1, 3, a).astype(a.dtype)
    edit = compute_edit(compute, layer.data)
    assert isinstance(edit, IndexedEdit if sparse else EditPatch)
    expected = compute(original)
    layer.data_setitem((np.array([5]), np.array([35]), np.array([35])), 4)  # a stroke meanwhile
    expected[5, 35, 35] = 4
    n_steps = len(layer._undo_history)
    done = []
    writer = EditWriter(layer, edit, done.append).start()
    if not sparse:
        assert not writer.finished  # the rest follows on later turns
    qtbot.waitUntil(lambda: bool(done), timeout=5000)
    np.testing.assert_array_equal(layer.data, expected)
    assert done == [int((expected != original).sum()) - 1]  # the stroke is not ours
    assert len(layer._undo_history) == n_steps + 1
    layer.undo()
    stroke = original.copy()
    stroke[5, 35, 35] = 4
    np.testing.assert_array_equal(layer.data, stroke)
    layer.redo()
    np.testing.assert_array_equal(layer.data, expected)


def test_writer_with_nothing_changed_records_nothing(labels_layer, qtbot):
    from napari_medseg.ui._edit_apply import EditWriter, compute_edit

    _viewer, layer = labels_layer
    n_steps = len(layer._undo_history)
    done = []
    EditWriter(layer, compute_edit(lambda a: a, layer.data), done.append).start()
    assert done == [0] and len(layer._undo_history) == n_steps
