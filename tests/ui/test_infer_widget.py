"""Infer dock: real buttons on a real (tiny) hippocampus model; the result sits on the image's
grid with the model's classes; wrong-dimension models and missing models are clear messages;
a folder run writes NIfTI files with the inputs' geometry."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import napari
import numpy as np
import pytest
from ui_helpers import error_messages

from napari_medseg.ui._models import model_events, set_models_folder
from napari_medseg.ui.infer_widget import InferWidget, card_classes

TINY = dict(base_channels=4, max_channels=16, steps_per_epoch=3, batch_size=1,
            augmentation="none", val_fraction=0.5, max_epochs=1, seed=0, device="cpu")


def _train_model(out_dir: Path, cases, dims: int) -> Path:
    from napari_medseg.dataset import Case, Dataset
    from napari_medseg.io import read_volume
    from napari_medseg.training import TrainConfig, train

    data = Dataset([Case(case_id=Path(i).name.split(".")[0], image=read_volume(i),
                         labels=read_volume(lab).array) for i, lab in cases],
                   {0: "background", 1: "Anterior", 2: "Posterior"}, name="Hippocampus")
    patch = (16, 32, 16) if dims == 3 else (32, 32)
    for _ in train(TrainConfig(**TINY, dims=dims, patch_size=patch),
                   dataset=data, out_dir=out_dir):
        pass
    return out_dir


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, hippo_dir):
    """A models folder with a tiny 3D model ("hippo3d") and a tiny 2D one ("hippo2d")."""
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    images = sorted((hippo_dir / "imagesTr").glob("*.nii.gz"))[:2]
    cases = [(p, hippo_dir / "labelsTr" / p.name) for p in images]
    root = tmp_path_factory.mktemp("models")
    _train_model(root / "hippo3d", cases, 3)
    _train_model(root / "hippo2d", cases, 2)
    return root


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch, models_dir):
    monkeypatch.setenv("NAPARI_MEDSEG_SETTINGS", str(tmp_path / "settings.ini"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    set_models_folder(models_dir)
    from napari.utils.notifications import notification_manager

    notification_manager.records.clear()  # records are global: count this test's only



def _widget(viewer) -> InferWidget:
    # docked as users do it (Plugins menu): napari hands the widget a viewer proxy
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-medseg", "Infer")
    return widget


def _select(widget: InferWidget, name: str) -> None:
    widget.refresh_models()
    for i in range(widget.model_combo.count()):
        if Path(str(widget.model_combo.itemData(i))).name == name:
            widget.model_combo.setCurrentIndex(i)
            return
    raise AssertionError(f"model {name} not listed")


def _wait_done(qtbot, widget, timeout_ms=120000):
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=timeout_ms)
    qtbot.wait(50)


def _add_image(viewer, path, scale=None, translate=None):
    from napari_medseg._reader import read_path

    data, kwargs, _ = read_path(path)[0]
    if scale is not None:  # a layer without file geometry: napari scale/translate only
        kwargs.update(scale=scale, translate=translate, metadata={})
    return viewer.add_image(data, **kwargs)


def test_models_folder_is_listed_with_card_details(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    widget = _widget(viewer)
    names = {Path(str(widget.model_combo.itemData(i))).name
             for i in range(widget.model_combo.count())}
    assert names == {"hippo3d", "hippo2d"}
    _select(widget, "hippo3d")
    info = widget.model_info.text()
    assert "Anterior" in info and "Posterior" in info and "3D" in info
    # the hippocampus files state their orientation: the 3D model was mirrored left-right only,
    # and the TTA option says so
    assert _card("hippo3d", widget).mirror_axes == [2]
    assert "left-right" in widget.tta_check.text() and widget.tta_check.isEnabled()
    # a model trained without mirroring: TTA would change nothing, so the option is off
    plain = tmp_path / "no-mirror"
    shutil.copytree(_card_dir("hippo3d"), plain)
    card = json.loads((plain / "model_card.json").read_text())
    card["mirror_axes"] = []
    (plain / "model_card.json").write_text(json.dumps(card))
    widget.model_combo.select_path(str(plain))
    assert "off" in widget.tta_check.text() and not widget.tta_check.isEnabled()
    # an unreadable card: the option goes back to the generic wording, not the last model's
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_card.json").write_text("{not json")
    widget.model_combo.select_path(str(broken))
    assert widget.tta_check.text() == "Test-time augmentation (mirroring)"
    assert widget.tta_check.isEnabled()


@pytest.mark.slow
def test_segment_image_adds_labels_on_the_image_grid(make_napari_viewer, qtbot, hippo_cases):
    image_path, _ = hippo_cases(4)[3]
    viewer = make_napari_viewer()
    image = _add_image(viewer, image_path, scale=(2.0, 1.0, 1.5), translate=(10.0, -5.0, 3.0))
    widget = _widget(viewer)
    _select(widget, "hippo3d")
    widget.uncertainty_check.setChecked(True)
    widget.probability_check.setChecked(True)
    # every text the status line shows (napari's progress bar may process queued events while
    # a step is being shown, so reading the label from an event slot can see a later text)
    statuses = []
    show = widget.status_label.setText
    widget.status_label.setText = lambda text: (statuses.append(text), show(text))
    widget.run_button.click()
    assert widget.runner.running and widget.cancel_button.isEnabled()
    _wait_done(qtbot, widget)

    assert widget.last_event.kind == "finished", widget.last_event.message
    assert any(t.endswith(" windows") or " windows · ~" in t for t in statuses), statuses
    # the maps follow the labels on later event-loop turns (each layer costs napari ~0.2 s)
    qtbot.waitUntil(lambda: len(widget.last_layers) == 3, timeout=5000)
    labels, probability, uncertainty = widget.last_layers
    assert isinstance(labels, napari.layers.Labels)
    assert "hippo3d" in labels.name
    assert labels.data.shape == image.data.shape
    np.testing.assert_allclose(labels.scale, image.scale)
    np.testing.assert_allclose(labels.translate, image.translate)
    assert set(np.unique(labels.data)) <= {0, 1, 2}
    medseg = labels.metadata["medseg"]
    assert [c["name"] for c in medseg["classes"].values()] == ["Anterior", "Posterior"]
    assert medseg["prediction"]["model"].endswith("hippo3d")
    assert medseg["source"]["image_layer"] == image.name
    # class colours come from the model card
    colour = labels.colormap.map(np.array([1]))[0][:3]
    expected = card_classes(_card("hippo3d", widget))[1]["color"]
    np.testing.assert_allclose(colour, [int(expected[i:i + 2], 16) / 255 for i in (1, 3, 5)],
                               atol=1e-2)
    for extra in (probability, uncertainty):
        assert isinstance(extra, napari.layers.Image)
        assert extra.data.shape == image.data.shape
        np.testing.assert_allclose(extra.scale, image.scale)
        assert 0.0 <= float(extra.data.min()) and float(extra.data.max()) <= 1.0 + 1e-5
    assert uncertainty.colormap.name == "inferno"
    assert not error_messages()


def test_progress_shows_windows_and_time_left(make_napari_viewer):
    from napari_medseg.events import Event

    widget = _widget(make_napari_viewer())
    widget._pending = {"kind": "image"}
    widget._on_event(Event("step", step=120, total=480, eta_s=95.0))
    assert widget.status_label.text() == "120/480 windows · ~2 min left"
    widget._on_event(Event("step", step=480, total=480, eta_s=0.0))
    assert widget.status_label.text() == "480/480 windows"
    widget._pending = {"kind": "folder"}
    widget._on_event(Event("step", step=1, total=3, eta_s=20.0, message="a.nii.gz -> a.nii.gz"))
    assert widget.status_label.text() == "Image 1/3: a.nii.gz -> a.nii.gz · ~20 s left"


def _card_dir(name):
    from napari_medseg.ui._models import models_folder

    return models_folder() / name


def _card(name, widget):
    from napari_medseg.models import read_card
    from napari_medseg.ui._models import models_folder

    return read_card(models_folder() / name)


def test_3d_model_on_a_2d_image_is_a_clear_message(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).random((40, 40)).astype(np.float32), name="slice")
    widget = _widget(viewer)
    _select(widget, "hippo3d")
    widget.run_button.click()
    assert not widget.runner.running
    errors = error_messages()
    assert len(errors) == 1 and "3D model" in errors[0] and "2D" in errors[0]
    assert [ly.name for ly in viewer.layers] == ["slice"]


def test_no_model_or_broken_model_is_a_clear_message(make_napari_viewer, qtbot, tmp_path,
                                                     hippo_cases):
    set_models_folder(tmp_path / "empty_models")
    viewer = make_napari_viewer()
    _add_image(viewer, hippo_cases(1)[0][0])
    widget = _widget(viewer)
    assert widget.model_combo.currentData() is None
    # no model: Segment waits for one, and its tooltip says so
    assert not widget.run_button.isEnabled() and not widget.folder_button.isEnabled()
    assert "choose a model first" in widget.run_button.toolTip()
    broken = tmp_path / "empty_models" / "broken"
    broken.mkdir(parents=True)
    (broken / "model_card.json").write_text("{not json")
    model_events.saved.emit(str(broken))  # what the Train dock emits after saving
    assert widget.model_combo.findData(str(broken)) >= 0
    widget.run_button.click()
    assert any("not valid JSON" in e for e in error_messages()), error_messages()
    assert not widget.runner.running


@pytest.mark.slow
def test_segment_folder_writes_nifti_with_input_geometry(make_napari_viewer, qtbot, tmp_path,
                                                         hippo_cases):
    import nibabel as nib

    src = tmp_path / "in"
    src.mkdir()
    for image, _ in hippo_cases(2):
        shutil.copy(image, src / image.name)
    out = tmp_path / "out"
    viewer = make_napari_viewer()
    widget = _widget(viewer)
    _select(widget, "hippo2d")
    widget.input_edit.setText(str(src))
    widget.output_edit.setText(str(out))
    widget.folder_button.click()
    _wait_done(qtbot, widget)
    assert widget.last_event.kind == "finished", widget.last_event.message
    written = sorted(Path(p).name for p in widget.last_written)
    assert written == sorted(p.name for p in src.iterdir())
    for name in written:
        a, b = nib.load(src / name), nib.load(out / name)
        assert a.shape == b.shape
        np.testing.assert_allclose(a.affine, b.affine)
    assert "Wrote 2 label file(s)" in widget.status_label.text()
    assert len(viewer.layers) == 0


def test_folder_output_must_differ_from_input(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    widget = _widget(viewer)
    _select(widget, "hippo2d")
    widget.input_edit.setText(str(tmp_path))
    widget.output_edit.setText(str(tmp_path))
    widget.folder_button.click()
    assert not widget.runner.running
    assert any("must differ" in e for e in error_messages())


@pytest.mark.slow
def test_weights_that_do_not_load_are_one_clear_notification(make_napari_viewer, qtbot,
                                                              tmp_path, models_dir,
                                                              hippo_cases):
    bad = tmp_path / "models" / "bad-weights"
    shutil.copytree(models_dir / "hippo3d", bad)
    (bad / "model.pt").write_bytes(b"this is not a torch file")
    set_models_folder(tmp_path / "models")
    viewer = make_napari_viewer()
    _add_image(viewer, hippo_cases(1)[0][0])
    widget = _widget(viewer)
    _select(widget, "bad-weights")
    widget.run_button.click()
    _wait_done(qtbot, widget)
    assert widget.last_event.kind == "error"
    errors = error_messages()
    assert len(errors) == 1 and "does not match its model card" in errors[0]  # the checksum
    assert "Traceback" not in errors[0]
    assert len(viewer.layers) == 1


def test_export_button_writes_a_torchscript_file(make_napari_viewer, qtbot, tmp_path,
                                                models_dir):
    set_models_folder(models_dir)
    viewer = make_napari_viewer()
    widget = _widget(viewer)
    _select(widget, "hippo3d")
    out = tmp_path / "exported.pt"
    worker = widget.export_model_to(out, "torchscript")
    qtbot.waitUntil(lambda: worker.is_running is False and out.is_file(), timeout=120_000)
    # the worker's result reaches the status line on a later turn of the event loop
    qtbot.waitUntil(lambda: "Exported" in widget.status_label.text(), timeout=10_000)
    assert out.with_name("exported.model_card.json").is_file()
