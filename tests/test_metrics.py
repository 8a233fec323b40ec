"""Metrics: overlap scores, spacing-aware surface distances, empty-mask rules, folders."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from napari_medseg import metrics as M
from napari_medseg.dataset.evaluation import evaluate_folders
from napari_medseg.io import Volume, write_nifti


def _cube(shape, lo, hi):
    m = np.zeros(shape, bool)
    m[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = True
    return m


@pytest.mark.parametrize(
    "pred, gt, expected",
    [
        # 8 voxels vs 8 voxels, 4 shared: dice 2*4/16, jaccard 4/12
        (_cube((4, 4, 4), (0, 0, 0), (2, 2, 2)), _cube((4, 4, 4), (1, 0, 0), (3, 2, 2)),
         {"dice": 0.5, "jaccard": 1 / 3, "sensitivity": 0.5, "precision": 0.5,
          "specificity": 52 / 56}),
        # both empty: everything perfect
        (np.zeros((3, 3, 3), bool), np.zeros((3, 3, 3), bool),
         {"dice": 1.0, "jaccard": 1.0, "sensitivity": 1.0, "precision": 1.0, "specificity": 1.0}),
        # prediction empty, truth not
        (np.zeros((3, 3, 3), bool), _cube((3, 3, 3), (0, 0, 0), (1, 1, 1)),
         {"dice": 0.0, "jaccard": 0.0, "sensitivity": 0.0, "precision": 0.0, "specificity": 1.0}),
        # truth empty, prediction not
        (_cube((3, 3, 3), (0, 0, 0), (1, 1, 1)), np.zeros((3, 3, 3), bool),
         {"dice": 0.0, "jaccard": 0.0, "sensitivity": 0.0, "precision": 0.0,
          "specificity": 26 / 27}),
    ],
)
def test_overlap_scores_table(pred, gt, expected):
    for name, value in expected.items():
        assert getattr(M, name)(pred, gt) == pytest.approx(value), name


def test_surface_distances_use_spacing():
    gt = _cube((20, 10, 10), (5, 2, 2), (10, 8, 8))
    pred = _cube((20, 10, 10), (7, 2, 2), (12, 8, 8))  # shifted 2 voxels along axis 0
    hd_iso = M.hausdorff95(pred, gt, (1.0, 1.0, 1.0))
    hd_aniso = M.hausdorff95(pred, gt, (2.5, 1.0, 1.0))
    assert hd_iso == pytest.approx(2.0)
    assert hd_aniso == pytest.approx(5.0)
    assert 0 < M.average_surface_distance(pred, gt, (2.5, 1.0, 1.0)) <= 5.0
    assert M.hausdorff95(gt, gt, (1, 1, 1)) == 0.0


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_surface_distance_matches_monai():
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    rng = np.random.default_rng(0)
    z, y, x = np.mgrid[:24, :24, :24]
    gt = (z - 12) ** 2 + (y - 11) ** 2 + (x - 12) ** 2 < 36
    pred = (z - 13) ** 2 / 1.3 + (y - 12) ** 2 + (x - 11) ** 2 < 40
    pred ^= rng.random(pred.shape) < 0.002
    spacing = (1.5, 1.0, 0.8)
    import torch

    p = torch.from_numpy(pred[None, None].astype(np.float32))
    g = torch.from_numpy(gt[None, None].astype(np.float32))
    hd_ref = float(compute_hausdorff_distance(p, g, percentile=95, spacing=spacing))
    asd_ref = float(compute_average_surface_distance(p, g, symmetric=True, spacing=spacing))
    assert M.hausdorff95(pred, gt, spacing) == pytest.approx(hd_ref, rel=0.05, abs=0.2)
    assert M.average_surface_distance(pred, gt, spacing) == pytest.approx(asd_ref, rel=0.05, abs=0.1)


def test_empty_surface_rules_are_documented_values():
    empty = np.zeros((5, 5, 5), bool)
    full = _cube((5, 5, 5), (1, 1, 1), (3, 3, 3))
    assert M.hausdorff95(empty, empty, (1, 1, 1)) == 0.0
    assert M.average_surface_distance(empty, empty, (1, 1, 1)) == 0.0
    assert math.isinf(M.hausdorff95(empty, full, (1, 1, 1)))
    assert math.isinf(M.average_surface_distance(full, empty, (1, 1, 1)))


def test_volume_ml_and_shape_errors():
    assert M.volume_ml(np.ones((10, 10, 10), bool), (1.0, 2.0, 0.5)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shape"):
        M.dice(np.zeros((3, 3)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="spacing"):
        M.hausdorff95(np.ones((3, 3, 3)), np.ones((3, 3, 3)), (1.0, 1.0))


def test_evaluate_case_names_and_no_nan():
    gt = np.zeros((8, 8, 8), np.uint8)
    gt[1:4, 1:4, 1:4] = 1
    pred = gt.copy()
    pred[5:7, 5:7, 5:7] = 2  # class 2 only predicted
    out = M.evaluate_case(pred, gt, (1, 1, 1), {0: "background", 1: "liver", 2: "tumour", 3: "cyst"})
    assert set(out) == {"liver", "tumour", "cyst"}
    assert out["liver"]["dice"] == 1.0 and out["liver"]["hd95"] == 0.0
    assert out["tumour"]["dice"] == 0.0 and math.isinf(out["tumour"]["hd95"])
    assert out["cyst"]["dice"] == 1.0 and out["cyst"]["assd"] == 0.0
    for row in out.values():
        assert not any(isinstance(v, float) and math.isnan(v) for v in row.values())
    auto = M.evaluate_case(pred, gt, (1, 1, 1))
    assert set(auto) == {"1", "2"}


def test_evaluate_folders_and_csv(tmp_path):
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    rng = np.random.default_rng(1)
    for i in range(2):
        gt = np.zeros((6, 7, 8), np.uint8)
        gt[1:4, 2:5, 2:6] = 1
        gt[4:6, 2:5, 2:6] = 2
        pred = gt.copy()
        pred[rng.random(gt.shape) < 0.05] = 0
        affine = np.diag([2.0, 1.0, 1.0, 1.0])
        write_nifti(Volume(gt, (2.0, 1.0, 1.0), affine), gt_dir / f"c{i}.nii.gz", labels=True)
        write_nifti(Volume(pred, (2.0, 1.0, 1.0), affine), pred_dir / f"c{i}.nii.gz", labels=True)
    result = evaluate_folders(pred_dir, gt_dir, labels={1: "a", 2: "b"}, csv_path=tmp_path / "m.csv")
    assert set(result["cases"]) == {"c0", "c1"}
    assert 0.8 < result["summary"]["a"]["dice_mean"] <= 1.0
    assert result["summary"]["a"]["n"] == 2
    rows = list(csv.DictReader(open(tmp_path / "m.csv")))
    assert len(rows) == 4 and {r["class"] for r in rows} == {"a", "b"}
    with pytest.raises(ValueError, match="No NIfTI predictions"):
        evaluate_folders(tmp_path / "gt" / "..", gt_dir)


def test_evaluate_folders_compares_voxels_where_they_lie_in_the_patient(tmp_path):
    # the ground truth saved by another tool with the rows the other way (same patient grid)
    from napari_medseg.io import read_volume

    ORIENTED = {"format": "nifti", "sform_code": 1, "qform_code": 1}  # noqa: N806
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    labels = np.zeros((6, 7, 8), np.uint8)
    labels[1:4, 0:3, 2:6] = 1  # off-centre along the flipped axis: a flip moves it
    affine = np.diag([2.0, 1.0, 1.0, 1.0])
    write_nifti(Volume(labels, (2.0, 1.0, 1.0), affine, metadata=ORIENTED), pred_dir / "c.nii.gz", labels=True)
    flipped = affine.copy()
    flipped[1, 1], flipped[1, 3] = -1.0, 6.0
    write_nifti(Volume(labels[:, ::-1].copy(), (2.0, 1.0, 1.0), flipped, metadata=ORIENTED), gt_dir / "c.nii.gz",
                labels=True)
    assert read_volume(gt_dir / "c.nii.gz").has_orientation
    result = evaluate_folders(pred_dir, gt_dir, labels={1: "a"})
    assert result["cases"]["c"]["a"]["dice"] == 1.0
    with pytest.raises(ValueError, match=r"c: the prediction holds label value\(s\) \{1\}"):
        evaluate_folders(pred_dir, gt_dir, labels={2: "b"})  # 1 is not named: not dropped
    # another grid is refused in one line (before: scored as if it were the same voxels)
    shifted = affine.copy()
    shifted[0, 3] = 1.0
    write_nifti(Volume(labels, (2.0, 1.0, 1.0), shifted, metadata=ORIENTED), gt_dir / "c.nii.gz", labels=True)
    with pytest.raises(ValueError, match="c: the prediction .* not on the same grid"):
        evaluate_folders(pred_dir, gt_dir, labels={1: "a"})


def test_cli_evaluate_warns_of_a_class_no_ground_truth_has_in_json_mode_too(tmp_path, capsys):
    from napari_medseg.cli import main

    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    gt = np.zeros((6, 7, 8), np.uint8)
    gt[1:4, 2:5, 2:6] = 1
    pred = gt.copy()
    pred[4:6, 2:5, 2:6] = 2  # a 3-class model against 2-class labels
    write_nifti(Volume(gt, (1.0, 1.0, 1.0)), gt_dir / "c0.nii.gz", labels=True)
    write_nifti(Volume(pred, (1.0, 1.0, 1.0)), pred_dir / "c0.nii.gz", labels=True)
    for extra in ([], ["--json"]):
        assert main(["evaluate", str(pred_dir), str(gt_dir), "--no-surface",
                     "--csv", str(tmp_path / "m.csv"), *extra]) == 0
        err = capsys.readouterr().err.splitlines()
        assert any(line.startswith("warning: class 2 is in no ground-truth case") for line in err)
        assert f"per-case metrics written to {tmp_path / 'm.csv'}" in err
