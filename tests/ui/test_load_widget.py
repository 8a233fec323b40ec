"""Load dock: open files/folders with the real buttons, DICOM series chooser, CT windows."""

from __future__ import annotations

import shutil

import napari
import numpy as np
from ui_helpers import error_messages


def _wait_worker(qtbot, widget) -> None:
    qtbot.waitUntil(lambda: widget.worker is not None and not widget.worker.is_running,
                    timeout=20000)
    qtbot.wait(50)


def test_open_nifti_with_matching_labels(make_napari_viewer, qtbot, hippo_cases, plugin_dock):
    image, labels = hippo_cases(1)[0]
    viewer = make_napari_viewer()
    widget = plugin_dock(viewer, "LoadWidget")
    widget.path_edit.setText(str(image))
    widget.open_button.click()
    qtbot.waitUntil(lambda: len(viewer.layers) == 2, timeout=20000)
    kinds = [type(ly).__name__ for ly in viewer.layers]
    assert kinds == ["Image", "Labels"]
    img, lab = viewer.layers
    assert img.data.shape == lab.data.shape
    np.testing.assert_allclose(img.scale, lab.scale)
    assert widget.image_combo.layer() is img
    assert "labels" in widget.status.text()


def test_labels_checkbox_off_opens_image_only(make_napari_viewer, qtbot, hippo_cases, plugin_dock):
    image, _ = hippo_cases(1)[0]
    viewer = make_napari_viewer()
    widget = plugin_dock(viewer, "LoadWidget")
    widget.labels_check.setChecked(False)
    widget.path_edit.setText(str(image))
    widget.open_button.click()
    _wait_worker(qtbot, widget)
    assert [type(ly).__name__ for ly in viewer.layers] == ["Image"]


def test_dicom_folder_with_two_series_shows_chooser(make_napari_viewer, qtbot, samples_dir,
                                                    tmp_path, plugin_dock):
    root = tmp_path / "study"
    for name in ("PGBM-002_HippoCrop", "PGBM-006_HippoCrop"):
        shutil.copytree(samples_dir / "mr_dicom_hippocrop" / name, root / name)
    viewer = make_napari_viewer()
    widget = plugin_dock(viewer, "LoadWidget")
    widget.path_edit.setText(str(root))
    widget.open_button.click()
    qtbot.waitUntil(lambda: not widget.series_box.isHidden(), timeout=20000)
    assert len(viewer.layers) == 0
    assert widget.series_table.rowCount() == 2
    from napari_medseg.ui.load_widget import SERIES_COLUMNS

    col = {name: i for i, name in enumerate(SERIES_COLUMNS)}
    slices = sorted(int(widget.series_table.item(r, col["Slices"]).text()) for r in range(2))
    assert slices == [32, 35]
    assert widget.series_table.item(0, col["Modality"]).text() == "MR"
    # identical descriptions: the folder and the patient tell the rows apart
    folders = {widget.series_table.item(r, col["Folder"]).text() for r in range(2)}
    assert folders == {"PGBM-002_HippoCrop", "PGBM-006_HippoCrop"}
    patients = {widget.series_table.item(r, col["Patient"]).text() for r in range(2)}
    assert len(patients) == 2 and all(p.startswith("PGBM-00") for p in patients)
    widget.series_table.selectRow(1)
    chosen = int(widget.series_table.item(1, col["Slices"]).text())
    widget.series_button.click()
    qtbot.waitUntil(lambda: len(viewer.layers) == 1, timeout=20000)
    assert viewer.layers[0].data.shape[0] == chosen


def test_ct_presets_and_level_width(make_napari_viewer, qtbot, plugin_dock):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-medseg", "ct_phantom")
    widget = plugin_dock(viewer, "LoadWidget")
    image = widget.image_combo.layer()
    assert image is not None and isinstance(image, napari.layers.Image)
    assert widget.preset_combo.isEnabled()
    # a CT opens with the soft-tissue window, and the drop-down says so (not "(custom)")
    assert widget.preset_combo.currentData() == "soft tissue"
    lung = widget.preset_combo.findData("lung")
    widget.preset_combo.setCurrentIndex(lung)
    widget.preset_combo.activated.emit(lung)
    np.testing.assert_allclose(image.contrast_limits, (-1350.0, 150.0))
    assert widget.level_spin.value() == -600 and widget.width_spin.value() == 1500
    widget.level_spin.setValue(100)
    widget.width_spin.setValue(200)
    np.testing.assert_allclose(image.contrast_limits, (0.0, 200.0))
    assert widget.preset_combo.currentData() is None  # a window of one's own: "(custom)"
    widget.level_slider.setValue(50)
    np.testing.assert_allclose(image.contrast_limits, (-50.0, 150.0))


def test_auto_contrast_for_mr(make_napari_viewer, qtbot, hippo_cases, plugin_dock):
    image, _ = hippo_cases(1)[0]
    viewer = make_napari_viewer()
    viewer.open(str(image), plugin="napari-medseg")
    widget = plugin_dock(viewer, "LoadWidget")
    assert not widget.preset_combo.isEnabled()  # presets are for CT only
    layer = viewer.layers[0]
    layer.contrast_limits = (0, 1)
    widget.auto_button.click()
    lo, hi = layer.contrast_limits
    assert hi - lo > 1
    p_lo, p_hi = np.percentile(layer.data, (0.5, 99.5))
    np.testing.assert_allclose((lo, hi), (p_lo, p_hi), rtol=1e-6)


def test_bad_paths_notify(make_napari_viewer, qtbot, tmp_path, plugin_dock):
    viewer = make_napari_viewer()
    widget = plugin_dock(viewer, "LoadWidget")
    n = len(error_messages())
    widget.open_button.click()  # empty path
    assert len(error_messages()) == n + 1
    bad = tmp_path / "noise.dcm"
    bad.write_bytes(b"\x00" * 300)
    widget.path_edit.setText(str(bad))
    widget.open_button.click()
    _wait_worker(qtbot, widget)
    qtbot.waitUntil(lambda: len(error_messages()) == n + 2, timeout=5000)
    assert "noise.dcm" in error_messages()[-1]
    assert len(viewer.layers) == 0


def test_last_folder_is_remembered(make_napari_viewer, qtbot, hippo_cases, plugin_dock):
    from napari_medseg.ui._settings import last_folder

    image, _ = hippo_cases(1)[0]
    viewer = make_napari_viewer()
    widget = plugin_dock(viewer, "LoadWidget")
    widget.path_edit.setText(str(image))
    widget.open_button.click()
    _wait_worker(qtbot, widget)
    assert last_folder("open") == str(image.parent)


def test_reading_shows_a_progress_bar(make_napari_viewer, qtbot, hippo_cases, monkeypatch, plugin_dock):
    from napari.utils import progress

    image, _ = hippo_cases(1)[0]
    viewer = make_napari_viewer()
    widget = plugin_dock(viewer, "LoadWidget")
    seen = []
    monkeypatch.setattr(progress, "close", lambda self: seen.append(self.desc))
    widget.path_edit.setText(str(image))
    widget.open_button.click()
    qtbot.waitUntil(lambda: bool(seen), timeout=20000)
    assert seen == [f"Reading {image.name}"]
