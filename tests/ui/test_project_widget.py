"""Project dock: two full rounds (accept -> retrain -> predict) through the real buttons on real
hippocampus cases, version switching, autosave + restore on reopen, next case / next slices,
and a screenshot of the dock in use."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from qtpy.QtCore import Qt
from ui_helpers import error_messages

from napari_medseg.cycle import default_retrain_config, retrain, run_to_end
from napari_medseg.dataset.project import Project
from napari_medseg.events import IGNORE_LABEL
from napari_medseg.ui.project_widget import ProjectWidget

CLASSES = {1: {"name": "Anterior", "color": "#e6194b"}, 2: {"name": "Posterior",
                                                              "color": "#3cb44b"}}
#: A network and schedule small enough for a few seconds on 2 busy CPU cores.
TINY = dict(dims=3, base_channels=4, max_channels=16, steps_per_epoch=3, batch_size=1,
            patch_size=(16, 32, 16), augmentation="none", max_epochs=1, seed=0, device="cpu")


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_MEDSEG_SETTINGS", str(tmp_path / "settings.ini"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # inherited by the training child



def _open(viewer, paths):
    from napari_medseg._reader import read_path

    layers = []
    for path in paths:
        for data, kwargs, kind in read_path(path):
            layers.append(getattr(viewer, f"add_{kind}")(data, **kwargs))
    return layers


def _widget(viewer) -> ProjectWidget:
    # docked as users do it (Plugins menu): napari hands the widget a viewer proxy
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-medseg", "Project")
    return widget


def _wait(qtbot, widget, timeout=60000):
    qtbot.waitUntil(lambda: widget.pending == 0, timeout=timeout)
    qtbot.wait(50)


def _click(qtbot, btn):
    assert btn.isEnabled(), btn.text()
    qtbot.mouseClick(btn, Qt.LeftButton)


def _retrain_by_button(qtbot, widget, timeout=240000):
    _click(qtbot, widget.retrain_button)
    assert widget.retrain_worker is not None, error_messages()[-3:]
    qtbot.waitUntil(lambda: widget.retrain_worker is None, timeout=timeout)
    qtbot.wait(50)


@pytest.mark.slow
def test_two_full_rounds_through_the_buttons(make_napari_viewer, qtbot, hippo_cases, tmp_path):
    viewer = make_napari_viewer()
    (img1, lab1), (img2, lab2) = hippo_cases(2)
    image1, labels1 = _open(viewer, [img1, lab1])
    widget = _widget(viewer)
    widget.train_overrides = dict(TINY)
    project = widget.create_project(tmp_path / "proj", "Hippocampus", CLASSES, "MR")
    assert widget.predict_button.isEnabled() is False  # no model yet

    # round 1: a sparse case (two slices marked annotated in the Annotate tab)
    widget.image_combo.set_layer(image1)
    widget.labels_combo.set_layer(labels1)
    meta = dict(labels1.metadata)
    meta["medseg"] = dict(meta.get("medseg") or {}, annotated_slices=[12, 20])
    labels1.metadata = meta
    _click(qtbot, widget.accept_button)
    assert project.accepted_ids() == ["hippocampus_001"]
    stored = project.load_labels("hippocampus_001", keep_ignore=True)
    assert np.all(stored[[0, 5, 30]] == IGNORE_LABEL)
    np.testing.assert_array_equal(stored[12], np.asarray(labels1.data)[12])

    _retrain_by_button(qtbot, widget)
    assert project.current_model == "v001", error_messages()[-3:]
    assert widget.version_table.rowCount() == 1
    assert widget.version_table.item(0, 0).text() == "v001"

    # predict the next image with v001
    image2, labels2 = _open(viewer, [img2, lab2])
    widget.image_combo.set_layer(image2)
    _click(qtbot, widget.predict_button)
    _wait(qtbot, widget)
    predicted = viewer.layers["hippocampus_003 v001"]
    assert predicted.data.shape == image2.data.shape
    np.testing.assert_allclose(predicted.scale, image2.scale)
    assert widget.labels_combo.layer() is predicted

    # round 2: "correct" the prediction (the ground truth stands in for the annotator), accept
    predicted.data = np.asarray(labels2.data).astype(np.uint8)
    _click(qtbot, widget.accept_button)
    assert project.accepted_ids() == ["hippocampus_001", "hippocampus_003"]
    _retrain_by_button(qtbot, widget)
    assert project.current_model == "v002", error_messages()[-3:]
    versions = {m["version"]: m for m in project.models()}
    assert versions["v002"]["parent"] == "v001"
    assert "new_cases/dice_mean" in versions["v001"]["metrics"]  # scored on the unseen case
    assert widget.version_table.rowCount() == 2

    _click(qtbot, widget.predict_button)
    _wait(qtbot, widget)
    assert "hippocampus_003 v002" in [ly.name for ly in viewer.layers]

    # the project folder holds both accepted cases as a valid MSD dataset
    root = tmp_path / "proj"
    assert sorted(p.name for p in (root / "labelsTr").glob("*.nii.gz")) == [
        "hippocampus_001.nii.gz", "hippocampus_003.nii.gz"]
    assert sorted(p.name for p in (root / "imagesTr").glob("*.nii.gz")) == [
        "hippocampus_001.nii.gz", "hippocampus_003.nii.gz"]
    assert json.loads((root / "dataset.json").read_text())["numTraining"] == 2

    # switch back to v001 from the table
    row = [widget.version_table.item(r, 0).text()
           for r in range(widget.version_table.rowCount())].index("v001")
    widget.version_table.selectRow(row)
    _click(qtbot, widget.use_version_button)
    assert Project.open(root).current_model == "v001"
    assert not error_messages()


def test_cancel_keeps_the_current_model(make_napari_viewer, qtbot, hippo_cases, tmp_path):
    viewer = make_napari_viewer()
    (img1, lab1), = hippo_cases(1)
    image1, labels1 = _open(viewer, [img1, lab1])
    widget = _widget(viewer)
    widget.train_overrides = dict(TINY, max_epochs=100000)  # only Cancel ends it
    project = widget.create_project(tmp_path / "proj", "Hippocampus", CLASSES, "MR")
    widget.image_combo.set_layer(image1)
    widget.labels_combo.set_layer(labels1)
    _click(qtbot, widget.accept_button)
    _click(qtbot, widget.retrain_button)
    assert not widget.retrain_button.isEnabled() and widget.cancel_button.isEnabled()
    # wait until the child is really training (a step event arrived), then cancel
    qtbot.waitUntil(lambda: widget.train_label.text().startswith(("step", "epoch")),
                    timeout=120000)
    _click(qtbot, widget.cancel_button)
    qtbot.waitUntil(lambda: widget.retrain_worker is None, timeout=120000)
    assert project.models() == [] and project.current_model is None
    assert "unchanged" in widget.train_label.text() or "did not change" in \
        widget.train_label.text()
    assert widget.retrain_button.isEnabled() and not widget.cancel_button.isEnabled()
    assert not error_messages()


def test_autosave_and_restore_on_reopen(make_napari_viewer, qtbot, hippo_cases, tmp_path):
    viewer = make_napari_viewer()
    (img1, lab1), = hippo_cases(1)
    (image,) = _open(viewer, [img1])
    widget = _widget(viewer)
    widget.create_project(tmp_path / "proj", "Hippocampus", CLASSES, "MR")
    from napari_medseg.ui._layers import add_labels_for_image

    labels = add_labels_for_image(viewer, image, classes=CLASSES)
    widget.labels_combo.set_layer(labels)
    widget.image_combo.set_layer(image)
    labels.paint((10, 20, 15), 2)  # a brush stroke: autosaved after a short pause
    meta = dict(labels.metadata)
    meta["medseg"] = dict(meta["medseg"], annotated_slices=[10])
    labels.metadata = meta
    project = widget.project
    qtbot.waitUntil(lambda: project.case_ids() != [] and project.has_draft(project.case_ids()[0]),
                    timeout=20000)
    _wait(qtbot, widget)
    cid = project.case_ids()[0]
    painted = np.asarray(labels.data).copy()
    assert painted[10, 20, 15] == 2

    # a new session: same image opened again -> the labels come back
    viewer.layers.clear()
    widget.close()
    widget2 = _widget(viewer)
    widget2.open_project(tmp_path / "proj")
    (image_again,) = _open(viewer, [img1])
    restored = [ly for ly in viewer.layers if ly.name == "hippocampus_001 labels"]
    assert restored, [ly.name for ly in viewer.layers]
    np.testing.assert_array_equal(np.asarray(restored[0].data), painted)
    assert restored[0].metadata["medseg"]["annotated_slices"] == [10]
    assert widget2.labels_combo.layer() is restored[0]
    assert Project.open(tmp_path / "proj").case_info(cid)["status"] == "draft"
    assert not error_messages()


def _make_project(root, hippo_cases, n_accepted=1, config=None, rounds=1):
    """A project with accepted cases, ``rounds`` trained versions and two pool images
    (every round after the first accepts one more case, sparse: every 4th slice)."""
    from napari_medseg.dataset.msd import read_image

    project = Project.create(root, "Hippocampus", CLASSES, "MR")
    cases = hippo_cases(n_accepted + rounds + 1)
    for i, (img, lab) in enumerate(cases[: n_accepted + rounds - 1]):
        labels = np.asarray(read_image(lab).array).astype(np.uint8)
        slices = None if i < n_accepted else list(range(2, labels.shape[0], 4))
        project.accept_case(read_image(img), labels, slices)
        if i >= n_accepted - 1:
            run_to_end(retrain(project, config=config or default_retrain_config(project, 60,
                                                                                 **TINY)))
    for img, _ in cases[n_accepted + rounds - 1:]:
        project.add_unlabelled(img)
    return project


@pytest.fixture
def trained_project(tmp_path, hippo_cases):
    return _make_project(tmp_path / "proj", hippo_cases)


def test_next_case_and_next_slices(make_napari_viewer, qtbot, trained_project):
    viewer = make_napari_viewer()
    widget = _widget(viewer)
    widget.open_project(trained_project.root)
    _click(qtbot, widget.next_case_button)
    _wait(qtbot, widget)
    ranking = widget.last_ranking
    assert sorted(c for c, _ in ranking) == sorted(trained_project.unlabelled_ids())
    assert ranking[0][1] >= ranking[-1][1]
    top = ranking[0][0]
    assert top in [ly.name for ly in viewer.layers]
    assert f"{top} v001" in [ly.name for ly in viewer.layers]  # its prediction, to correct
    image = viewer.layers[top]
    assert widget.image_combo.layer() is image

    _click(qtbot, widget.next_slices_button)
    _wait(qtbot, widget)
    assert widget.last_slices
    first = widget.last_slices[0]
    shown = image.world_to_data(viewer.dims.point)[0]
    assert round(float(shown)) == first
    # the text numbers slices as the slider does (hippocampus axis 0 runs the other way)
    assert image.scale[0] < 0
    slider = viewer.dims.current_step[0]
    assert slider == image.data.shape[0] - 1 - first
    assert widget.next_label.text().endswith(f"(showing {slider})")
    assert not error_messages()


def test_buttons_explain_missing_project(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget = _widget(viewer)
    assert not widget.accept_button.isEnabled() and not widget.retrain_button.isEnabled()
    widget.accept_current()  # called directly: one clear notification, no traceback
    assert any("create or open a project first" in m for m in error_messages())


def test_screenshot_project_dock(make_napari_viewer, qtbot, hippo_cases, tmp_path):
    """Screenshot; with MEDSEG_SCREENSHOT_DIR set (refreshing the docs) the model is a real one
    (about a minute of 3D training on 4 cases), else the tiny test model."""
    from PIL import Image

    target = os.environ.get("MEDSEG_SCREENSHOT_DIR")
    config = None
    if target:
        probe = Project.create(tmp_path / "probe", "x", CLASSES, "MR")
        config = default_retrain_config(probe, 60.0, dims=3, device="cpu", seed=0)
    project = _make_project(tmp_path / "proj", hippo_cases, 4 if target else 1, config,
                            rounds=2)
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    widget = _widget(viewer)
    widget.open_project(project.root)
    _click(qtbot, widget.next_case_button)
    _wait(qtbot, widget)
    _click(qtbot, widget.next_slices_button)
    _wait(qtbot, widget)
    widget.version_table.selectRow(0)
    qtbot.wait(300)
    folder = Path(target) if target else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.asarray(viewer.window.screenshot(canvas_only=False, flash=False))[..., :3]
    assert pixels.std() > 5  # not a blank window
    path = folder / "project.png"
    Image.fromarray(pixels).quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(
        path, optimize=True)
    assert path.stat().st_size > 10_000
