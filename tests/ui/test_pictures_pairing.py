"""Pictures of one size share a pixel grid, but a mask opened from a file belongs to the picture
its name says: no dock pairs one photo with another photo's mask (found on CHASE_DB1)."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
from ui_helpers import error_messages

from napari_medseg.ui._controls import belongs_to, stems_match


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_MEDSEG_SETTINGS", str(tmp_path / "settings.ini"))


def test_stems_match():
    assert stems_match("image_07l", "image_07l_1stho") and stems_match("case", "case_0000")
    assert stems_match("us_03", "us_03-mask") and stems_match("a", "a")
    assert not stems_match("us_1", "us_10_mask") and not stems_match("image_07l", "image_08l")


def _pictures(folder):
    rng = np.random.default_rng(0)
    paths = {}
    for name in ("photo_a", "photo_b"):
        rgb = (rng.random((40, 50, 3)) * 255).astype(np.uint8)
        mask = np.zeros((40, 50), np.uint8)
        mask[10:30, 10:30 if name == "photo_a" else 40] = 1
        iio.imwrite(folder / f"{name}.png", rgb)
        iio.imwrite(folder / f"{name}_mask.png", mask * 255)
        paths[name] = (folder / f"{name}.png", folder / f"{name}_mask.png")
    return paths


def test_docks_pair_each_photo_with_its_own_mask(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    paths = _pictures(tmp_path)
    for image, mask in paths.values():
        viewer.open(str(image), plugin="napari-medseg")
        viewer.open(str(mask), plugin="napari-medseg")
    a, a_mask, b, b_mask = (viewer.layers[n] for n in (
        "photo_a", "photo_a_mask", "photo_b", "photo_b_mask"))
    assert belongs_to(a_mask, a) and belongs_to(b_mask, b)
    assert not belongs_to(a_mask, b) and not belongs_to(b_mask, a)
    _dock, annotate = viewer.window.add_plugin_dock_widget("napari-medseg", "Annotate")
    _dock, project = viewer.window.add_plugin_dock_widget("napari-medseg", "Project")
    _dock, evaluate = viewer.window.add_plugin_dock_widget("napari-medseg", "Evaluate")
    for image, mask in ((a, a_mask), (b, b_mask)):
        viewer.layers.selection.active = image
        qtbot.wait(20)
        for combo in (annotate.labels_combo, project.labels_combo):
            offered = [combo.itemText(i) for i in range(combo.count())]
            assert offered == [mask.name], offered
    # a third photo of the same size without a mask: no dock offers another photo's mask
    rgb = (np.random.default_rng(1).random((40, 50, 3)) * 255).astype(np.uint8)
    iio.imwrite(tmp_path / "photo_c.png", rgb)
    viewer.open(str(tmp_path / "photo_c.png"), plugin="napari-medseg")
    qtbot.wait(20)
    assert project.image_combo.layer().name == "photo_c"
    assert project.labels_combo.layer() is None and not project.accept_button.isEnabled()
    # Evaluate: comparing the masks of two photos is said, not silent
    evaluate.pred_combo.set_layer(a_mask)
    evaluate.gt_combo.set_layer(b_mask)
    worker = evaluate._on_compute()
    qtbot.waitUntil(lambda: worker.is_running is False, timeout=10000)
    qtbot.wait(50)
    assert "two different images" in evaluate.status.text()
    from napari.utils.notifications import notification_manager

    warnings = [str(n.message) for n in notification_manager.records
                if str(n.severity).lower().endswith("warning")]
    assert any("two different images" in m for m in warnings)
    assert not error_messages()


def test_evaluate_a_picture_without_pixel_size_reports_pixels_only(make_napari_viewer, qtbot,
                                                                   tmp_path):
    viewer = make_napari_viewer()
    paths = _pictures(tmp_path)
    image, mask = paths["photo_a"]
    viewer.open(str(image), plugin="napari-medseg")
    viewer.open(str(mask), plugin="napari-medseg")
    truth = viewer.layers["photo_a_mask"]
    pred_data = np.array(truth.data, copy=True)
    pred_data[10:30, 10:15] = 0
    from napari_medseg.ui._layers import add_labels_for_image

    add_labels_for_image(viewer, viewer.layers["photo_a"], pred_data, name="photo_a pred")
    _dock, evaluate = viewer.window.add_plugin_dock_widget("napari-medseg", "Evaluate")
    evaluate.pred_combo.set_layer(viewer.layers["photo_a pred"])
    evaluate.gt_combo.set_layer(truth)
    worker = evaluate._on_compute()
    qtbot.waitUntil(lambda: worker.is_running is False and bool(evaluate.results),
                    timeout=10000)
    header = evaluate.export_csv(tmp_path / "m.csv").read_text().splitlines()[0]
    assert "area_gt_px" in header and "hd95_px" in header
    assert "mm2" not in header and "_ml" not in header, header
    row = next(iter(evaluate.results.values()))
    assert row["area_gt_px"] == int((truth.data == 1).sum())
    assert not error_messages()
