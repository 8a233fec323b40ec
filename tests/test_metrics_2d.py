"""Metrics on 2D picture datasets: 0/255 masks and a field of view (issue 18)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from napari_medseg.dataset.evaluation import evaluate_folders
from napari_medseg.metrics import evaluate_case


def test_roi_excludes_pixels_outside_the_field_of_view():
    gt = np.zeros((10, 10), np.uint8)
    gt[2:5, 2:5] = 1
    pred = gt.copy()
    pred[8:, 8:] = 1  # false positives, but outside the field of view
    roi = np.zeros((10, 10), bool)
    roi[:7, :7] = True
    assert evaluate_case(pred, gt, (1, 1), {1: "v"}, surface=False)["v"]["dice"] < 1
    inside = evaluate_case(pred, gt, (1, 1), {1: "v"}, surface=False, roi=roi)["v"]
    assert inside["dice"] == 1.0
    assert inside["specificity"] == 1.0  # true negatives counted inside the field of view only


def test_folders_of_png_masks_with_fov(tmp_path):
    root = tmp_path / "ds"
    for sub in ("labelsTr", "masksTr", "pred"):
        (root / sub).mkdir(parents=True)
    (root / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "vessel": 1},
                                                   "file_ending": ".png"}))
    gt = np.zeros((20, 20), np.uint8)
    gt[5:10, 5:10] = 255  # 0/255 mask
    Image.fromarray(gt).save(root / "labelsTr" / "a.png")
    fov = np.zeros((20, 20), np.uint8)
    fov[:15, :15] = 255
    Image.fromarray(fov).save(root / "masksTr" / "a.png")
    pred = (gt > 0).astype(np.uint8)
    pred[18, 18] = 1  # outside the field of view
    Image.fromarray(pred).save(root / "pred" / "a.png")
    result = evaluate_folders(root / "pred", root / "labelsTr", surface=False)
    assert result["cases"]["a"]["vessel"]["dice"] == 1.0
    result = evaluate_folders(root / "pred", root / "labelsTr", surface=False,
                              roi_dir=tmp_path / "nowhere")
    assert result["cases"]["a"]["vessel"]["dice"] < 1.0


def test_distances_of_pictures_without_pixel_size_are_in_pixels(tmp_path):
    root = tmp_path / "ds"
    for sub in ("labelsTr", "pred"):
        (root / sub).mkdir(parents=True)
    mask = np.zeros((20, 20), np.uint8)
    mask[5:10, 5:10] = 1
    Image.fromarray(mask).save(root / "labelsTr" / "a.png")
    Image.fromarray(mask).save(root / "pred" / "a.png")
    result = evaluate_folders(root / "pred", root / "labelsTr", surface=False)
    assert result["distance_unit"] == "px"


def test_evaluate_folders_reads_0_255_masks_as_one_class_and_refuses_unnamed_values(tmp_path):
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    mask = np.zeros((20, 30), np.uint8)
    mask[5:12, 4:20] = 1
    Image.fromarray(mask).save(pred_dir / "a.png")  # a prediction writes 0 / 1
    Image.fromarray(mask * 255).save(gt_dir / "a.png")  # the dataset's mask: 0 / 255
    result = evaluate_folders(pred_dir, gt_dir)
    assert list(result["cases"]["a"]) == ["1"]  # not a second class "255"
    assert result["cases"]["a"]["1"]["dice"] == 1.0
    # a label table that does not name a value found: refused, not silently dropped
    root = tmp_path / "ds"
    (root / "labelsTr").mkdir(parents=True)
    three = mask.copy()
    three[15:18, 2:6] = 3
    Image.fromarray(three).save(root / "labelsTr" / "a.png")
    (root / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "a": 1, "b": 2},
                                                   "channel_names": {"0": "x"}}))
    with pytest.raises(ValueError, match=r"holds .*3\}"):
        evaluate_folders(pred_dir, root / "labelsTr")
