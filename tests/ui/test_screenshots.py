"""Screenshots of each MedSeg tab in use (for the README user guide and as a smoke test).

Images go to ``tmp_path``; set ``MEDSEG_SCREENSHOT_DIR=docs/screenshots`` to refresh the docs.
Each PNG is palette-quantised to stay small (< 300 KB).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from ui_helpers import PLUGIN

WINDOW = (1500, 950)



@pytest.fixture(autouse=True)
def _workers_done(make_napari_viewer, qtbot):
    """Let background jobs that tabs start (autosave, scans) finish before the viewer closes:
    a worker outliving its widget aborts the whole test process."""
    yield
    from qtpy.QtCore import QThreadPool

    QThreadPool.globalInstance().waitForDone(20000)
    qtbot.wait(50)


@pytest.fixture
def out_dir(tmp_path) -> Path:
    target = os.environ.get("MEDSEG_SCREENSHOT_DIR")
    folder = Path(target) if target else tmp_path / "shots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def app(make_napari_viewer, qtbot, plugin_dock):
    viewer = make_napari_viewer(show=True)
    widget = plugin_dock(viewer, "MedSegWidget")
    viewer.window._qt_window.resize(*WINDOW)
    return viewer, widget


def _save(viewer, qtbot, path: Path) -> Path:
    from PIL import Image

    qtbot.wait(300)
    pixels = viewer.window.screenshot(canvas_only=False, flash=False)
    image = Image.fromarray(np.asarray(pixels)[..., :3])
    image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    assert path.stat().st_size < 300_000, f"{path.name} is {path.stat().st_size} bytes"
    # a real picture: the canvas is not blank and the dock is drawn
    assert np.asarray(pixels)[..., :3].std() > 10
    return path


def _zoom(viewer) -> None:
    viewer.reset_view()


def test_screenshot_load(app, qtbot, out_dir, samples_dir, tmp_path):
    viewer, widget = app
    viewer.open_sample(PLUGIN, "ct_phantom")
    viewer.layers[-1].visible = False
    load = widget.page("Load")
    study = tmp_path / "study"
    for name in ("PGBM-002_HippoCrop", "PGBM-006_HippoCrop"):
        shutil.copytree(samples_dir / "mr_dicom_hippocrop" / name, study / name)
    load.path_edit.setText(str(study))
    load.open_button.click()
    qtbot.waitUntil(lambda: not load.series_box.isHidden(), timeout=20000)
    load.image_combo.set_layer(viewer.layers[0])
    load.apply_preset("soft tissue")
    viewer.dims.set_point(0, float(np.mean(viewer.layers[0].extent.world[:, 0])))
    widget.show_tab("Load")
    _zoom(viewer)
    _save(viewer, qtbot, out_dir / "load.png")


def test_screenshot_annotate(app, qtbot, out_dir, hippo_cases):
    viewer, widget = app
    image_path, _ = hippo_cases(1)[0]
    viewer.open(str(image_path), plugin=PLUGIN)
    annotate = widget.page("Annotate")
    annotate.new_button.click()
    labels = viewer.layers[-1]
    annotate.set_class_name(1, "Anterior")
    [b for b in annotate.findChildren(type(annotate.new_button)) if b.text() == "Add class"][0]\
        .click()
    annotate.set_class_name(2, "Posterior")
    k = labels.data.shape[0] // 2
    viewer.dims.set_point(0, float(labels.data_to_world((k, 0, 0))[0]))
    labels.brush_size = 6
    labels.paint((k, 22, 15), 1)
    labels.paint((k, 30, 18), 2)
    annotate.mark_button.click()
    annotate.constrain_check.setChecked(True)
    annotate._on_window_from_display()
    labels.selected_label = 1
    widget.show_tab("Annotate")
    _zoom(viewer)
    _save(viewer, qtbot, out_dir / "annotate.png")


def test_screenshot_edit(app, qtbot, out_dir, hippo_cases):
    viewer, widget = app
    image_path, labels_path = hippo_cases(1)[0]
    viewer.open(str(image_path), plugin=PLUGIN)
    (labels,) = viewer.open(str(labels_path), plugin=PLUGIN)
    edit = widget.page("Edit")
    edit.labels_combo.set_layer(labels)
    edit.set_label(1)
    k = int(np.argmax((labels.data == 1).reshape(labels.data.shape[0], -1).sum(1)))
    viewer.dims.set_point(0, float(labels.data_to_world((k, 0, 0))[0]))
    edit.contours_button.click()
    edit.components_button.click()
    edit.radius_spin.setValue(2.0)
    edit.preview_check.setChecked(True)
    edit.op_buttons["grow_label"].click()  # preview: what growing by 2 mm would add
    assert edit.preview_layer is not None
    viewer.layers.selection.active = labels
    widget.show_tab("Edit")
    _zoom(viewer)
    _save(viewer, qtbot, out_dir / "edit.png")


def test_screenshot_evaluate(app, qtbot, out_dir, hippo_cases):
    from scipy import ndimage as ndi

    viewer, widget = app
    image_path, labels_path = hippo_cases(1)[0]
    viewer.open(str(image_path), plugin=PLUGIN)
    (gt,) = viewer.open(str(labels_path), plugin=PLUGIN)
    pred_data = gt.data.copy()
    pred_data[ndi.binary_dilation(gt.data == 1, iterations=1) & (gt.data == 0)] = 1
    pred_data[ndi.binary_erosion(gt.data == 2) ^ (gt.data == 2)] = 0
    pred = viewer.add_labels(pred_data, name="model prediction", scale=gt.scale,
                             translate=gt.translate, metadata=dict(gt.metadata))
    evaluate = widget.page("Evaluate")
    evaluate.pred_combo.set_layer(pred)
    evaluate.gt_combo.set_layer(gt)
    evaluate.compute_button.click()
    qtbot.waitUntil(lambda: evaluate.table.columnCount() == 2, timeout=30000)
    evaluate.diff_button.click()
    pred.visible = False
    gt.visible = False
    k = int(np.argmax((gt.data > 0).reshape(gt.data.shape[0], -1).sum(1)))
    viewer.dims.set_point(0, float(gt.data_to_world((k, 0, 0))[0]))
    widget.show_tab("Evaluate")
    _zoom(viewer)
    _save(viewer, qtbot, out_dir / "evaluate.png")
