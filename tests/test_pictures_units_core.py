"""Units on 2D pictures in the core: click reach, metrics and component centres.

A picture whose file gives no pixel size has spacing 1 as a placeholder: lengths are pixels
there, and nothing is reported in mm, mm² or mL.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from napari_medseg.dataset.evaluation import evaluate_folders
from napari_medseg.editing import component_table
from napari_medseg.interactive import refine_with_clicks
from napari_medseg.interactive.refine import DEFAULT_CROP_MARGIN_MM, default_crop_margin
from napari_medseg.io.volume import Volume
from napari_medseg.metrics import evaluate_case, write_csv


def lesion_picture(shape=(300, 420), centre=(150, 210), radii=(52, 58), seed=0):
    """A dark ultrasound-like lesion (about 104 x 116 px) on a brighter speckled background."""
    yy, xx = np.indices(shape)
    mask = ((yy - centre[0]) / radii[0]) ** 2 + ((xx - centre[1]) / radii[1]) ** 2 <= 1
    rng = np.random.default_rng(seed)
    image = np.where(mask, 40.0, 150.0) + rng.normal(0, 10, shape)
    return np.clip(image, 0, 255).astype(np.uint8), mask


def dice(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1)


# ----------------------------------------------------------------------------- click reach
@pytest.mark.parametrize(("shape", "known", "expected"), [
    ((300, 420), True, DEFAULT_CROP_MARGIN_MM),
    ((300, 420), False, 84.0),
    ((20, 512, 256), False, 102.0),
    ((4, 4), False, 2.0),
])
def test_default_reach_is_mm_or_a_share_of_the_picture(shape, known, expected):
    assert default_crop_margin(shape, known) == expected


def test_one_click_on_a_picture_without_pixel_size_reaches_the_whole_lesion():
    image, mask = lesion_picture()
    volume = Volume(image, (1.0, 1.0), np.eye(4), metadata={"spacing_known": False})
    labels = np.zeros(image.shape, np.uint8)
    patch = refine_with_clicks(None, None, volume, labels, 1, [((150.0, 210.0), True)])
    out = labels.copy()
    patch.apply(out)
    assert dice(out == 1, mask) > 0.9  # 15 "mm" read as 15 px filled a 31-px square


# ----------------------------------------------------------------------------- metrics
def _pair():
    gt = np.zeros((30, 40), np.uint8)
    gt[5:15, 5:25] = 1
    pred = gt.copy()
    pred[5:15, 25:30] = 1
    return pred, gt


def test_picture_metrics_without_pixel_size_are_in_pixels_only(tmp_path):
    pred, gt = _pair()
    row = evaluate_case(pred, gt, (1.0, 1.0), {1: "lesion"}, spacing_known=False)["lesion"]
    assert row["area_gt_px"] == 200 and row["area_pred_px"] == 250
    assert row["hd95_px"] == pytest.approx(5.0)
    for key in ("area_gt_mm2", "area_pred_mm2", "volume_gt_ml", "volume_pred_ml", "hd95",
                "assd"):
        assert key not in row
    out = write_csv({"case": {"lesion": row}}, tmp_path / "m.csv")
    header = next(csv.reader(open(out)))
    assert "area_gt_px" in header and "hd95_px" in header
    assert not [c for c in header if c.endswith(("_ml", "_mm2")) or c in ("hd95", "assd")]


def test_picture_metrics_with_pixel_size_are_in_mm2_not_ml(tmp_path):
    pred, gt = _pair()
    row = evaluate_case(pred, gt, (0.1, 0.2), {1: "lesion"})["lesion"]
    assert row["area_gt_px"] == 200
    assert row["area_gt_mm2"] == pytest.approx(200 * 0.02)
    assert row["hd95"] == pytest.approx(5 * 0.2)  # five columns of 0.2 mm pixels
    assert "volume_gt_ml" not in row and "volume_pred_ml" not in row
    header = next(csv.reader(open(write_csv({"c": {"lesion": row}}, tmp_path / "m.csv"))))
    assert "area_gt_mm2" in header and not [c for c in header if c.endswith("_ml")]


def test_volume_metrics_keep_ml():
    gt = np.zeros((4, 10, 10), np.uint8)
    gt[1:3, 2:6, 2:6] = 1
    row = evaluate_case(gt, gt, (2.0, 1.0, 1.0), surface=False)["1"]
    assert row["volume_gt_ml"] == pytest.approx(32 * 2 / 1000)
    assert "area_gt_px" not in row


def test_folder_of_pictures_without_pixel_size_writes_pixel_columns(tmp_path):
    pred, gt = _pair()
    for sub, array in (("pred", pred), ("gt", gt)):
        (tmp_path / sub).mkdir()
        Image.fromarray(array).save(tmp_path / sub / "a.png")
    result = evaluate_folders(tmp_path / "pred", tmp_path / "gt", csv_path=tmp_path / "m.csv")
    assert result["distance_unit"] == "px"
    assert result["summary"]["1"]["hd95_mean"] == pytest.approx(5.0)  # in pixels, as said
    rows = list(csv.DictReader(open(tmp_path / "m.csv")))
    assert rows[0]["area_gt_px"] == "200"
    assert not [c for c in rows[0] if c.endswith(("_ml", "_mm2")) or c in ("hd95", "assd")]


# ----------------------------------------------------------------------------- components
def test_component_centres_of_a_picture_are_x_y():
    labels = np.zeros((30, 40), np.uint8)
    labels[10:13, 20:25] = 1  # centre row 11, column 22
    row = component_table(labels, 1, (0.5, 0.25))[0]
    assert row["centroid_xy_px"] == pytest.approx((22.0, 11.0))
    assert row["centroid_xy_mm"] == pytest.approx((22 * 0.25, 11 * 0.5))
    volume_row = component_table(labels[None], 1, (1.0, 1.0, 1.0))[0]
    assert "centroid_xy_px" not in volume_row
