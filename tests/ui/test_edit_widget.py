"""Edit dock: every operation through its button, undo restores exactly, contours, components."""

from __future__ import annotations

import napari
import numpy as np
import pytest
from ui_helpers import PLUGIN, error_messages

from napari_medseg.ui._layers import add_labels_for_image
from napari_medseg.ui.edit_widget import OPERATION_BUTTONS


@pytest.fixture
def setup(make_napari_viewer, qtbot, hippo_cases, plugin_dock):
    image_path, labels_path = hippo_cases(1)[0]
    viewer = make_napari_viewer()
    (image,) = viewer.open(str(image_path), plugin=PLUGIN)
    (labels,) = viewer.open(str(labels_path), plugin=PLUGIN)
    widget = plugin_dock(viewer, "EditWidget")
    widget.labels_combo.set_layer(labels)
    widget.set_label(1)
    return viewer, widget, image, labels


def _go_to_slice(viewer, layer, k: int) -> None:
    viewer.dims.set_point(0, float(layer.data_to_world((k, 0, 0))[0]))


def test_every_operation_button_changes_and_undo_restores(setup):
    viewer, widget, _image, labels = setup
    original = labels.data.copy()
    k = int(np.argmax((original == 1).reshape(original.shape[0], -1).sum(1)))
    _go_to_slice(viewer, labels, k)
    voxel = (k, *np.argwhere(original[k] == 1)[0])
    viewer.cursor.position = tuple(labels.data_to_world(voxel))  # for "keep piece at cursor"
    widget.radius_spin.setValue(2.0)
    widget.min_volume_spin.setValue(1e6)  # every piece is an "island"
    changed = {}
    for _text, _tip, name in OPERATION_BUTTONS:
        before = labels.data.copy()
        widget.op_buttons[name].click()
        changed[name] = int((labels.data != before).sum())
        labels.undo()
        np.testing.assert_array_equal(labels.data, before, err_msg=f"undo of {name}")
    np.testing.assert_array_equal(labels.data, original)
    for name in ("grow_label", "shrink_label", "hollow_label", "remove_islands", "close_label"):
        assert changed[name] > 0, name
    # grow never overwrote label 2 without the flag
    widget.op_buttons["grow_label"].click()
    assert ((original == 2) == (labels.data == 2)).all()
    labels.undo()


def test_grow_3d_vs_2d_scope_and_overwrite(setup):
    viewer, widget, _image, labels = setup
    original = labels.data.copy()
    k = int(np.argmax((original == 1).reshape(original.shape[0], -1).sum(1)))
    _go_to_slice(viewer, labels, k)
    widget.slice_radio.setChecked(True)
    widget.radius_spin.setValue(3.0)
    widget.op_buttons["grow_label"].click()
    diff = np.argwhere(labels.data != original)
    assert len(diff) and set(diff[:, 0]) == {k}  # only the current slice changed
    labels.undo()
    widget.volume_radio.setChecked(True)
    widget.overwrite_check.setChecked(True)
    widget.op_buttons["grow_label"].click()
    assert len(set(np.argwhere(labels.data != original)[:, 0])) > 1
    assert ((labels.data == 2) < (original == 2)).any()  # overwrote some of label 2
    labels.undo()
    np.testing.assert_array_equal(labels.data, original)


def test_undo_redo_buttons_cover_brush_and_operations(setup):
    _viewer, widget, _image, labels = setup
    original = labels.data.copy()
    labels.brush_size = 5
    labels.paint((10, 20, 20), 3)  # brush stroke
    after_brush = labels.data.copy()
    widget.op_buttons["grow_label"].click()
    after_grow = labels.data.copy()
    assert (after_grow != after_brush).any()
    widget.undo_button.click()
    np.testing.assert_array_equal(labels.data, after_brush)
    widget.undo_button.click()
    np.testing.assert_array_equal(labels.data, original)
    widget.redo_button.click()
    widget.redo_button.click()
    np.testing.assert_array_equal(labels.data, after_grow)


def test_ctrl_z_keybinding_undoes_operation(setup):
    """napari's own Ctrl+Z / Ctrl+Shift+Z bindings of the Labels layer undo our operations."""
    _viewer, widget, _image, labels = setup
    keymap = {str(k): f for k, f in type(labels).class_keymap.items()}
    undo = next(f for k, f in keymap.items() if f.__name__ == "undo")
    redo = next(f for k, f in keymap.items() if f.__name__ == "redo")
    assert any(f.__name__ == "undo" and k.endswith("Z") and "Shift" not in k
               for k, f in keymap.items())
    original = labels.data.copy()
    widget.op_buttons["shrink_label"].click()
    shrunk = labels.data.copy()
    assert (shrunk != original).any()
    undo(labels)
    np.testing.assert_array_equal(labels.data, original)
    redo(labels)
    np.testing.assert_array_equal(labels.data, shrunk)


def test_combine_union(setup):
    _viewer, widget, _image, labels = setup
    original = labels.data.copy()
    widget.set_label(1)
    # the row names the selected label and offers only the others
    others = [widget.other_label_combo.itemData(i) for i in range(widget.other_label_combo.count())]
    assert 1 not in others and 2 in others and widget.combine_button.isEnabled()
    assert widget.combine.form.selected.value.startswith("1")
    widget.other_label_combo.setCurrentIndex(widget.other_label_combo.findData(2))
    widget.combine_op.setCurrentIndex(widget.combine_op.findData("union"))
    widget.combine_button.click()
    assert not (labels.data == 2).any()
    np.testing.assert_array_equal(labels.data == 1, original > 0)
    labels.undo()
    np.testing.assert_array_equal(labels.data, original)


def test_contours_to_shapes(setup):
    viewer, widget, _image, labels = setup
    widget.contours_button.click()
    shapes = viewer.layers[-1]
    assert isinstance(shapes, napari.layers.Shapes)
    assert len(shapes.data) > 0
    np.testing.assert_allclose(shapes.scale, labels.scale)
    slices = {int(round(p[0, 0])) for p in shapes.data}
    assert slices <= set(np.flatnonzero((labels.data == 1).reshape(labels.data.shape[0], -1)
                                        .any(1)))


def test_component_table_and_jump(setup):
    viewer, widget, _image, labels = setup
    labels.data[2:4, 2:4, 2:4] = 1  # a far-away island of label 1
    widget.components_button.click()
    assert widget.component_table.rowCount() >= 2
    assert widget.component_table.item(0, 0).text() == "1"
    row = widget.component_table.rowCount() - 1  # the smallest piece: our island
    centroid = np.asarray(widget.components[row]["centroid_voxel"])
    widget.component_table.cellClicked.emit(row, 0)
    z_world = viewer.dims.point[0]
    assert abs(labels.world_to_data(viewer.dims.point)[0] - centroid[0]) <= 0.5, z_world


def test_component_table_runs_in_a_worker_with_world_centroids(setup, qtbot, monkeypatch):
    """On a large volume the table is counted in a worker (it froze the viewer for 17 s on a
    512 x 512 x 400 CT); centroids are world positions from the layer's affine."""
    from napari_medseg.ui import edit_widget
    from napari_medseg.ui._layers import volume_from_layer

    monkeypatch.setattr(edit_widget, "BACKGROUND_VOXELS", 0)  # treat the volume as large
    _viewer, widget, _image, labels = setup
    labels.data[2:4, 2:4, 2:4] = 1
    widget.components_button.click()
    assert widget.worker is not None and widget.component_table.rowCount() == 0
    assert not widget.components_button.isEnabled()
    qtbot.waitUntil(lambda: widget.components_button.isEnabled(), timeout=30000)
    assert widget.component_table.rowCount() >= 2
    affine = volume_from_layer(labels).affine
    for row in widget.components:
        expected = (affine @ [*row["centroid_voxel"], 1.0])[:3]
        np.testing.assert_allclose(row["centroid_mm"], expected, atol=1e-9)
    shown = widget.component_table.item(0, 3).text()
    assert shown == ", ".join(f"{c:.1f}" for c in widget.components[0]["centroid_mm"])


def test_errors_become_notifications(make_napari_viewer, qtbot, plugin_dock):
    viewer = make_napari_viewer()
    widget = plugin_dock(viewer, "EditWidget")
    n = len(error_messages())
    # no labels layer: the tools wait for one
    assert not any(b.isEnabled() for b in widget.op_buttons.values())
    assert not widget.contours_button.isEnabled() and not widget.combine_button.isEnabled()
    image = viewer.add_image(np.zeros((4, 8, 8)))
    add_labels_for_image(viewer, image)
    assert widget.op_buttons["grow_label"].isEnabled() and widget.contours_button.isEnabled()
    widget.set_label(1)
    widget.op_buttons["keep_largest"].click()  # empty label: fine or a clear message
    widget.contours_button.click()  # empty: message
    assert len(error_messages()) >= n + 1
    assert all("Traceback" not in e for e in error_messages())


def test_large_edits_use_bbox_patches_with_exact_undo(setup, monkeypatch):
    """Edits above LARGE_EDIT_VOXELS are stored as one bounding-box patch; undo/redo exact."""
    from napari_medseg.ui import _layers

    monkeypatch.setattr(_layers, "LARGE_EDIT_VOXELS", 0)
    _viewer, widget, _image, labels = setup
    original = labels.data.copy()
    widget.radius_spin.setValue(2.0)
    widget.op_buttons["grow_label"].click()
    grown = labels.data.copy()
    assert (grown != original).any()
    atom = labels._undo_history[-1][0]
    assert all(isinstance(s, slice) for s in atom[0])  # a bounding box, not voxel indices
    labels.undo()
    np.testing.assert_array_equal(labels.data, original)
    labels.redo()
    np.testing.assert_array_equal(labels.data, grown)


def test_large_volume_edits_run_in_background_and_keep_concurrent_strokes(setup, qtbot,
                                                                           monkeypatch):
    import time

    from napari_medseg.ui import _controls, edit_widget

    monkeypatch.setattr(_controls, "BACKGROUND_VOXELS", 0)  # treat the volume as "large"
    real = edit_widget._call_with_supported

    def slow(*args, **kwargs):
        time.sleep(0.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(edit_widget, "_call_with_supported", slow)
    _viewer, widget, _image, labels = setup
    original = labels.data.copy()
    from napari_medseg.editing import grow_label
    from napari_medseg.ui._layers import volume_from_layer

    expected = grow_label(original, 1, 2.0, volume_from_layer(labels).spacing)
    widget.radius_spin.setValue(2.0)
    widget.op_buttons["grow_label"].click()
    assert widget.worker is not None
    assert not widget.op_buttons["shrink_label"].isEnabled()  # busy while it runs
    labels.data_setitem((np.array([0]), np.array([0]), np.array([0])), 3)  # user keeps painting
    qtbot.waitUntil(lambda: widget.op_buttons["shrink_label"].isEnabled(), timeout=20000)
    assert labels.data[0, 0, 0] == 3
    expected[0, 0, 0] = 3
    np.testing.assert_array_equal(labels.data, expected)
    labels.undo()  # the grow
    assert labels.data[0, 0, 0] == 3
    labels.undo()  # the stroke
    np.testing.assert_array_equal(labels.data, original)


def test_preview_then_apply_or_discard(setup):
    from napari_medseg.editing import shrink_label
    from napari_medseg.ui._layers import volume_from_layer

    viewer, widget, _image, labels = setup
    original = labels.data.copy()
    widget.radius_spin.setValue(1.0)
    assert not widget.apply_button.isEnabled()
    widget.preview_check.setChecked(True)
    widget.op_buttons["shrink_label"].click()
    np.testing.assert_array_equal(labels.data, original)  # nothing changed yet
    preview = widget.preview_layer
    assert preview is not None and preview in viewer.layers
    expected = shrink_label(original, 1, 1.0, volume_from_layer(labels).spacing)
    np.testing.assert_array_equal(preview.data == 2, (expected != original) & (expected == 0))
    assert not (preview.data == 1).any()
    assert widget.apply_button.isEnabled()
    widget.discard_button.click()
    assert preview not in viewer.layers
    np.testing.assert_array_equal(labels.data, original)
    widget.op_buttons["shrink_label"].click()
    widget.apply_button.click()
    np.testing.assert_array_equal(labels.data, expected)
    assert widget.preview_layer is None and not widget.apply_button.isEnabled()
    labels.undo()
    np.testing.assert_array_equal(labels.data, original)


def test_large_preview_and_apply_run_in_workers_and_keep_strokes(make_napari_viewer, qtbot,
                                                                  plugin_dock):
    from napari_medseg.ui._controls import BACKGROUND_VOXELS

    viewer = make_napari_viewer()
    widget = plugin_dock(viewer, "EditWidget")
    data = np.zeros((80, 80, 80), np.uint8)
    assert data.size > BACKGROUND_VOXELS  # a volume the GUI thread must not scan
    data[30:50, 30:50, 30:50] = 1
    layer = viewer.add_labels(data, name="big")
    widget.labels_combo.set_layer(layer)
    widget.set_label(1)
    widget.radius_spin.setValue(2.0)
    widget.preview_check.setChecked(True)
    worker = widget.run_operation("grow_label")
    assert worker is not None  # the preview is computed in a worker
    qtbot.waitUntil(lambda: widget.apply_button.isEnabled(), timeout=30000)
    assert (widget.preview_layer.data == 1).sum() > 0
    assert not (np.asarray(layer.data)[28, 40, 40])  # nothing applied yet
    layer.data[5, 5, 5] = 1  # a stroke made while the preview is shown
    widget.apply_button.click()
    qtbot.waitUntil(lambda: np.asarray(layer.data)[28, 40, 40] == 1, timeout=30000)
    qtbot.wait(200)
    assert np.asarray(layer.data)[5, 5, 5] == 1  # the stroke survived
    assert widget.preview_layer is None


def test_dock_buttons_drive_the_core_operation_table():
    from napari_medseg.editing import OPERATIONS

    names = [name for _text, _tip, name in OPERATION_BUTTONS]
    assert set(names) <= set(OPERATIONS)
    # every operation of the table is reachable from the dock (combine has its own row)
    assert set(OPERATIONS) - set(names) == {"combine_labels"}


def test_values_painted_in_a_large_layer_are_listed_a_turn_later(make_napari_viewer, qtbot,
                                                                  plugin_dock):
    """A layer larger than QUICK_SCAN_VOXELS is scanned for its painted values on the next
    event-loop turn (not inside napari's layer-add stall): they still reach the list, and a
    label chosen meanwhile stays chosen."""
    from napari_medseg.ui.edit_options import QUICK_SCAN_VOXELS

    viewer = make_napari_viewer()
    widget = plugin_dock(viewer, "EditWidget")
    data = np.zeros((80, 64, 64), np.uint8)
    assert data.size > QUICK_SCAN_VOXELS
    data[10:30, 10:30, 10:30] = 7
    layer = viewer.add_labels(data, name="big")
    widget.labels_combo.set_layer(layer)
    widget.set_label(4)  # chosen before the scan is done: not painted, kept
    qtbot.waitUntil(lambda: 7 in widget.options.names, timeout=3000)
    assert 4 in widget.options.names
    assert widget.options.selected_label() == 4


def test_a_failed_background_edit_clears_working_and_undo_says_what_it_did(setup, qtbot,
                                                                          monkeypatch):
    from napari_medseg.ui import _controls

    monkeypatch.setattr(_controls, "BACKGROUND_VOXELS", 0)  # treat the volume as "large"
    _viewer, widget, _image, labels = setup
    labels.data = np.where(labels.data == 1, 0, labels.data)  # label 1 is gone
    widget.set_label(1)
    widget.op_buttons["keep_largest"].click()
    qtbot.waitUntil(lambda: widget.op_buttons["shrink_label"].isEnabled(), timeout=20000)
    qtbot.wait(50)
    assert "Working" not in widget.status.text()
    assert widget.status.text().startswith("⚠ Keep largest failed")
    assert "Keep largest failed" in error_messages()[-1]
    widget.undo_button.click()  # the data assignment above is not an undoable edit
    assert "Nothing to undo" in widget.status.text()
    labels.paint((10, 20, 20), 3)
    widget.undo_button.click()
    assert widget.status.text().startswith("Undid the last change")
    widget.redo_button.click()
    assert widget.status.text().startswith("Redid")
