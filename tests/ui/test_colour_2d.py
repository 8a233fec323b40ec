"""2D colour pictures through every dock, as a user does it (issue 18).

A crop of a CHASE_DB1 fundus photograph (or, without the shared data, a synthetic colour
picture with dark vessel-like lines) is opened with napari-medseg's reader, annotated,
trained on (tiny 2D model, a few steps, in the dock's child process), segmented, edited,
evaluated and accepted into a project. Set ``MEDSEG_SCREENSHOT_DIR`` to keep screenshots.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from ui_helpers import PLUGIN, error_messages

CHASE = Path(os.environ.get("MEDSEG_SHARED_DATA",
                            Path(__file__).resolve().parents[3] / "shared" / "data")) / "CHASE_DB1"

#: A network and schedule small enough for a few seconds on 2 CPU cores (2D, 3 channels).
TINY_2D = dict(base_channels=4, max_channels=16, steps_per_epoch=2, batch_size=1,
               patch_size=(32, 32), augmentation="none", val_fraction=0.0, max_epochs=1,
               seed=0, device="cpu")


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    from napari_medseg.ui._models import set_models_folder

    monkeypatch.setenv("NAPARI_MEDSEG_SETTINGS", str(tmp_path / "settings.ini"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # inherited by the training child
    set_models_folder(tmp_path / "models")



def _synthetic_photo(size: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """Orange disc on black with dark red "vessels"; mask = vessels."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    photo = np.zeros((size, size, 3), np.float32)
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.45 * size) ** 2
    photo[disc] = (200, 110, 40)
    vessels = np.zeros((size, size), bool)
    for k in range(4):
        row = (0.25 + 0.17 * k) * size + 6 * np.sin(xx / (9 + 3 * k))
        vessels |= np.abs(yy - row) < 1.5 + (k % 2)
    vessels &= disc
    photo[vessels] = (90, 30, 20)
    photo += rng.normal(0, 6, photo.shape)
    return np.clip(photo, 0, 255).astype(np.uint8), vessels.astype(np.uint8)


@pytest.fixture(scope="module")
def photo_files(tmp_path_factory) -> dict[str, Path]:
    """Two colour PNG crops (``photo_a``, ``photo_b``) and their vessel masks (0/255 PNG)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("photos")
    crops = []
    image = CHASE / "images" / "Image_01L.jpg"
    mask = CHASE / "masks" / "Image_01L_1stHO.png"
    if image.is_file() and mask.is_file():
        rgb = np.asarray(Image.open(image).convert("RGB"))
        vessels = (np.asarray(Image.open(mask).convert("L")) > 0).astype(np.uint8)
        for y, x in ((380, 300), (420, 560)):  # two crops across the optic disc and vessels
            crops.append((rgb[y:y + 200, x:x + 200], vessels[y:y + 200, x:x + 200]))
    else:
        a, m = _synthetic_photo()
        crops = [(a, m), (np.ascontiguousarray(a[::-1]), np.ascontiguousarray(m[::-1]))]
    out = {}
    for name, (rgb, vessels) in zip(("photo_a", "photo_b"), crops, strict=True):
        Image.fromarray(np.ascontiguousarray(rgb)).save(root / f"{name}.png")
        Image.fromarray((vessels * 255).astype(np.uint8)).save(root / f"{name}_mask.png")
        out[name] = root / f"{name}.png"
        out[f"{name}_mask"] = root / f"{name}_mask.png"
    return out


def _open_photo(viewer, path: Path):
    """Open a colour picture through the plugin's reader (as drag-and-drop does)."""
    layers = viewer.open(str(path), plugin=PLUGIN)
    assert len(layers) == 1 and layers[0].rgb
    return viewer.layers[layers[0].name]


def _mask(path: Path) -> np.ndarray:
    from PIL import Image

    return (np.asarray(Image.open(path).convert("L")) > 0).astype(np.uint8)


def _shot(viewer, qtbot, name: str, widget=None) -> Path | None:
    """Screenshot of the whole window into ``MEDSEG_SCREENSHOT_DIR`` (when set), showing only
    ``widget``'s dock of the plugin's docks (they stack up as the walk goes on)."""
    target = os.environ.get("MEDSEG_SCREENSHOT_DIR")
    if not target:
        return None
    from qtpy.QtWidgets import QDockWidget

    folder = Path(target)
    folder.mkdir(parents=True, exist_ok=True)
    window = viewer.window._qt_window
    window.resize(1500, 950)
    if widget is not None:
        for dock in window.findChildren(QDockWidget):
            if "napari-medseg" in dock.windowTitle():
                dock.setVisible(dock.isAncestorOf(widget))
    viewer.reset_view()
    qtbot.wait(300)
    path = folder / f"{name}.png"
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    return path


def _wait(qtbot, widget, timeout_ms=150000):
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=timeout_ms)
    qtbot.wait(50)


def _paint(labels_layer, mask: np.ndarray, value: int = 1) -> None:
    data = labels_layer.data
    data[mask > 0] = value
    labels_layer.refresh()


# ---------------------------------------------------------------------------------- layers
def test_rgb_layer_is_a_colour_volume(make_napari_viewer, photo_files):
    from napari_medseg.ui._layers import (
        add_labels_for_image,
        image_layers,
        spacing_known,
        spatial_shape,
        volume_from_layer,
    )

    viewer = make_napari_viewer()
    photo = _open_photo(viewer, photo_files["photo_a"])
    volume = volume_from_layer(photo)
    assert volume.rgb and volume.ndim == 2 and volume.shape == photo.data.shape[:2]
    assert volume.n_channels == 3 and volume.channel_names == ["red", "green", "blue"]
    assert [c.array.shape for c in volume.channel_volumes()] == [volume.shape] * 3
    assert not spacing_known(photo)
    # a plain RGB layer (no plugin metadata): spacing from the layer's scale
    plain = viewer.add_image(np.zeros((30, 40, 3), np.uint8), rgb=True, scale=(0.5, 0.25),
                             translate=(10, 20), name="plain")
    v = volume_from_layer(plain)
    assert v.rgb and v.shape == (30, 40) and v.spacing == (0.5, 0.25)
    assert [ly.name for ly in image_layers(viewer)] == [photo.name, "plain"]
    labels = add_labels_for_image(viewer, plain)
    assert labels.data.shape == (30, 40) and spatial_shape(labels) == spatial_shape(plain)
    assert tuple(labels.scale) == (0.5, 0.25) and tuple(labels.translate) == (10, 20)


def test_load_dock_contrast_on_a_colour_photo(make_napari_viewer, plugin_dock, photo_files):
    viewer = make_napari_viewer()
    photo = _open_photo(viewer, photo_files["photo_a"])
    load = plugin_dock(viewer, "Load")
    assert load.image_combo.layer().name == photo.name
    load._on_auto_contrast()
    low, high = photo.contrast_limits
    assert 0 <= low < high <= 255 and not error_messages(), error_messages()


# ---------------------------------------------------------------------------------- annotate
def test_annotate_dock_on_a_colour_photo(make_napari_viewer, qtbot, plugin_dock, photo_files,
                                         tmp_path):
    viewer = make_napari_viewer(show=bool(os.environ.get("MEDSEG_SCREENSHOT_DIR")))
    photo = _open_photo(viewer, photo_files["photo_a"])
    widget = plugin_dock(viewer, "Annotate")
    assert widget.image_combo.layer().name == photo.name
    layer = widget._on_new_labels()
    assert layer.data.shape == photo.data.shape[:2] and layer.data.dtype == np.uint8
    assert tuple(layer.scale) == tuple(photo.scale)
    assert tuple(layer.translate) == tuple(photo.translate)
    # the picture has no pixel size: the brush is in pixels, not in invented millimetres
    assert widget.brush_mm.suffix().strip() == "px" and "pixels" in widget.brush_px.text()
    widget.class_table.item(0, 1).setText("vessel")
    assert layer.metadata["medseg"]["classes"][1]["name"] == "vessel"

    # a brush stroke (napari's paint on the labels' own grid)
    layer.paint((100, 100), 1, refresh=True)
    assert layer.data[100, 100] == 1
    # slice tools do not apply to a picture: disabled and saying why, not failing
    assert not widget.interp_button.isEnabled()
    assert "2D picture" in widget.interp_button.toolTip()
    assert not widget.mark_button.isEnabled()

    # intensity-constrained painting uses the brightness of the colours
    from napari_medseg.ui._layers import luminance

    darkest = float(luminance(photo.data[92:109, 52:69]).min())
    assert darkest > 1
    widget.low_spin.setValue(0)
    widget.high_spin.setValue(darkest - 1)  # every pixel under the brush is brighter
    widget.constrain_check.setChecked(True)
    assert "luminance" in widget.constrain_check.toolTip()
    before = np.array(layer.data, copy=True)
    layer.brush_size = 9
    layer.paint((100, 60), 1, refresh=True)
    qtbot.wait(50)  # the constraint runs on the next event-loop turn
    assert np.array_equal(layer.data, before), "bright pixels outside the window were painted"
    widget.constrain_check.setChecked(False)

    # pre-segmentation on colour: Otsu on brightness, region growing from a seed
    widget.method_combo.setCurrentIndex(widget.method_combo.findData("threshold"))
    assert widget.preseg_button.isEnabled() and "luminance" in widget.preseg_button.toolTip()
    widget.target_combo.setCurrentIndex(widget.target_combo.findData("new"))
    assert widget._on_presegment() is None
    otsu = viewer.layers[f"{photo.name} threshold"]
    assert otsu.data.shape == photo.data.shape[:2] and 0 < otsu.data.mean() < 1
    widget.method_combo.setCurrentIndex(widget.method_combo.findData("region_grow"))
    widget.set_seed((100, 100))
    widget.tolerance_spin.setValue(25)
    widget._on_presegment()
    grown = viewer.layers[f"{photo.name} region_grow"]
    assert grown.data[100, 100] == 1 and grown.data.shape == photo.data.shape[:2]
    # k-means runs in a worker and gives clusters of brightness
    widget.method_combo.setCurrentIndex(widget.method_combo.findData("kmeans"))
    widget.n_classes_spin.setValue(2)
    worker = widget._on_presegment()
    qtbot.waitUntil(lambda: f"{photo.name} kmeans" in viewer.layers, timeout=60000)
    km = viewer.layers[f"{photo.name} kmeans"]
    assert km.data.shape == photo.data.shape[:2] and set(np.unique(km.data)) <= {0, 1, 2}
    assert worker is not None
    # Lungs (CT) is for CT images: disabled on a photograph, with the reason
    widget.method_combo.setCurrentIndex(widget.method_combo.findData("lungs_ct"))
    assert not widget.preseg_button.isEnabled()
    assert "CT" in widget.preseg_button.toolTip()
    assert not error_messages(), error_messages()
    _shot(viewer, qtbot, "annotate_colour_photo", widget)
    # save the labels next to the picture: a NIfTI with the picture's grid
    widget.labels_combo.set_layer(layer)
    saved = widget.save_labels(tmp_path / "photo_a_labels.nii.gz")
    from napari_medseg.io import read_volume

    assert read_volume(saved).array.shape == photo.data.shape[:2]


def test_lungs_ct_entry_on_a_ct_volume(make_napari_viewer, qtbot, plugin_dock):
    from napari_medseg.io.volume import Volume
    from napari_medseg.ui._layers import add_volume_as_image
    from napari_medseg.ui.annotate_widget import _lungs_ct

    viewer = make_napari_viewer()
    # a small chest-like CT phantom: body (0 HU) in outside air, two lungs (-850 HU)
    z, y, x = np.mgrid[:24, :64, :64]
    ct = np.full((24, 64, 64), -1000, np.int16)
    ct[((y - 32) / 28) ** 2 + ((x - 32) / 30) ** 2 < 1] = 20
    for cx in (20, 44):
        ct[(((y - 32) / 16) ** 2 + ((x - cx) / 8) ** 2 < 1) & (z > 2) & (z < 21)] = -850
    image = add_volume_as_image(viewer, Volume(ct, (2.0, 1.0, 1.0), modality="CT", name="ct"))
    widget = plugin_dock(viewer, "Annotate")
    widget.image_combo.set_layer(image)
    widget.method_combo.setCurrentIndex(widget.method_combo.findData("lungs_ct"))
    if _lungs_ct() is None:
        assert not widget.preseg_button.isEnabled()
        pytest.skip("napari_medseg.editing.presegment.lungs_ct is not there yet")
    assert widget.preseg_button.isEnabled(), widget.preseg_button.toolTip()
    assert widget.airways_check.isVisibleTo(widget)
    widget.target_combo.setCurrentIndex(widget.target_combo.findData("new"))
    worker = widget._on_presegment()
    assert worker is not None  # always in a worker: the viewer stays usable
    qtbot.waitUntil(lambda: "ct lungs" in viewer.layers, timeout=60000)
    lungs = viewer.layers["ct lungs"]
    assert lungs.data.shape == ct.shape
    inside = lungs.data[ct == -850] > 0
    assert inside.mean() > 0.8 and (lungs.data[ct == 20] > 0).mean() < 0.05
    assert not error_messages(), error_messages()


# ---------------------------------------------------------------------------------- train
def test_extra_channels_train_and_infer(make_napari_viewer, plugin_dock, qtbot, tmp_path):
    from napari_medseg.training import TrainConfig
    from napari_medseg.training import train as train_model

    viewer = make_napari_viewer()
    rng = np.random.default_rng(1)
    t1 = viewer.add_image(rng.random((48, 40)).astype(np.float32), name="T1")
    t2 = viewer.add_image(rng.random((48, 40)).astype(np.float32), name="T2")
    viewer.add_image(rng.random((30, 30)).astype(np.float32), name="other grid")
    train = plugin_dock(viewer, "Train")
    qtbot.waitUntil(lambda: "detecting" not in train.device_label.text(), timeout=60000)
    labels = np.zeros((48, 40), np.uint8)
    labels[10:20, 10:20] = 1
    viewer.add_labels(labels, name="T1 labels")
    assert [(i.name, lb.name) for i, lb in train.checked_pairs()] == [("T1", "T1 labels")]
    # 2D pictures train a 2D network: the choice is made and explained
    assert train.dims_combo.currentData() == 2 and not train.dims_combo.isEnabled()
    offered = [train.channel_list.item(i).text() for i in range(train.channel_list.count())]
    assert offered == ["T2"]  # same grid only, not the image itself
    train.channel_list.set_checked(["T2"])
    dataset = train._collect_cases()
    case = dataset.cases[0]
    assert len(case.channels) == 2 and dataset.channel_names == ["T1", "T2"]
    assert np.array_equal(case.extra_channels[0].array, t2.data)
    assert np.array_equal(case.image.array, t1.data)

    # a T1 + T2 model segments T1 only with T2 beside it
    config = TrainConfig(**{**TINY_2D, "max_epochs": 1})
    for _ in train_model(config, dataset=dataset, out_dir=tmp_path / "models" / "t1t2"):
        pass
    infer = plugin_dock(viewer, "Infer")
    infer.model_combo.select_path(str(tmp_path / "models" / "t1t2"))
    infer.image_combo.set_layer(t1)
    assert "2 channels (T1, T2)" in infer.model_info.text()
    assert infer.channel_list.isVisibleTo(infer)
    assert [ly.name for ly in infer.channel_list.checked_layers()] == ["T2"]  # by its name
    infer.channel_list.set_checked([])
    infer.run_button.click()
    assert not infer.runner.running
    assert "Extra channels" in infer.status_label.text() and len(error_messages()) == 1
    infer.channel_list.set_checked(["T2"])
    infer.run_button.click()
    _wait(qtbot, infer)
    assert infer.last_event.kind == "finished", infer.last_event.message
    assert infer.last_layers[0].data.shape == (48, 40)


@pytest.mark.slow
def test_colour_photo_through_train_infer_edit_evaluate_project(
        make_napari_viewer, qtbot, plugin_dock, photo_files, tmp_path):
    from napari_medseg.models.card import read_card
    from napari_medseg.ui._controls import layer_key

    viewer = make_napari_viewer(show=bool(os.environ.get("MEDSEG_SCREENSHOT_DIR")))
    photo = _open_photo(viewer, photo_files["photo_a"])
    annotate = plugin_dock(viewer, "Annotate")
    labels = annotate._on_new_labels()
    annotate.class_table.item(0, 1).setText("vessel")
    truth = _mask(photo_files["photo_a_mask"])
    _paint(labels, truth)

    # ---- train: the pair is found on the photo's 2D grid; 2D network, 3 colour channels
    train = plugin_dock(viewer, "Train")
    qtbot.waitUntil(lambda: "detecting" not in train.device_label.text(), timeout=60000)
    assert [(i.name, lb.name) for i, lb in train.checked_pairs()] == [(photo.name, labels.name)]
    assert train.dims_combo.currentData() == 2 and not train.dims_combo.isEnabled()
    assert "2D picture" in train.dims_combo.toolTip()
    train.config_overrides = dict(TINY_2D)
    train.name_edit.setText("fundus tiny")
    train.start_button.click()
    _wait(qtbot, train)
    assert train.last_event.kind == "finished", train.last_event.message
    model_dir = tmp_path / "models" / "fundus-tiny"
    card = read_card(model_dir)
    assert card.dims == 2 and card.in_channels == 3
    assert card.channel_names == ["red", "green", "blue"]
    assert np.array_equal(labels.data > 0, truth > 0)  # the user's labels are untouched
    _shot(viewer, qtbot, "train_colour_photo", train)

    # ---- infer: a 2D colour model on the photo -> labels and maps on the photo's grid
    infer = plugin_dock(viewer, "Infer")
    infer.model_combo.select_path(str(model_dir))
    infer.image_combo.set_layer(photo)
    assert not infer.channel_list.isVisibleTo(infer)  # a colour model needs only the photo
    infer.probability_check.setChecked(True)
    infer.run_button.click()
    _wait(qtbot, infer)
    assert infer.last_event.kind == "finished", infer.last_event.message
    pred = infer.last_layers[0]
    assert pred.data.shape == photo.data.shape[:2]
    assert tuple(pred.scale) == tuple(photo.scale)
    assert pred.metadata["medseg"]["source"]["image_key"] == layer_key(photo)
    qtbot.waitUntil(lambda: len(infer.last_layers) == 3, timeout=10000)
    assert all(ly.data.shape == photo.data.shape[:2] for ly in infer.last_layers[1:])
    assert " px" in infer.status_label.text()  # areas in pixels: the photo has no pixel size
    _shot(viewer, qtbot, "infer_colour_photo", infer)

    # ---- edit: grow the annotation by 1 pixel (radius in px: spacing unknown)
    pred.visible = False
    edit = plugin_dock(viewer, "Edit")
    edit.labels_combo.set_layer(labels)
    assert edit.radius_spin.suffix().strip() == "px"
    assert edit.component_table.horizontalHeaderItem(2).text() == "Area (px)"
    assert not edit.op_buttons["interpolate_slices"].isEnabled()
    edit.set_label(1)
    edit.radius_spin.setValue(1.0)
    before = int(np.count_nonzero(labels.data))
    edit.run_operation("grow_label")
    grown = int(np.count_nonzero(labels.data))
    assert grown > before
    # a photo is pixels in 2D, not voxels in 3D
    assert edit.status.text() == (f"Grow, label 1 (2D): {grown - before} pixels changed. "
                                  "Ctrl+Z undoes it.")
    labels.undo()
    assert int(np.count_nonzero(labels.data)) == before
    shapes = edit._on_contours()
    assert shapes is not None and shapes.ndim == 2 and len(shapes.data) > 0
    rows = edit._on_components()
    assert rows and rows[0]["voxels"] > 0
    assert edit.component_table.item(0, 2).text() == str(rows[0]["voxels"])
    assert not error_messages(), error_messages()
    _shot(viewer, qtbot, "edit_colour_photo", edit)

    # ---- evaluate: metrics in pixels (no mm rows: the photo has no pixel size)
    evaluate = plugin_dock(viewer, "Evaluate")
    evaluate.pred_combo.set_layer(pred)
    evaluate.gt_combo.set_layer(labels)
    evaluate._on_compute()
    qtbot.waitUntil(lambda: bool(evaluate.results), timeout=30000)
    titles = [evaluate.table.verticalHeaderItem(r).text()
              for r in range(evaluate.table.rowCount())]
    assert "HD95 (px)" in titles and "Area truth (px)" in titles
    assert not any("mm" in t or "mL" in t for t in titles)
    assert float(evaluate.metric("vessel", "area_gt_px")) == float(np.count_nonzero(truth))
    assert 0.0 <= float(evaluate.metric("vessel", "dice")) <= 1.0
    _shot(viewer, qtbot, "evaluate_colour_photo", evaluate)

    # ---- project: accept the photo as a case; Next case ranks a pool of photos
    project_dock = plugin_dock(viewer, "Project")
    project_dock.image_combo.set_layer(photo)
    project_dock.labels_combo.set_layer(labels)
    project = project_dock.create_project(tmp_path / "fundus project")
    assert project.modality == "unknown"  # a photograph is not an MR image
    cid = project_dock.accept_current()
    if cid is None:  # the core's project store refused the 2D case
        pytest.fail(f"accepting a colour 2D case failed: {error_messages()}")
    assert cid in project.accepted_ids()
    stored = json.loads((project.root / "project.json").read_text())["cases"][cid]
    assert stored["shape"] == list(photo.data.shape[:2])
    project_dock.add_images([photo_files["photo_b"]])
    qtbot.waitUntil(lambda: len(project.unlabelled_ids()) == 1, timeout=30000)
    project_dock.next_case()
    qtbot.waitUntil(lambda: bool(getattr(project_dock, "last_ranking", None)), timeout=60000)
    top = project_dock.last_ranking[0][0]
    qtbot.waitUntil(lambda: top in viewer.layers, timeout=10000)
    assert viewer.layers[top].rgb  # the pool photo opens as a colour picture
    # photo_a's labels are not offered for photo_b, although both share a 200x200 pixel grid
    assert project_dock.image_combo.layer().name == top
    assert project_dock.labels_combo.layer() is None
    assert not error_messages(), error_messages()
    _shot(viewer, qtbot, "project_colour_photo", project_dock)


def test_colour_model_on_greyscale_image_is_one_clear_error(make_napari_viewer, qtbot,
                                                            plugin_dock, tmp_path):
    from napari_medseg.dataset import Case, Dataset
    from napari_medseg.io.volume import Volume
    from napari_medseg.training import TrainConfig, train

    photo, mask = _synthetic_photo(64)
    data = Dataset([Case("p", Volume(photo.astype(np.float32), (1.0, 1.0), rgb=True),
                         labels=mask)], {0: "background", 1: "vessel"},
                   channel_names=["red", "green", "blue"], name="Fundus")
    config = TrainConfig(**{**TINY_2D, "max_epochs": 1, "patch_size": (32, 32)})
    for _ in train(config, dataset=data, out_dir=tmp_path / "models" / "colour"):
        pass
    viewer = make_napari_viewer()
    grey = viewer.add_image(photo[..., 1].astype(np.float32), name="green only")
    infer = plugin_dock(viewer, "Infer")
    infer.model_combo.select_path(str(tmp_path / "models" / "colour"))
    infer.image_combo.set_layer(grey)
    infer.run_button.click()
    assert not infer.runner.running
    errors = error_messages()
    assert len(errors) == 1 and "colour pictures" in errors[0] and "greyscale" in errors[0]
    assert "\n" not in errors[0]
    assert "colour pictures" in infer.status_label.text()
    assert not any(ly.name.startswith("green only –") for ly in viewer.layers)


def test_infer_dock_takes_a_greyscale_picture_stored_as_rgb_for_a_greyscale_model():
    from napari_medseg.io.volume import Volume
    from napari_medseg.models import ModelCard, plan_network
    from napari_medseg.ui.infer_models import check_model_fits

    card = ModelCard(task="US", classes=[{"value": 0, "name": "background"},
                                         {"value": 1, "name": "lesion"}],
                     dims=2, in_channels=1, patch_size=[16, 16],
                     network=plan_network(2, 1, 2, [(2, 2)], base_channels=4),
                     normalisation=[{"scheme": "zscore"}], channel_names=["ultrasound"])
    grey = np.random.default_rng(0).integers(0, 255, (20, 30), dtype=np.uint8)
    assert check_model_fits(card, Volume(np.stack([grey] * 3, -1), (1.0, 1.0), rgb=True)) == []
    tinted = np.stack([grey] * 3, -1)
    tinted[3, 4, 0] ^= 1
    with pytest.raises(ValueError, match="is a colour picture"):
        check_model_fits(card, Volume(tinted, (1.0, 1.0), rgb=True))
