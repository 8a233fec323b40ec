"""Units in the docks on 2D pictures, with and without a pixel size in the file.

A PNG without a physical density has spacing 1 as a placeholder: the docks speak pixels
there (click reach, brush, component centres) and save its labels as a picture; a PNG with
a density (254 dpi = 0.1 mm pixels) speaks mm.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from ui_helpers import PLUGIN, error_messages

SHAPE = (300, 420)
CENTRE = (150, 210)


@pytest.fixture(autouse=True)
def _no_models(tmp_path):
    from napari_medseg.ui._models import set_models_folder

    set_models_folder(tmp_path / "models")  # clicks use the training-free method


def lesion_png(path, dpi=None, seed=0):
    """An ultrasound-like picture: a dark 104 x 116 px lesion on speckle; returns the mask."""
    yy, xx = np.indices(SHAPE)
    mask = ((yy - CENTRE[0]) / 52) ** 2 + ((xx - CENTRE[1]) / 58) ** 2 <= 1
    rng = np.random.default_rng(seed)
    image = np.clip(np.where(mask, 40.0, 150.0) + rng.normal(0, 10, SHAPE), 0, 255)
    kwargs = {} if dpi is None else {"dpi": (dpi, dpi)}
    Image.fromarray(image.astype(np.uint8)).save(path, **kwargs)
    return mask


def open_picture(viewer, path):
    layers = viewer.open(str(path), plugin=PLUGIN)
    return layers[0]


def annotate(viewer, plugin_dock, path):
    image = open_picture(viewer, path)
    dock = plugin_dock(viewer, "Annotate")
    dock.image_combo.set_layer(image)
    dock.new_button.click()
    return dock, image, viewer.layers[-1]


def dice(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1)


# ----------------------------------------------------------------------------- A: click reach
@pytest.mark.parametrize(("dpi", "unit", "reach"), [(None, "px", 84.0), (254, "mm", 15.0)])
def test_one_click_reaches_the_lesion_with_the_default_reach(make_napari_viewer, plugin_dock,
                                                             qtbot, tmp_path, dpi, unit,
                                                             reach):
    viewer = make_napari_viewer()
    mask = lesion_png(tmp_path / "us.png", dpi)
    dock, _image, labels = annotate(viewer, plugin_dock, tmp_path / "us.png")
    section = dock.interactive
    section.clicks_button.click()
    assert section.reach_spin.suffix().strip() == unit
    assert section.reach_spin.value() == pytest.approx(reach)
    assert unit in section.reach_spin.toolTip() or "pixels" in section.reach_spin.toolTip()
    viewer.layers["clicks"].add(np.array(CENTRE, float))
    section.wait(qtbot, 60_000)
    assert dice(np.asarray(labels.data) == 1, mask) > 0.9, section.status.text()
    assert not error_messages(), error_messages()


def test_reach_set_by_the_user_is_kept_for_a_picture_in_the_same_unit(make_napari_viewer,
                                                                      plugin_dock, tmp_path):
    viewer = make_napari_viewer()
    lesion_png(tmp_path / "a.png")
    lesion_png(tmp_path / "b.png", dpi=254)
    dock, _image, _labels = annotate(viewer, plugin_dock, tmp_path / "a.png")
    section = dock.interactive
    section.clicks_button.click()
    section.reach_spin.setValue(80.0)
    section.clicks_button.click()
    assert section.reach_spin.value() == pytest.approx(80.0)
    # a picture in mm: 80 px is not 80 mm
    image_b = open_picture(viewer, tmp_path / "b.png")
    dock.image_combo.set_layer(image_b)
    dock.new_button.click()
    section.clicks_button.click()
    assert section.reach_spin.suffix().strip() == "mm"
    assert section.reach_spin.value() == pytest.approx(15.0)


# ----------------------------------------------------------------------------- B: brush
def test_napari_brush_slider_on_a_picture_says_pixels(make_napari_viewer, plugin_dock,
                                                      tmp_path):
    viewer = make_napari_viewer()
    lesion_png(tmp_path / "us.png")
    dock, _image, labels = annotate(viewer, plugin_dock, tmp_path / "us.png")
    labels.brush_size = 12  # napari's own brush slider
    assert dock.brush_mm.suffix().strip() == "px"
    assert dock.brush_mm.value() == pytest.approx(12.0)
    assert dock.brush_px.text() == "= 12 pixels"


def test_napari_brush_slider_on_a_picture_in_mm(make_napari_viewer, plugin_dock, tmp_path):
    viewer = make_napari_viewer()
    lesion_png(tmp_path / "us.png", dpi=254)
    dock, _image, labels = annotate(viewer, plugin_dock, tmp_path / "us.png")
    labels.brush_size = 12
    assert dock.brush_mm.suffix().strip() == "mm"
    assert dock.brush_mm.value() == pytest.approx(1.2)
    assert dock.brush_px.text() == "= 12 pixels"


# ----------------------------------------------------------------------------- D: components
@pytest.mark.parametrize(("dpi", "title", "centre"), [
    (None, "Centre (x, y px)", "22.0, 11.0"),
    (254, "Centre (x, y mm)", "2.2, 1.1"),
])
def test_component_centres_on_a_picture(make_napari_viewer, plugin_dock, tmp_path, dpi, title,
                                        centre):
    viewer = make_napari_viewer()
    lesion_png(tmp_path / "us.png", dpi)
    _dock, _image, labels = annotate(viewer, plugin_dock, tmp_path / "us.png")
    data = np.zeros(SHAPE, np.uint8)
    data[10:13, 20:25] = 1  # centre: column 22, row 11
    labels.data = data
    edit = plugin_dock(viewer, "Edit")
    edit.labels_combo.set_layer(labels)
    edit.components_button.click()
    table = edit.component_table
    assert table.horizontalHeaderItem(3).text() == title
    assert table.item(0, 3).text() == centre
    assert not error_messages(), error_messages()


# ----------------------------------------------------------------------------- E: save
@pytest.mark.parametrize(("suffix", "top", "dpi"), [(".jpg", 2, None), (".png", 300, 254)])
def test_save_next_to_a_picture_writes_a_png_that_reopens_the_same(make_napari_viewer,
                                                                   plugin_dock, tmp_path,
                                                                   suffix, top, dpi):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 255, (*SHAPE, 3), dtype=np.uint8)
    kwargs = {} if dpi is None else {"dpi": (dpi, dpi)}
    Image.fromarray(photo).save(tmp_path / f"photo{suffix}", **kwargs)
    dock, image, labels = annotate(viewer, plugin_dock, tmp_path / f"photo{suffix}")
    data = np.zeros(SHAPE, np.uint16 if top > 255 else np.uint8)
    data[100:150, 200:300] = 1
    data[200:260, 20:40] = top
    labels.data = data
    assert dock.default_save_path() == tmp_path / "photo_labels.png"
    dock.save_button.click()
    out = tmp_path / "photo_labels.png"
    assert out.is_file() and not list(tmp_path.glob("*.nii.gz")), error_messages()
    with Image.open(out) as saved:
        assert saved.mode == ("L" if top <= 255 else "I;16")
    reopened = viewer.open(str(out), plugin=PLUGIN)[0]
    assert type(reopened).__name__ == "Labels"
    np.testing.assert_array_equal(np.asarray(reopened.data), data)
    np.testing.assert_allclose(reopened.scale, image.scale)
    np.testing.assert_allclose(reopened.translate, image.translate)
    assert not error_messages(), error_messages()
