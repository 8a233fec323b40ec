"""Empty masks in summaries: a normal picture (empty ground truth, false-positive prediction)
keeps its per-case values (HD95 inf, sensitivity 0) but does not turn the means into inf nor
count as a missed lesion in the mean sensitivity."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image

from napari_medseg import metrics as M
from napari_medseg.dataset.evaluation import evaluate_folders
from napari_medseg.io.nifti import write_nifti
from napari_medseg.io.volume import Volume

INF = float("inf")


def _row(**values):
    return {"label": 1, **values}


def test_summary_leaves_undefined_distances_out_and_counts_them():
    per_case = {
        "a": {"lesion": _row(dice=0.8, hd95=2.0, assd=1.0, sensitivity=0.9, area_gt_px=50)},
        "b": {"lesion": _row(dice=0.6, hd95=4.0, assd=3.0, sensitivity=0.7, area_gt_px=40)},
        "normal": {"lesion": _row(dice=0.0, hd95=INF, assd=INF, sensitivity=0.0, area_gt_px=0)},
    }
    s = M.summarise(per_case)["lesion"]
    assert s["n"] == 3
    assert s["hd95_mean"] == pytest.approx(3.0) and s["hd95_std"] == pytest.approx(1.0)
    assert s["assd_mean"] == pytest.approx(2.0) and s["assd_std"] == pytest.approx(1.0)
    assert s["hd95_n_undefined"] == 1 and s["assd_n_undefined"] == 1
    # sensitivity is undefined without positives: the normal picture is left out
    assert s["sensitivity_mean"] == pytest.approx(0.8) and s["sensitivity_n_undefined"] == 1
    # Dice of the normal picture (0: a false positive) still counts
    assert s["dice_mean"] == pytest.approx(1.4 / 3)
    assert "dice_n_undefined" not in s
    # the per-case values are not changed
    assert math.isinf(per_case["normal"]["lesion"]["hd95"])
    assert per_case["normal"]["lesion"]["sensitivity"] == 0.0


def test_both_empty_counts_as_defined_distance_but_not_as_sensitivity():
    per_case = {
        "a": {"1": _row(hd95=2.0, sensitivity=0.5, volume_gt_ml=1.0)},
        "empty": {"1": _row(hd95=0.0, sensitivity=1.0, volume_gt_ml=0.0)},  # nothing, found nothing
    }
    s = M.summarise(per_case)["1"]
    assert s["hd95_mean"] == pytest.approx(1.0) and s["hd95_n_undefined"] == 0
    assert s["sensitivity_mean"] == pytest.approx(0.5) and s["sensitivity_n_undefined"] == 1
    assert M.undefined_cases(per_case, "1", "sensitivity") == ["empty"]
    assert M.undefined_cases(per_case, "1", "hd95") == []


def test_summary_with_no_defined_case():
    per_case = {c: {"1": _row(hd95=INF, sensitivity=0.0, area_gt_px=0)} for c in ("x", "y")}
    s = M.summarise(per_case)["1"]
    assert math.isinf(s["hd95_mean"]) and math.isinf(s["hd95_std"]) and s["hd95_n_undefined"] == 2
    assert math.isnan(s["sensitivity_mean"]) and s["sensitivity_n_undefined"] == 2


@pytest.mark.parametrize(("metric", "row", "defined"), [
    ("hd95", {"hd95": INF}, False),
    ("assd_px", {"assd_px": 3.0}, True),
    ("sensitivity", {"sensitivity": 0.0, "volume_gt_ml": 0.0}, False),
    ("sensitivity", {"sensitivity": 0.0, "area_gt_px": 12}, True),
    ("sensitivity", {"sensitivity": 0.4}, True),  # no area: nothing says the truth is empty
    ("precision", {"precision": 0.0, "area_gt_px": 0}, True),
])
def test_is_defined(metric, row, defined):
    assert M.is_defined(metric, row) is defined


def _pictures(folder, n=4):
    """``n - 1`` lesion pictures and one normal picture with a false positive (0/1 PNGs)."""
    for sub in ("pred", "gt"):
        (folder / sub).mkdir(parents=True)
    for i in range(n):
        gt = np.zeros((40, 40), np.uint8)
        pred = gt.copy()
        name = f"lesion_{i}" if i < n - 1 else "normal"
        if i < n - 1:
            gt[10:30, 10:30] = 1
            pred[12 + i:30, 10:28] = 1
        else:
            pred[3:8, 3:8] = 1
        Image.fromarray(gt).save(folder / "gt" / f"{name}.png")
        Image.fromarray(pred).save(folder / "pred" / f"{name}.png")


def test_folder_of_pictures_with_a_normal_picture(tmp_path):
    _pictures(tmp_path)
    result = evaluate_folders(tmp_path / "pred", tmp_path / "gt", csv_path=tmp_path / "m.csv")
    assert result["distance_unit"] == "px"
    cases, s = result["cases"], result["summary"]["1"]
    lesions = [c for c in cases if c != "normal"]
    expected = np.mean([cases[c]["1"]["hd95_px"] for c in lesions])
    assert math.isfinite(expected)
    for key in ("hd95", "hd95_px"):  # the pixel figures are also the summary's hd95 ones
        assert s[f"{key}_mean"] == pytest.approx(expected) and s[f"{key}_n_undefined"] == 1
    assert s["sensitivity_mean"] == pytest.approx(
        np.mean([cases[c]["1"]["sensitivity"] for c in lesions]))
    assert s["sensitivity_n_undefined"] == 1
    rows = {r["case"]: r for r in csv.DictReader(open(tmp_path / "m.csv"))}
    assert rows["normal"]["hd95_px"] == "inf" and rows["normal"]["sensitivity"] == "0.0"


def _volumes(folder):
    for sub in ("pred", "gt"):
        (folder / sub).mkdir(parents=True)
    for i, name in enumerate(("c0", "c1", "normal")):
        gt = np.zeros((6, 20, 20), np.uint8)
        pred = gt.copy()
        if name == "normal":
            pred[2:4, 2:5, 2:5] = 1
        else:
            gt[1:5, 5:15, 5:15] = 1
            pred[1:5, 6 + i:15, 5:14] = 1
        for sub, array in (("gt", gt), ("pred", pred)):
            write_nifti(Volume(array, (2.0, 1.0, 1.0)), folder / sub / f"{name}.nii.gz",
                        labels=True)


def test_cli_evaluate_table_json_and_csv_with_an_empty_ground_truth(tmp_path, capsys):
    from napari_medseg.cli import main

    _volumes(tmp_path)
    pred, gt = str(tmp_path / "pred"), str(tmp_path / "gt")
    assert main(["evaluate", pred, gt, "--json", "--csv", str(tmp_path / "m.csv")]) == 0
    summary = json.loads(capsys.readouterr().out)["1"]
    result = evaluate_folders(pred, gt)
    defined = [result["cases"][c]["1"] for c in ("c0", "c1")]
    assert summary["hd95_mean"] == pytest.approx(np.mean([r["hd95"] for r in defined]))
    assert summary["assd_mean"] == pytest.approx(np.mean([r["assd"] for r in defined]))
    assert summary["hd95_n_undefined"] == summary["assd_n_undefined"] == 1
    assert summary["sensitivity_n_undefined"] == 1 and summary["n"] == 3
    rows = {r["case"]: r for r in csv.DictReader(open(tmp_path / "m.csv"))}
    assert rows["normal"]["hd95"] == "inf" and rows["normal"]["assd"] == "inf"

    assert main(["evaluate", pred, gt]) == 0
    lines = capsys.readouterr().out.splitlines()
    header, row = lines[0], lines[1]
    hd95 = f"{summary['hd95_mean']:.3f} ± {summary['hd95_std']:.3f} (1 inf)"
    sens = f"{summary['sensitivity_mean']:.3f} ± {summary['sensitivity_std']:.3f} (1 n/a)"
    assert hd95 in row and sens in row and "inf ± inf" not in row
    # the widened columns stay under their titles (right-aligned, same end)
    for title, cell in (("HD95 mm", hd95), ("Sens", sens)):
        assert header.index(title) + len(title) == row.index(cell) + len(cell)
    notes = [line for line in lines if line.startswith("note:")]
    assert len(notes) == 2
    assert any("HD95 mm, ASSD mm" in n and "2 of 3" in n and n.endswith(": normal")
               for n in notes)
    assert any("Sens" in n and "ground truth empty" in n and n.endswith(": normal")
               for n in notes)
    assert lines[-1].startswith("mean Dice over 1 class(es)")


def test_cli_evaluate_without_undefined_cases_has_no_note(tmp_path, capsys):
    from napari_medseg.cli import main

    _volumes(tmp_path)
    for sub in ("pred", "gt"):
        (tmp_path / sub / "normal.nii.gz").unlink()
    assert main(["evaluate", str(tmp_path / "pred"), str(tmp_path / "gt")]) == 0
    out = capsys.readouterr().out
    assert "note:" not in out and "(1 inf)" not in out and "n/a" not in out
