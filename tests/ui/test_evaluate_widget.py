"""Evaluate dock: metrics table from real layers, CSV export, difference overlay."""

from __future__ import annotations

import csv

import napari
import numpy as np
import pytest
from ui_helpers import PLUGIN, error_messages

from napari_medseg.ui.evaluate_widget import difference_map


@pytest.fixture
def setup(make_napari_viewer, qtbot, hippo_cases, plugin_dock):
    image_path, labels_path = hippo_cases(1)[0]
    viewer = make_napari_viewer()
    viewer.open(str(image_path), plugin=PLUGIN)
    (gt,) = viewer.open(str(labels_path), plugin=PLUGIN)
    from scipy import ndimage as ndi

    pred_data = gt.data.copy()
    pred_data[ndi.binary_dilation(gt.data == 1) & (gt.data == 0)] = 1  # over-segment class 1
    pred_data[gt.data == 2] = np.where(np.arange(pred_data[gt.data == 2].size) % 4 == 0, 0, 2)
    pred = viewer.add_labels(pred_data, name="prediction", scale=gt.scale,
                             translate=gt.translate, metadata=dict(gt.metadata))
    widget = plugin_dock(viewer, "EvaluateWidget")
    widget.pred_combo.set_layer(pred)
    widget.gt_combo.set_layer(gt)
    return viewer, widget, pred, gt


def _independent_metrics(pred, gt, spacing):
    """Oracle figures computed outside napari-medseg: Dice by counting voxels, HD95 by MONAI."""
    import torch
    from monai.metrics import compute_hausdorff_distance

    out = {}
    for label, name in ((1, "Anterior"), (2, "Posterior")):
        p, g = pred == label, gt == label
        dice = 2.0 * np.count_nonzero(p & g) / (np.count_nonzero(p) + np.count_nonzero(g))
        as_tensor = [torch.from_numpy(m[None, None].astype(np.float32)) for m in (p, g)]
        hd95 = float(compute_hausdorff_distance(*as_tensor, include_background=True,
                                                percentile=95,
                                                spacing=[float(s) for s in spacing]))
        out[name] = {"dice": dice, "hd95": hd95}
    return out


def test_compute_metrics_table(setup, qtbot):
    _viewer, widget, pred, gt = setup
    widget.compute_button.click()
    qtbot.waitUntil(lambda: widget.table.columnCount() == 2, timeout=30000)
    expected = _independent_metrics(pred.data, gt.data, np.abs(gt.scale))
    names = [widget.table.horizontalHeaderItem(c).text() for c in range(2)]
    assert names == ["Anterior", "Posterior"]
    rows = [widget.table.verticalHeaderItem(r).text() for r in range(widget.table.rowCount())]
    for title in ("Dice", "Jaccard", "Sensitivity", "Specificity", "HD95 (mm)", "ASSD (mm)"):
        assert title in rows
    for name in names:
        assert float(widget.metric(name, "dice")) == pytest.approx(expected[name]["dice"],
                                                                   abs=1e-3)
        assert float(widget.metric(name, "hd95")) == pytest.approx(expected[name]["hd95"],
                                                                   abs=1e-2)
    assert 0.5 < expected["Anterior"]["dice"] < 1.0


def test_export_csv(setup, qtbot, tmp_path):
    _viewer, widget, _pred, _gt = setup
    widget.compute_button.click()
    qtbot.waitUntil(lambda: bool(widget.results), timeout=30000)
    out = widget.export_csv(tmp_path / "m.csv")
    rows = list(csv.DictReader(out.open()))
    assert [r["class"] for r in rows] == ["Anterior", "Posterior"]
    assert float(rows[0]["dice"]) == pytest.approx(widget.results["Anterior"]["dice"])


def test_difference_overlay(setup):
    viewer, widget, pred, gt = setup
    widget.diff_button.click()
    overlay = viewer.layers[-1]
    assert isinstance(overlay, napari.layers.Labels)
    assert overlay.name == "errors of prediction"
    np.testing.assert_array_equal(overlay.data == 1, (pred.data > 0) & (gt.data == 0))
    np.testing.assert_array_equal(overlay.data == 2, (gt.data > 0) & (pred.data == 0))
    classes = overlay.metadata["medseg"]["classes"]
    assert "false positive" in classes[1]["name"] and "false negative" in classes[2]["name"]
    np.testing.assert_allclose(overlay.scale, gt.scale)


def test_difference_map_values():
    pred = np.array([[0, 1, 1, 2]])
    gt = np.array([[0, 0, 1, 1]])
    np.testing.assert_array_equal(difference_map(pred, gt), [[0, 1, 0, 3]])
    np.testing.assert_array_equal(difference_map(gt, pred), [[0, 2, 0, 3]])  # roles swapped
    np.testing.assert_array_equal(difference_map(np.array([[0, 1]]), np.array([[2, 1]])),
                                  [[2, 0]])


def test_bad_choices_notify(setup, make_napari_viewer):
    viewer, widget, pred, gt = setup
    n = len(error_messages())
    widget.export_button.click()  # nothing computed yet
    widget.gt_combo.set_layer(pred)  # same layer twice: nothing to compare
    assert not widget.compute_button.isEnabled() and not widget.diff_button.isEnabled()
    other = viewer.add_labels(np.zeros((3, 3, 3), np.uint8), name="small")
    assert widget.pred_combo.layer() is other  # a new labels layer becomes the prediction
    widget.pred_combo.set_layer(pred)
    widget.gt_combo.set_layer(other)  # different grid
    widget.diff_button.click()
    assert len(error_messages()) == n + 2
    assert "not on the same grid" in error_messages()[-1]


def test_default_choices_follow_workflow(make_napari_viewer, qtbot, hippo_cases, plugin_dock):
    """Ground truth = the first labels opened; prediction = the newest labels layer."""
    _image_path, labels_path = hippo_cases(1)[0]
    viewer = make_napari_viewer()
    widget = plugin_dock(viewer, "EvaluateWidget")
    (gt,) = viewer.open(str(labels_path), plugin=PLUGIN)
    pred = viewer.add_labels(np.zeros_like(gt.data), name="model output")
    assert widget.gt_combo.layer() is gt
    assert widget.pred_combo.layer() is pred
    pred.name = "renamed"
    assert widget.pred_combo.currentText() == "renamed"


def test_buttons_wait_for_two_layers_and_an_old_error_goes_when_they_change(
        make_napari_viewer, plugin_dock):
    viewer = make_napari_viewer()
    widget = plugin_dock(viewer, "Evaluate")
    assert not widget.compute_button.isEnabled() and not widget.diff_button.isEnabled()
    assert "choose a prediction" in widget.compute_button.toolTip()
    small = viewer.add_labels(np.ones((4, 5, 6), np.uint8), name="small")
    big = viewer.add_labels(np.ones((4, 5, 7), np.uint8), name="big")
    widget.pred_combo.set_layer(big)
    widget.gt_combo.set_layer(small)
    assert widget.diff_button.isEnabled()
    widget.diff_button.click()  # other grids: an error on the status line
    assert widget.status.text().startswith("⚠ ") and "not on the same grid" in widget.status.text()
    widget.pred_combo.set_layer(viewer.add_labels(np.zeros((4, 5, 6), np.uint8), name="c"))
    assert not widget.status.text().startswith("⚠")


def test_a_normal_picture_shows_infinity_and_sensitivity_n_a_with_tooltips(
        make_napari_viewer, qtbot, plugin_dock, tmp_path):
    """Empty ground truth, a false-positive prediction: distances are ∞ (was 'n/a') and the
    sensitivity is n/a, each saying why; the CSV keeps the per-case values (inf, 0)."""
    from napari_medseg.ui.evaluate_widget import INF_TIP, NO_TRUTH_TIP

    viewer = make_napari_viewer()
    gt = viewer.add_labels(np.zeros((32, 32), np.uint8), name="truth")
    found = np.zeros((32, 32), np.uint8)
    found[4:9, 4:9] = 1
    pred = viewer.add_labels(found, name="prediction")
    widget = plugin_dock(viewer, "EvaluateWidget")
    widget.pred_combo.set_layer(pred)
    widget.gt_combo.set_layer(gt)
    widget.compute_button.click()
    qtbot.waitUntil(lambda: widget.table.columnCount() == 1, timeout=30000)
    (name,) = widget.results
    keys = [k for k, _t, _p in widget.columns]
    for key in ("hd95_px", "assd_px"):
        assert widget.metric(name, key) == "∞"
        assert widget.table.item(keys.index(key), 0).toolTip() == INF_TIP
        assert "one of the two masks is empty" in INF_TIP
    assert widget.metric(name, "sensitivity") == "n/a"
    assert widget.table.item(keys.index("sensitivity"), 0).toolTip() == NO_TRUTH_TIP
    assert widget.metric(name, "dice") == "0.000"  # defined: a false positive scores 0
    assert widget.table.item(keys.index("dice"), 0).toolTip() == ""
    rows = list(csv.DictReader(widget.export_csv(tmp_path / "m.csv").open()))
    assert rows[0]["hd95_px"] == "inf" and rows[0]["sensitivity"] == "0.0"


def test_rows_before_computing_are_in_the_chosen_layers_units(make_napari_viewer, plugin_dock):
    """A picture without a pixel size: the empty table already lists px rows (it listed mm and
    mL, which the results then replaced); a volume lists mm and mL."""
    viewer = make_napari_viewer()
    widget = plugin_dock(viewer, "Evaluate")
    assert "HD95 (mm)" in _row_titles(widget) and "Vol. truth (mL)" in _row_titles(widget)
    meta = {"medseg": {"spacing_known": False}}
    viewer.add_labels(np.zeros((32, 40), np.uint8), name="truth", metadata=meta)
    viewer.add_labels(np.zeros((32, 40), np.uint8), name="prediction", metadata=meta)
    titles = _row_titles(widget)
    assert "HD95 (px)" in titles and "Area truth (px)" in titles
    assert not any("mm" in t or "mL" in t for t in titles)
    viewer.layers.clear()
    viewer.add_labels(np.zeros((4, 5, 6), np.uint8), name="volume")
    assert "Vol. truth (mL)" in _row_titles(widget)


def _row_titles(widget) -> list[str]:
    table = widget.table
    return [table.verticalHeaderItem(r).text() for r in range(table.rowCount())]
