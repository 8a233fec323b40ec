"""The Annotate dock's Interactive section: clicks and grow from seeds, driven like a user.

Clicks go through napari's own mouse-callback machinery on the "clicks" Points layer (its add
mode places the point, the section computes in a worker and writes one undo step).
Set ``MEDSEG_SCREENSHOT_DIR`` to keep the screenshots.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from ui_helpers import PLUGIN, error_messages

from napari_medseg.editing import EditPatch
from napari_medseg.ui.interactive_section import depth_along_ray

CENTRE = (16, 24, 24)
RADIUS = 8


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    from napari_medseg.ui._models import set_models_folder

    monkeypatch.setenv("NAPARI_MEDSEG_SETTINGS", str(tmp_path / "settings.ini"))
    set_models_folder(tmp_path / "models")



def _blob(shape=(32, 48, 48), centre=CENTRE, radius=RADIUS, seed=0):
    """Bright sphere on a dark background with noise; returns (image, sphere mask)."""
    grid = np.indices(shape)
    d2 = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True))
    mask = d2 <= radius**2
    rng = np.random.default_rng(seed)
    image = np.where(mask, 200.0, 40.0) + rng.normal(0, 8, shape)
    return image.astype(np.float32), mask


def _dice(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1)


def click(viewer, layer, world, shift=False, view_direction=None):
    """A left click at world position ``world`` through napari's mouse callbacks."""
    from napari.utils._test_utils import read_only_mouse_event
    from napari.utils.interactions import mouse_press_callbacks, mouse_release_callbacks

    displayed = list(viewer.dims.displayed)
    common = dict(position=tuple(float(w) for w in world), modifiers=["Shift"] if shift else [],
                  dims_displayed=displayed, view_direction=view_direction, button=1)
    mouse_press_callbacks(layer, read_only_mouse_event(type="mouse_press", **common))
    mouse_release_callbacks(layer, read_only_mouse_event(type="mouse_release", **common))


def test_prompt_buttons_wait_for_a_labels_layer(make_napari_viewer, plugin_dock):
    viewer = make_napari_viewer()
    viewer.add_image(_blob()[0], name="blob")
    dock = plugin_dock(viewer, "AnnotateWidget")
    section = dock.interactive
    buttons = (section.clicks_button, section.box_button, section.seeds_button,
               section.grow_button)
    assert not any(b.isEnabled() for b in buttons)
    dock.new_button.click()
    assert all(b.isEnabled() for b in buttons)


@pytest.fixture
def blob_dock(make_napari_viewer, plugin_dock):
    image, mask = _blob()
    viewer = make_napari_viewer()
    viewer.add_image(image, name="blob")
    dock = plugin_dock(viewer, "AnnotateWidget")
    dock.new_button.click()
    labels = viewer.layers[-1]
    viewer.dims.set_point(0, float(CENTRE[0]))
    return viewer, dock, labels, mask


def test_positive_click_adds_object_to_current_label_only_and_undoes(blob_dock, qtbot):
    viewer, dock, labels, mask = blob_dock
    other = np.zeros(mask.shape, bool)
    other[10:22, 20:28, 33:40] = True  # another class touching the sphere's crop
    other &= ~mask
    labels.data[other] = 2
    before = np.array(labels.data)
    section = dock.interactive
    assert "random walker" in section.model_label.text()
    section.clicks_button.click()
    points = section.clicks_layer
    assert points.mode == "add" and viewer.layers.selection.active.name == "clicks"
    click(viewer, points, CENTRE)
    section.wait(qtbot)
    assert not error_messages(), error_messages()
    data = np.asarray(labels.data)
    assert _dice(data == 1, mask) > 0.85
    np.testing.assert_array_equal(data[other], 2)  # the other class is untouched
    assert set(np.unique(data)) <= {0, 1, 2}
    assert "Ctrl+Z" in section.status.text()
    labels.undo()  # napari's Ctrl+Z
    np.testing.assert_array_equal(labels.data, before)
    labels.redo()
    np.testing.assert_array_equal(labels.data, data)
    # Ctrl+Z while the clicks layer is active (as it is while clicking) undoes the labels too
    from napari.utils.key_bindings import KeyBinding, KeyCode, KeyMod

    points.keymap[KeyBinding.from_int(KeyMod.CtrlCmd | KeyCode.KeyZ)](points)
    np.testing.assert_array_equal(labels.data, before)
    assert len(points.data) == 0  # and the undone click is forgotten


def test_clicks_keep_painting_elsewhere_and_refuse_points_off_the_image(blob_dock, qtbot):
    viewer, dock, labels, mask = blob_dock
    labels.data[CENTRE[0], 2:6, 2:6] = 1  # painted by hand, far from the sphere
    section = dock.interactive
    section.clicks_button.click()
    click(viewer, section.clicks_layer, CENTRE)
    section.wait(qtbot)
    data = np.asarray(labels.data)
    assert (data[CENTRE[0], 2:6, 2:6] == 1).all()  # the painting is kept
    assert _dice(data == 1, mask) > 0.8
    before = data.copy()
    click(viewer, section.clicks_layer, (CENTRE[0], -20.0, -20.0))  # off the image
    qtbot.waitUntil(lambda: section.worker is None, timeout=30000)
    np.testing.assert_array_equal(labels.data, before)
    assert "outside the image" in section.status.text()
    errors = error_messages()
    assert len(errors) == 1 and "outside the image" in errors[0] and "\n" not in errors[0]


def test_box_drawn_on_a_slice_takes_the_object_inside_it(blob_dock, qtbot):
    viewer, dock, labels, mask = blob_dock
    z = CENTRE[0]
    labels.data[z, 2:6, 2:6] = 2  # another class, outside the box
    before = np.array(labels.data)
    section = dock.interactive
    section.box_button.click()
    boxes = section.box_layer
    assert boxes.mode == "add_rectangle" and viewer.layers.selection.active.name == "box"
    lo, hi = CENTRE[1] - RADIUS - 4, CENTRE[1] + RADIUS + 4
    boxes.add_rectangles(np.array([[z, lo, lo], [z, lo, hi], [z, hi, hi], [z, hi, lo]], float))
    section.wait(qtbot)
    assert not error_messages(), error_messages()
    data = np.asarray(labels.data)
    assert _dice(data[z] == 1, mask[z]) > 0.9
    changed = np.argwhere(data != before)
    assert set(changed[:, 0]) == {z}  # the slice the box was drawn on, nothing else
    assert changed[:, 1:].min() >= lo and changed[:, 1:].max() <= hi
    assert "Box (training-free)" in section.status.text()
    labels.undo()
    np.testing.assert_array_equal(labels.data, before)


def test_negative_click_removes_false_region(blob_dock, qtbot):
    viewer, dock, labels, mask = blob_dock
    false = np.zeros(mask.shape, bool)
    false[14:19, 6:11, 6:11] = True  # labelled by mistake on dark background
    labels.data[mask | false] = 1
    labels.data[2:6, 2:6, 2:6] = 2
    section = dock.interactive
    section.clicks_button.click()
    click(viewer, section.clicks_layer, (16, 8, 8), shift=True)
    section.wait(qtbot)
    assert not error_messages(), error_messages()
    assert not section.clicks_layer.features["positive"].iloc[-1]
    data = np.asarray(labels.data)
    assert np.count_nonzero(data[false] == 1) <= 0.1 * false.sum()
    assert _dice(data == 1, mask) > 0.9
    assert np.all(data[2:6, 2:6, 2:6] == 2)


def test_superseded_click_does_not_overwrite_newer_result(blob_dock, qtbot):
    viewer, dock, labels, _mask = blob_dock
    section = dock.interactive
    calls = []

    def slow_fake_refine(model, card, volume, current, label, clicks, **kw):
        calls.append(len(clicks))
        box = (slice(0, 4), slice(0, 4), slice(0, 4)) if len(clicks) == 1 else \
            (slice(10, 14), slice(10, 14), slice(10, 14))
        if len(clicks) == 1:
            time.sleep(1.0)  # still computing when the second click arrives
        old = current[box].copy()
        return EditPatch(bbox=box, old=old, new=np.full_like(old, label))

    section.refine = slow_fake_refine
    section.clicks_button.click()
    click(viewer, section.clicks_layer, (16, 2, 2))
    assert section.worker is not None  # computing in the background: the GUI is free
    click(viewer, section.clicks_layer, (16, 12, 12))
    section.wait(qtbot)
    data = np.asarray(labels.data)
    assert calls == [1, 2]
    assert np.all(data[10:14, 10:14, 10:14] == 1)  # the newer result is there ...
    assert not np.any(data[0:4, 0:4, 0:4])  # ... and the older one was dropped
    assert section.applied_generation == section.generation
    labels.undo()
    assert not np.any(labels.data)


def test_click_in_3d_view_lands_on_the_object(blob_dock, qtbot):
    viewer, dock, labels, mask = blob_dock
    section = dock.interactive
    section.clicks_button.click()
    viewer.dims.ndisplay = 3
    click(viewer, section.clicks_layer, (-5, CENTRE[1], CENTRE[2]), view_direction=(1, 0, 0))
    section.wait(qtbot)
    assert not error_messages(), error_messages()
    point = np.asarray(section.clicks_layer.data[-1])
    assert mask[tuple(np.round(point).astype(int))]
    assert _dice(np.asarray(labels.data) == 1, mask) > 0.8


def test_depth_along_ray_rules():
    samples = np.stack([np.arange(6), np.zeros(6), np.zeros(6)], 1).astype(float)
    intensities = np.array([0, 1, 5, 2, 9, 1.0])
    labels = np.array([0, 1, 1, 0, 2, 0])
    np.testing.assert_array_equal(depth_along_ray(samples, intensities, labels, 1, False),
                                  samples[1])
    # brightest outside other classes (sample 4 is class 2)
    np.testing.assert_array_equal(depth_along_ray(samples, intensities, labels, 1, True),
                                  samples[2])


def _paint_seeds_3d(seeds, mask):
    """A few short strokes on three slices: class 1 -> seed value 2, background -> 1."""
    for z in (CENTRE[0] - 4, CENTRE[0], CENTRE[0] + 4):
        seeds[z, CENTRE[1], CENTRE[2] - 3:CENTRE[2] + 4] = 2
        seeds[z, 3, 5:40] = 1
        seeds[z, 44, 5:40] = 1
        seeds[z, 10:38, 4] = 1
    assert not np.any(mask[seeds == 1])


def test_grow_from_seeds_dice_and_undo(blob_dock, qtbot):
    viewer, dock, labels, mask = blob_dock
    labels.data[0:3, 0:3, 0:3] = 2  # another class inside the box is kept
    section = dock.interactive
    section.seeds_button.click()
    seeds = section.seeds_layer
    assert viewer.layers.selection.active.name.endswith("seeds")
    assert dock.labels_combo.layer() is not None
    assert dock.labels_combo.layer().name == labels.name  # the seeds are no target
    assert seeds.selected_label == 2 and seeds.mode == "paint"
    data = np.array(seeds.data)
    _paint_seeds_3d(data, mask)
    seeds.data = data
    section.grow_button.click()
    section.wait(qtbot)
    assert not error_messages(), error_messages()
    out = np.asarray(labels.data)
    assert _dice(out == 1, mask) > 0.8
    assert np.all(out[0:3, 0:3, 0:3] == 2)
    labels.undo()
    assert not np.any(labels.data == 1)


def test_auto_update_after_a_stroke(blob_dock, qtbot):
    viewer, dock, labels, mask = blob_dock
    section = dock.interactive
    section.seeds_button.click()
    seeds = section.seeds_layer
    data = np.array(seeds.data)
    _paint_seeds_3d(data, mask)
    seeds.data = data
    section.auto_check.setChecked(True)
    seeds.selected_label = 2
    seeds.brush_size = 2
    seeds.paint(CENTRE, 2)  # a stroke: napari emits its paint event
    qtbot.waitUntil(lambda: np.any(np.asarray(labels.data) == 1), timeout=20_000)
    section.wait(qtbot)
    assert _dice(np.asarray(labels.data) == 1, mask) > 0.8


def _photo(size=96):
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - 50) ** 2 + (xx - 44) ** 2 < 18**2
    rng = np.random.default_rng(1)
    photo = np.zeros((size, size, 3), np.float32)
    photo[...] = (40, 150, 60)  # green background
    photo[disc] = (200, 60, 40)  # red disc, same brightness band in places
    photo += rng.normal(0, 6, photo.shape)
    return np.clip(photo, 0, 255).astype(np.uint8), disc


def test_grow_and_click_on_rgb_picture(make_napari_viewer, plugin_dock, qtbot):
    photo, disc = _photo()
    viewer = make_napari_viewer()
    viewer.add_image(photo, rgb=True, name="photo")
    dock = plugin_dock(viewer, "AnnotateWidget")
    dock.new_button.click()
    labels = viewer.layers[-1]
    assert labels.data.shape == disc.shape
    section = dock.interactive
    section.seeds_button.click()
    seeds = section.seeds_layer
    data = np.array(seeds.data)
    data[50, 38:51] = 2
    data[5, 5:90] = 1
    data[90, 5:90] = 1
    data[10:85, 88] = 1
    seeds.data = data
    section.grow_button.click()
    section.wait(qtbot)
    assert not error_messages(), error_messages()
    assert _dice(np.asarray(labels.data) == 1, disc) > 0.8
    labels.undo()
    assert not np.any(labels.data)
    section.clicks_button.click()
    assert section.reach_spin.suffix().strip() in ("mm", "px")
    section.reach_spin.setValue(30.0)  # the disc is 36 px wide
    click(viewer, section.clicks_layer, (50, 44))
    section.wait(qtbot)
    assert not error_messages(), error_messages()
    assert _dice(np.asarray(labels.data) == 1, disc) > 0.8


def test_hippocampus_click_adds_voxels_of_the_structure(make_napari_viewer, plugin_dock,
                                                        qtbot, hippo_cases):
    import nibabel as nib

    image_path, label_path = hippo_cases(1)[0]
    viewer = make_napari_viewer()
    (image,) = viewer.open(str(image_path), plugin=PLUGIN)
    dock = plugin_dock(viewer, "AnnotateWidget")
    dock.new_button.click()
    labels = viewer.layers[-1]
    truth = np.transpose(np.asarray(nib.load(label_path).dataobj)).astype(int)
    if truth.shape != labels.data.shape:
        pytest.skip("the reader reorients this case; the ground truth is in file order")
    target = truth == 1
    from scipy import ndimage

    depth = ndimage.distance_transform_edt(target)
    voxel = np.unravel_index(int(np.argmax(depth)), target.shape)
    viewer.dims.set_point(0, float(image.data_to_world(voxel)[0]))
    section = dock.interactive
    section.clicks_button.click()
    click(viewer, section.clicks_layer, image.data_to_world(voxel))
    section.wait(qtbot)
    assert not error_messages(), error_messages()
    got = np.asarray(labels.data) == 1
    assert got[voxel] and got.sum() > 20
    assert np.count_nonzero(got & (truth > 0)) > 0.5 * got.sum()


def test_screenshots_of_the_section(make_napari_viewer, plugin_dock, qtbot, tmp_path):
    out = Path(os.environ.get("MEDSEG_SCREENSHOT_DIR", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    image, mask = _blob()
    viewer = make_napari_viewer(show=True)
    viewer.add_image(image, name="blob")
    dock = plugin_dock(viewer, "AnnotateWidget")
    dock.new_button.click()
    viewer.dims.set_point(0, float(CENTRE[0]))
    section = dock.interactive
    section.clicks_button.click()
    click(viewer, section.clicks_layer, CENTRE)
    section.wait(qtbot)
    click(viewer, section.clicks_layer, (16, 24, 36), shift=True)
    section.wait(qtbot)
    section.seeds_button.click()
    viewer.layers.selection.active = section.clicks_layer
    qtbot.wait(200)
    shot = section.grab()
    assert shot.save(str(out / "interactive_section.png"))
    assert dock.grab().save(str(out / "annotate_dock.png"))
    pixels = np.asarray(viewer.screenshot(str(out / "viewer_clicks.png"), canvas_only=False,
                                          flash=False))
    assert pixels.std() > 5  # not a blank window
    assert shot.width() > 200 and shot.height() > 100


def _guided_model(folder: Path) -> Path:
    """A tiny untrained 3D network whose card records click guidance (2 guidance channels)."""
    from napari_medseg.interactive.guidance import guidance_spec
    from napari_medseg.models import ModelCard, build_network, plan_network, plan_patch_size
    from napari_medseg.models.card import save_model

    _, strides = plan_patch_size((16, 16, 16))
    spec = plan_network(3, 3, 2, strides, base_channels=4, max_channels=8)
    card = ModelCard(task="Blob", classes=[{"value": 0, "name": "background", "color": [0, 0, 0]},
                                           {"value": 1, "name": "blob", "color": [255, 0, 0]}],
                     dims=3, in_channels=3, patch_size=[16, 16, 16], network=spec,
                     normalisation=[{"scheme": "zscore", "mean": 0.0, "std": 1.0}],
                     train_config={"guidance": guidance_spec()})
    return Path(save_model(build_network(spec), card, folder / "clicky"))


def test_click_guided_model_is_offered_and_used(blob_dock, qtbot, tmp_path):
    from napari_medseg.ui._models import models_folder

    viewer, dock, labels, _mask = blob_dock
    path = _guided_model(models_folder())
    section = dock.interactive
    section.refresh_models()
    index = section.model_combo.findData(str(path))
    assert index > 0
    section.model_combo.setCurrentIndex(index)
    assert "click-guided model 'clicky'" in section.model_label.text()
    seen = []
    from napari_medseg.interactive import refine_with_clicks

    def spy(model, card, *args, **kwargs):
        seen.append((model is not None, card is not None and card.task))
        return refine_with_clicks(model, card, *args, **kwargs)

    section.refine = spy
    section.clicks_button.click()
    click(viewer, section.clicks_layer, CENTRE)
    section.wait(qtbot, 60_000)
    assert not error_messages(), error_messages()
    assert seen == [(True, "Blob")]
    assert "(model)" in section.status.text()
    assert set(np.unique(labels.data)) <= {0, 1}
    with pytest.raises(ValueError, match="no click guidance"):
        from napari_medseg.models.card import read_card, write_card

        card = read_card(path)
        card.train_config = {}
        plain = tmp_path / "plain"
        import shutil

        shutil.copytree(path, plain)
        write_card(plain, card)
        section.use_model(plain)
