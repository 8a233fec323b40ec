"""Annotate dock driven through its real buttons on a real hippocampus MRI."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest
from ui_helpers import PLUGIN, error_messages

from napari_medseg.events import IGNORE_LABEL


@pytest.fixture
def setup(make_napari_viewer, qtbot, hippo_cases, tmp_path, plugin_dock):
    src, _ = hippo_cases(1)[0]
    image_path = tmp_path / "case.nii.gz"
    shutil.copy(src, image_path)
    viewer = make_napari_viewer()
    (image,) = viewer.open(str(image_path), plugin=PLUGIN)
    widget = plugin_dock(viewer, "AnnotateWidget")
    widget.new_button.click()
    labels = viewer.layers[-1]
    return viewer, widget, image, labels, image_path


def _go_to_slice(viewer, layer, k: int) -> None:
    viewer.dims.set_point(0, float(layer.data_to_world((k, 0, 0))[0]))



def test_new_labels_layer_matches_image_geometry(setup):
    viewer, widget, image, labels, _ = setup
    assert type(labels).__name__ == "Labels"
    assert labels.data.shape == image.data.shape
    np.testing.assert_allclose(labels.scale, image.scale)
    np.testing.assert_allclose(labels.translate, image.translate)
    np.testing.assert_array_equal(labels.metadata["medseg"]["affine"],
                                  image.metadata["medseg"]["affine"])
    assert widget.labels_combo.layer() is labels
    assert widget.class_table.rowCount() == 1


def test_class_table_edits_go_to_layer(setup):
    viewer, widget, _image, labels, _ = setup
    widget.class_table.item(0, 1).setText("Anterior")  # edit in place
    assert labels.metadata["medseg"]["classes"][1]["name"] == "Anterior"
    add = [b for b in widget.findChildren(type(widget.new_button)) if b.text() == "Add class"][0]
    add.click()
    assert widget.class_table.rowCount() == 2
    assert labels.selected_label == 2
    widget.set_class_name(2, "Posterior")
    widget.set_class_color(2, "#00ff00")
    classes = labels.metadata["medseg"]["classes"]
    assert classes[2] == {"name": "Posterior", "color": "#00ff00"}
    np.testing.assert_allclose(labels.colormap.map(np.array([2]))[0][:3], (0, 1, 0))
    widget.class_table.selectRow(0)
    assert labels.selected_label == 1


def test_brush_size_in_mm(setup):
    _viewer, widget, _image, labels, _ = setup
    widget.brush_mm.setValue(7.0)  # hippocampus: 1 mm voxels
    assert labels.brush_size == 7
    assert "7 voxels" in widget.brush_px.text()
    labels.brush_size = 10  # napari's own slider: the mm field follows
    assert widget.brush_mm.value() == pytest.approx(10.0)
    assert "10 voxels" in widget.brush_px.text()


def test_intensity_constrained_painting_and_undo(setup, qtbot):
    viewer, widget, image, labels, _ = setup
    _go_to_slice(viewer, labels, 17)
    data = np.asarray(image.data)
    lo, hi = np.percentile(data, (40, 70))
    widget.low_spin.setValue(lo)
    widget.high_spin.setValue(hi)
    widget.constrain_check.setChecked(True)
    labels.brush_size = 15
    labels.selected_label = 1
    labels.paint((17, 25, 17), 1)  # a real brush dab: records a history atom + paint event
    qtbot.wait(20)
    painted = labels.data == 1
    assert painted.any()
    inside = (data >= widget.low_spin.value()) & (data <= widget.high_spin.value())
    assert not (painted & ~inside).any(), "voxels outside the window stayed painted"
    # without the constraint the same dab paints more
    labels.undo()
    assert not labels.data.any()
    widget.constrain_check.setChecked(False)
    labels.paint((17, 25, 17), 1)
    assert (labels.data == 1).sum() > painted.sum()
    labels.undo()
    assert not labels.data.any()
    labels.redo()
    assert (labels.data == 1).sum() > painted.sum()


def test_constrained_stroke_undo_redo_exact(setup, qtbot):
    viewer, widget, image, labels, _ = setup
    data = np.asarray(image.data)
    lo, hi = np.percentile(data, (30, 80))
    widget.low_spin.setValue(lo)
    widget.high_spin.setValue(hi)
    widget.constrain_check.setChecked(True)
    labels.brush_size = 11
    labels._begin_stroke()  # what a mouse drag does: several dabs, one undo step
    labels.paint((10, 25, 14), 1)
    labels.paint((10, 25, 20), 1)
    labels._commit_stroke()
    qtbot.wait(20)
    after = labels.data.copy()
    inside = (data >= widget.low_spin.value()) & (data <= widget.high_spin.value())
    assert after.any() and not (after.astype(bool) & ~inside).any()
    labels.undo()
    assert not labels.data.any()
    labels.redo()
    np.testing.assert_array_equal(labels.data, after)


def test_interpolate_button_and_undo(setup, qtbot):
    viewer, widget, _image, labels, _ = setup
    yy, xx = np.mgrid[: labels.data.shape[1], : labels.data.shape[2]]
    disc = (yy - 25) ** 2 + (xx - 17) ** 2 <= 36
    new = np.zeros_like(labels.data)
    new[8][disc] = 1
    new[16][disc] = 1
    labels.data[...] = new
    before = labels.data.copy()
    widget.interp_button.click()
    for k in range(9, 16):
        assert labels.data[k].sum() > 0.8 * disc.sum()
    assert labels.data[20].sum() == 0
    labels.undo()
    np.testing.assert_array_equal(labels.data, before)


def test_presegmentation_threshold_window_new_layer(setup):
    viewer, widget, image, _labels, _ = setup
    data = np.asarray(image.data)
    lo, hi = np.percentile(data, (60, 90))
    widget.low_spin.setValue(lo)
    widget.high_spin.setValue(hi)
    widget.method_combo.setCurrentIndex(widget.method_combo.findData("threshold"))
    widget.otsu_check.setChecked(False)
    n = len(viewer.layers)
    widget.preseg_button.click()
    assert len(viewer.layers) == n + 1
    result = viewer.layers[-1]
    expected = (data >= widget.low_spin.value()) & (data <= widget.high_spin.value())
    np.testing.assert_array_equal(result.data > 0, expected)
    np.testing.assert_allclose(result.scale, image.scale)


def test_presegmentation_kmeans_into_current_and_region_grow(setup, qtbot):
    """k-means runs in a worker even on a small image (it took the GUI thread 2-3 s): the
    button returns at once, a timer keeps firing meanwhile, and the result is one undo step."""
    from qtpy.QtCore import QTimer

    viewer, widget, image, labels, _ = setup
    labels.data[0, 0, 0] = 1
    widget.method_combo.setCurrentIndex(widget.method_combo.findData("kmeans"))
    widget.n_classes_spin.setValue(3)
    widget.target_combo.setCurrentIndex(widget.target_combo.findData("current"))
    ticks: list[int] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(10)
    n_steps = len(labels._undo_history)
    widget.preseg_button.click()
    assert widget.worker is not None and not widget.preseg_button.isEnabled()
    assert not ticks  # the handler returned before the event loop ran again
    qtbot.waitUntil(lambda: widget.preseg_button.isEnabled(), timeout=60000)
    timer.stop()
    assert len(ticks) >= 3  # the GUI thread kept running while k-means ran
    assert set(np.unique(labels.data)) <= {0, 1, 2, 3}
    assert len(np.unique(labels.data)) >= 3
    assert len(labels._undo_history) == n_steps + 1
    labels.undo()
    assert labels.data.sum() == 1
    # region grow needs a seed: without one the user gets a message, not a crash
    n_err = len(error_messages())
    widget.method_combo.setCurrentIndex(widget.method_combo.findData("region_grow"))
    widget.target_combo.setCurrentIndex(widget.target_combo.findData("new"))
    widget.preseg_button.click()
    assert len(error_messages()) == n_err + 1 and "seed" in error_messages()[-1]
    widget.set_seed((17, 25, 17))
    widget.tolerance_spin.setValue(20)
    widget.preseg_button.click()
    grown = viewer.layers[-1].data
    assert grown[17, 25, 17] == 1 and 0 < grown.sum() < grown.size


def test_sparse_marks_and_save_next_to_image(setup):
    viewer, widget, _image, labels, image_path = setup
    labels.data[5, 20:30, 10:20] = 1
    labels.data[9, 20:30, 10:20] = 1
    _go_to_slice(viewer, labels, 12)
    widget.mark_button.click()
    assert widget.annotated_slices() == [12]
    widget.mark_all_button.click()
    assert widget.annotated_slices() == [5, 9, 12]
    widget.unmark_button.click()
    assert widget.annotated_slices() == [5, 9]
    assert "2 of" in widget.marks_label.text()
    widget.save_button.click()
    out = image_path.parent / "case_labels.nii.gz"
    assert out.is_file()
    assert (image_path.parent / "case_labels.classes.json").is_file()
    disk = np.asarray(nib.load(str(out)).dataobj).transpose(2, 1, 0)
    np.testing.assert_array_equal(disk[5], labels.data[5])
    assert (disk[0] == IGNORE_LABEL).all() and (disk[12] == IGNORE_LABEL).all()
    np.testing.assert_array_equal(nib.load(str(out)).affine, nib.load(str(image_path)).affine)
    widget.clear_marks_button.click()
    assert widget.annotated_slices() == []
    widget.save_button.click()
    disk = np.asarray(nib.load(str(out)).dataobj).transpose(2, 1, 0)
    np.testing.assert_array_equal(disk, labels.data)


def test_buttons_without_layers_notify(make_napari_viewer, qtbot, plugin_dock):
    viewer = make_napari_viewer()
    widget = plugin_dock(viewer, "AnnotateWidget")
    n = len(error_messages())
    for b in (widget.new_button, widget.interp_button, widget.mark_button, widget.save_button,
              widget.preseg_button):
        b.click()
    assert len(error_messages()) == n + 5


def test_pick_seed_by_clicking(setup):
    viewer, widget, image, _labels, _ = setup
    widget.method_combo.setCurrentIndex(widget.method_combo.findData("region_grow"))
    widget.seed_button.click()
    assert widget.seed_button.isChecked()
    assert widget._seed_callback in viewer.mouse_drag_callbacks

    class Click:
        position = tuple(image.data_to_world((17, 25, 17)))

    widget._seed_callback(viewer, Click())
    assert widget.seed == (17, 25, 17)
    assert not widget.seed_button.isChecked()
    assert widget._seed_callback not in viewer.mouse_drag_callbacks


def test_presegmentation_in_background_for_large_volumes(setup, qtbot, monkeypatch):
    from napari_medseg.ui import _controls, annotate_presegment

    monkeypatch.setattr(_controls, "BACKGROUND_VOXELS", 0)
    monkeypatch.setattr(annotate_presegment, "BACKGROUND_VOXELS", 0)
    viewer, widget, image, labels, _ = setup
    widget.method_combo.setCurrentIndex(widget.method_combo.findData("threshold"))
    widget.otsu_check.setChecked(True)
    n = len(viewer.layers)
    widget.preseg_button.click()
    assert widget.worker is not None
    qtbot.waitUntil(lambda: len(viewer.layers) == n + 1, timeout=20000)
    assert viewer.layers[-1].data.any()
    qtbot.waitUntil(lambda: widget.preseg_button.isEnabled(), timeout=5000)
    widget.target_combo.setCurrentIndex(widget.target_combo.findData("current"))
    widget.labels_combo.set_layer(labels)
    widget.preseg_button.click()
    qtbot.waitUntil(lambda: labels.data.any(), timeout=20000)
    qtbot.waitUntil(lambda: widget.preseg_button.isEnabled(), timeout=5000)
    labels.undo()
    assert not labels.data.any()


def test_intensity_window_defaults_to_the_image_display(setup):
    viewer, widget, image, _labels, _ = setup
    lo, hi = image.contrast_limits
    assert widget.low_spin.value() == pytest.approx(lo, abs=0.05)
    assert widget.high_spin.value() == pytest.approx(hi, abs=0.05)
    widget.low_spin.setValue(lo + 5)
    viewer.add_points([[1, 1, 1]])  # other layers come and go: the user's window stays
    assert widget.low_spin.value() == pytest.approx(lo + 5, abs=0.05)
