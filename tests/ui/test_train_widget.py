"""Train dock: real buttons, real (tiny) training on two hippocampus cases in a child process,
the model appears in Infer, Cancel stops the child and keeps earlier models, errors are one
notification, and the user's labels are never modified."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from qtpy.QtCore import Qt
from ui_helpers import error_messages

from napari_medseg.ui._models import list_models, set_models_folder
from napari_medseg.ui.train_widget import TrainWidget, find_training_pairs

#: A network and schedule small enough for a few seconds on 2 CPU cores.
TINY = dict(base_channels=4, max_channels=16, steps_per_epoch=3, batch_size=1,
            patch_size=(16, 32, 16), augmentation="none", val_fraction=0.5, max_epochs=2,
            seed=0)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_MEDSEG_SETTINGS", str(tmp_path / "settings.ini"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # inherited by the training child
    set_models_folder(tmp_path / "models")
    from napari.utils.notifications import notification_manager

    notification_manager.records.clear()  # records are global: count this test's only



def _open_pairs(viewer, hippo_cases, n=2):
    from napari_medseg._reader import read_path

    for image, labels in hippo_cases(n):
        for path in (image, labels):
            for data, kwargs, kind in read_path(path):
                getattr(viewer, f"add_{kind}")(data, **kwargs)


def _widget(viewer, qtbot) -> TrainWidget:
    # docked as users do it (Plugins menu): napari hands the widget a viewer proxy
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-medseg", "Train")
    # the device probe runs in a child process; let it finish so no thread outlives the test
    qtbot.waitUntil(lambda: "detecting" not in widget.device_label.text(), timeout=60000)
    return widget


def _wait_done(qtbot, widget, timeout_ms=150000):
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=timeout_ms)
    qtbot.wait(50)


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.is_file()}


def test_pairs_follow_the_layer_list(make_napari_viewer, qtbot, hippo_cases):
    viewer = make_napari_viewer()
    _open_pairs(viewer, hippo_cases, 2)
    pairs = find_training_pairs(viewer)
    assert [(im.name, lab.name) for im, lab in pairs] == [
        ("hippocampus_001", "hippocampus_001 labels"),
        ("hippocampus_003", "hippocampus_003 labels")]
    widget = _widget(viewer, qtbot)
    assert widget.pair_list.count() == 2
    assert len(widget.checked_pairs()) == 2
    viewer.layers.remove("hippocampus_003 labels")
    assert widget.pair_list.count() == 1
    assert widget.device_label.text().startswith(("CPU (", "GPU: "))


@pytest.mark.slow
def summary_steps(widget) -> int:
    return int(widget.last_result.steps)


def test_train_button_saves_a_model_and_keeps_labels(make_napari_viewer, qtbot, hippo_cases,
                                                     tmp_path, plugin_dock):
    viewer = make_napari_viewer()
    _open_pairs(viewer, hippo_cases, 2)
    labels_before = {ly.name: np.array(ly.data, copy=True)
                     for ly in viewer.layers if type(ly).__name__ == "Labels"}
    widget = _widget(viewer, qtbot)

    infer = plugin_dock(viewer, "InferWidget")
    assert infer.model_combo.currentData() is None
    widget.config_overrides = dict(TINY)
    widget.name_edit.setText("hippo tiny")
    saved: list[str] = []
    widget.model_saved.connect(saved.append)
    assert widget.start_button.isEnabled() and not widget.cancel_button.isEnabled()
    widget.start_button.click()
    assert widget.runner.running
    assert widget.cancel_button.isEnabled() and not widget.start_button.isEnabled()
    _wait_done(qtbot, widget)

    assert widget.last_event.kind == "finished", widget.last_event.message
    model_dir = tmp_path / "models" / "hippo-tiny"
    assert saved == [str(model_dir)]
    assert (model_dir / "model.pt").is_file() and (model_dir / "model_card.json").is_file()
    assert widget.last_result.model_dir == str(model_dir)
    # a few steps teach nothing: the dock says so, with how long this data needs here
    text = widget.status_label.text()
    assert "hippo-tiny is not usable yet" in text and "Select it in Infer" not in text
    assert f"only {summary_steps(widget)} training steps" in text and "on this machine" in text
    # the live plot received every step and both epochs
    summary = widget.plot.summary()
    assert summary["steps"] == TINY["steps_per_epoch"] * TINY["max_epochs"]
    assert summary["epochs"] == TINY["max_epochs"]
    assert summary["best_dice"] is not None
    # the progress bar was closed
    from napari.utils import progress

    assert not [p for p in progress._all_instances if str(p).startswith("Training")]
    # the new model is offered for fine-tuning (which fixes 2D/3D) and listed for Infer
    assert widget.init_combo.findData(str(model_dir)) >= 0
    widget.dims_combo.setCurrentIndex(1)  # 2D
    widget.init_combo.setCurrentIndex(widget.init_combo.findData(str(model_dir)))
    assert widget.dims_combo.currentData() == 3 and not widget.dims_combo.isEnabled()
    widget.init_combo.setCurrentIndex(0)
    assert widget.dims_combo.isEnabled()
    assert [e.path for e in list_models()] == [model_dir]
    assert infer.model_combo.currentData() == str(model_dir), "Infer offers the new model"
    # the card records the class names of the labels layers
    card = list_models()[0].card
    assert [c["name"] for c in card.classes if c["value"] != 0] == ["Anterior", "Posterior"]
    # training worked on copies: the user's labels are untouched
    for ly in viewer.layers:
        if ly.name in labels_before:
            np.testing.assert_array_equal(ly.data, labels_before[ly.name])
    assert not error_messages()
    # a second run never overwrites the first model
    widget.start_button.click()
    _wait_done(qtbot, widget)
    assert widget.last_event.kind == "finished"
    assert (tmp_path / "models" / "hippo-tiny-2" / "model.pt").is_file()


@pytest.mark.slow
def test_cancel_stops_the_child_and_keeps_the_previous_model(make_napari_viewer, qtbot,
                                                             hippo_cases, tmp_path):
    from napari_medseg.training import TrainConfig, train

    previous = tmp_path / "models" / "previous"
    gen = train(TrainConfig(**TINY, device="cpu"), dataset=[
        _case(im, lab) for im, lab in hippo_cases(2)], out_dir=previous)
    for _ in gen:
        pass
    before = _digest(previous)

    viewer = make_napari_viewer()
    _open_pairs(viewer, hippo_cases, 2)
    widget = _widget(viewer, qtbot)
    widget.refresh_models()
    widget.init_combo.setCurrentIndex(widget.init_combo.findData(str(previous)))
    widget.config_overrides = {**TINY, "max_epochs": 10000, "steps_per_epoch": 10000}
    widget.budget_spin.setValue(30.0)
    widget.name_edit.setText("finetuned")
    widget.start_button.click()
    qtbot.waitUntil(lambda: widget.plot.summary()["steps"] >= 2, timeout=120000)
    pid = widget.runner.job.pid
    widget.cancel_button.click()
    assert not widget.cancel_button.isEnabled()
    _wait_done(qtbot, widget, timeout_ms=60000)

    assert widget.last_event.kind == "cancelled"
    assert "cancelled" in widget.status_label.text().lower()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the child process is gone (and with it any GPU memory)
    assert _digest(previous) == before, "cancel must not touch the model fine-tuned from"
    assert not (tmp_path / "models" / "finetuned" / "model.pt").exists() or \
        widget.last_result.model_dir is not None
    assert widget.start_button.isEnabled()
    assert not error_messages()


def test_napari_quitting_the_worker_stops_the_child(make_napari_viewer, qtbot, hippo_cases):
    """napari calls quit() on every worker when it exits; the training child must not linger."""
    viewer = make_napari_viewer()
    _open_pairs(viewer, hippo_cases, 2)
    widget = _widget(viewer, qtbot)
    widget.config_overrides = {**TINY, "max_epochs": 10000}
    widget.start_button.click()
    qtbot.waitUntil(lambda: bool(widget.runner.job is not None and widget.runner.job.pid),
                    timeout=10000)
    pid = widget.runner.job.pid
    widget.runner.worker.quit()
    _wait_done(qtbot, widget, timeout_ms=30000)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert widget.start_button.isEnabled()


def test_sparse_slices_become_ignore_label_in_a_copy(make_napari_viewer, qtbot, hippo_cases):
    from napari_medseg.events import IGNORE_LABEL

    viewer = make_napari_viewer()
    _open_pairs(viewer, hippo_cases, 1)
    labels_layer = viewer.layers["hippocampus_001 labels"]
    meta = dict(labels_layer.metadata)
    meta["medseg"] = {**meta["medseg"], "annotated_slices": [10, 12]}
    labels_layer.metadata = meta
    before = np.array(labels_layer.data, copy=True)
    widget = _widget(viewer, qtbot)
    assert "(2 slices annotated)" in widget.pair_list.item(0).text()
    dataset = widget._collect_cases()
    case = dataset.cases[0]
    assert case.case_id == "hippocampus_001"
    np.testing.assert_array_equal(case.labels[[10, 12]], before[[10, 12]])
    assert (case.labels[11] == IGNORE_LABEL).all() and (case.labels[0] == IGNORE_LABEL).all()
    assert dataset.label_names == {0: "background", 1: "Anterior", 2: "Posterior"}
    np.testing.assert_array_equal(labels_layer.data, before)  # the layer itself is untouched
    assert not np.shares_memory(case.labels, labels_layer.data)
    assert not np.shares_memory(case.image.array, viewer.layers["hippocampus_001"].data)


def test_bad_dataset_folder_is_one_clear_notification(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    widget = _widget(viewer, qtbot)
    empty = tmp_path / "not_a_dataset"
    empty.mkdir()
    widget.folder_radio.setChecked(True)
    widget.folder_edit.setText(str(empty))
    widget.config_overrides = dict(TINY)
    widget.start_button.click()
    _wait_done(qtbot, widget, timeout_ms=60000)
    assert widget.last_event.kind == "error"
    errors = error_messages()
    assert len(errors) == 1
    assert "dataset.json" in errors[0] and "Traceback" not in errors[0]
    assert widget.status_label.text() == errors[0]
    assert list_models() == []


def test_no_pairs_or_empty_labels_refuse_to_start(make_napari_viewer, qtbot, hippo_cases):
    viewer = make_napari_viewer()
    widget = _widget(viewer, qtbot)
    # nothing to train on: Start waits and says why
    assert not widget.start_button.isEnabled()
    assert "Tick an image + labels pair" in widget.start_button.toolTip()
    image, _ = hippo_cases(1)[0]
    from napari_medseg._reader import read_path

    data, kwargs, _kind = read_path(image)[0]
    viewer.add_image(data, **kwargs)
    viewer.add_labels(np.zeros(data.shape, dtype=np.uint8), name="hippocampus_001 labels")
    # the empty layer is listed, not ticked: Start still waits
    assert widget.pair_list.count() == 1 and "(empty)" in widget.pair_list.item(0).text()
    assert not widget.start_button.isEnabled()
    # ticked by hand, it is refused in one line when Start is clicked
    widget.pair_list.item(0).setCheckState(Qt.Checked)
    assert widget.start_button.isEnabled()
    widget.start_button.click()
    assert not widget.runner.running
    assert any("no annotation" in e for e in error_messages())
    # a dataset folder typed in enables Start; an empty field does not
    widget.folder_radio.setChecked(True)
    widget.folder_edit.setText("")
    assert not widget.start_button.isEnabled()
    assert "dataset folder" in widget.start_button.toolTip()
    widget.folder_edit.setText("/some/folder")
    assert widget.start_button.isEnabled()


def _case(image_path, label_path):
    from napari_medseg.dataset import Case
    from napari_medseg.io import read_volume

    image = read_volume(image_path)
    labels = read_volume(label_path).array
    return Case(case_id=Path(image_path).name.split(".")[0], image=image, labels=labels)


@pytest.mark.slow
def test_screenshots_train_then_infer(make_napari_viewer, qtbot, hippo_cases, tmp_path,
                                      monkeypatch, plugin_dock):
    """Train and Infer tabs in use. Set ``MEDSEG_SCREENSHOT_DIR=docs/screenshots`` to refresh
    the docs (then a real 3-minute training runs so the pictures show a meaningful model)."""
    from PIL import Image


    target = os.environ.get("MEDSEG_SCREENSHOT_DIR")
    out = Path(target) if target else tmp_path / "shots"
    out.mkdir(parents=True, exist_ok=True)
    docs_mode = bool(target)
    if docs_mode:  # show the default models folder, inside a throw-away home (ours only:
        # napari keeps its real HOME for its icon cache)
        home = tmp_path / "home"
        monkeypatch.setattr(Path, "home", classmethod(lambda cls: home))
        set_models_folder(home / ".napari-medseg" / "models")

    viewer = make_napari_viewer(show=True)
    _open_pairs(viewer, hippo_cases, 4 if docs_mode else 2)
    dock = plugin_dock(viewer, "MedSegWidget")
    viewer.window._qt_window.resize(1500, 950)
    train_tab, infer_tab = dock.page("Train"), dock.page("Infer")
    qtbot.waitUntil(lambda: "detecting" not in train_tab.device_label.text(), timeout=60000)
    # the last pair is left for inference
    last = train_tab.pair_list.item(train_tab.pair_list.count() - 1)
    last.setCheckState(0)  # Qt.Unchecked
    for ly in list(viewer.layers)[-2:]:
        ly.visible = False
    if docs_mode:
        train_tab.config_overrides = {"steps_per_epoch": 20, "seed": 0}
        train_tab.budget_spin.setValue(3.0)
    else:
        train_tab.config_overrides = dict(TINY)
    train_tab.name_edit.setText("hippo-v1")
    dock.show_tab("Train")

    def save(name: str) -> None:
        qtbot.wait(400)
        pixels = np.asarray(viewer.window.screenshot(canvas_only=False, flash=False))[..., :3]
        assert pixels.std() > 10
        Image.fromarray(pixels).quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(
            out / name, optimize=True)
        assert (out / name).stat().st_size < 300_000

    train_tab.start_button.click()
    if docs_mode:  # picture while training: a few epochs on the plot, Cancel enabled
        qtbot.waitUntil(lambda: train_tab.plot.summary()["epochs"] >= 7, timeout=400000)
        train_tab.plot.redraw()
        save("train.png")
    _wait_done(qtbot, train_tab, timeout_ms=400000)
    assert train_tab.last_event.kind == "finished", train_tab.last_event.message
    if not docs_mode:
        save("train.png")

    image = [ly for ly in viewer.layers if type(ly).__name__ == "Image"][-1]
    image.visible = True
    for ly in viewer.layers:
        if ly is not image:
            ly.visible = False
    viewer.layers.selection.active = image
    infer_tab.refresh_models()
    infer_tab.image_combo.set_layer(image)
    infer_tab.uncertainty_check.setChecked(True)
    dock.show_tab("Infer")
    infer_tab.run_button.click()
    _wait_done(qtbot, infer_tab)
    assert infer_tab.last_event.kind == "finished", infer_tab.last_event.message
    labels = infer_tab.last_layers[0]
    np.testing.assert_allclose(labels.scale, image.scale)
    viewer.dims.set_point(0, float(np.argmax((labels.data > 0).sum(axis=(1, 2)))))
    viewer.reset_view()
    save("infer.png")
    assert (out / "train.png").is_file() and (out / "infer.png").is_file()


def test_pairs_ticked_by_default_are_one_annotation_per_image(make_napari_viewer, qtbot,
                                                             hippo_cases):
    """Not the empty layer just made, nor the model's prediction of an annotated image."""
    from qtpy.QtCore import Qt

    viewer = make_napari_viewer()
    _open_pairs(viewer, hippo_cases, 1)
    truth = next(ly for ly in viewer.layers if type(ly).__name__ == "Labels")
    shape = truth.data.shape
    fresh = viewer.add_labels(np.zeros(shape, np.uint8), name="hippocampus_001 new")
    prediction = viewer.add_labels(np.asarray(truth.data).copy(), name="hippocampus_001 pred")
    widget = _widget(viewer, qtbot)
    data = widget.data_section
    ticked = [lab.name for _im, lab in data.checked_pairs()]
    assert ticked == [truth.name]
    texts = [data.pair_list.item(i).text() for i in range(data.pair_list.count())]
    assert any(t.startswith(fresh.name) and t.endswith("(empty)") for t in texts)
    # the user's own tick is kept across refreshes
    row = [lab.name for _im, lab in data._pairs].index(prediction.name)
    data.pair_list.item(row).setCheckState(Qt.Checked)
    data.refresh_pairs()
    assert [lab.name for _im, lab in data.checked_pairs()] == [truth.name, prediction.name]


def test_a_class_named_on_any_pair_names_it_in_the_model(make_napari_viewer, qtbot, hippo_cases):
    from napari_medseg.ui._layers import update_medseg_metadata

    viewer = make_napari_viewer()
    _open_pairs(viewer, hippo_cases, 2)
    first, second = viewer.layers["hippocampus_001 labels"], viewer.layers["hippocampus_003 labels"]
    update_medseg_metadata(first, classes={1: {"name": "label 1", "color": "#e6194b"},
                                           2: {"name": "Posterior", "color": "#3cb44b"}})
    update_medseg_metadata(second, classes={1: {"name": "Anterior hippocampus",
                                                "color": "#e6194b"},
                                            2: {"name": "Tail", "color": "#3cb44b"}})
    widget = _widget(viewer, qtbot)
    names = widget._collect_cases().label_names
    assert names[1] == "Anterior hippocampus"  # the placeholder of the first pair gives way
    assert names[2] == "Posterior"  # two given names: the first pair's


def test_a_picture_dataset_folder_trains_a_2d_network(make_napari_viewer, qtbot, tmp_path,
                                                      hippo_dir):
    import json

    viewer = make_napari_viewer()
    widget = _widget(viewer, qtbot)
    pictures = tmp_path / "ultrasound"
    pictures.mkdir()
    (pictures / "dataset.json").write_text(json.dumps(
        {"channel_names": {"0": "US"}, "labels": {"background": 0, "lesion": 1},
         "file_ending": ".png"}))
    widget.dims_combo.setCurrentIndex(widget.dims_combo.findData(3))
    widget.folder_radio.setChecked(True)
    widget.folder_edit.setText(str(pictures))
    # PNG pictures: a 2D network, not a choice (a 3D one would be refused at start)
    assert widget.dims_combo.currentData() == 2 and not widget.dims_combo.isEnabled()
    assert "ultrasound" in widget.dims_combo.toolTip()
    # a folder of NIfTI volumes leaves the choice to the user again
    widget.folder_edit.setText(str(hippo_dir))
    assert widget.dims_combo.isEnabled()
    widget.dims_combo.setCurrentIndex(widget.dims_combo.findData(3))
    assert widget.dims_combo.currentData() == 3
