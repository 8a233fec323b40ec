"""The standard click simulator: where simulated clicks go, NoC, and a whole session."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.interactive.clicks import Click, next_click, noc, simulate_session


def _ball(shape, centre, radius, spacing=(1.0, 1.0, 1.0)):
    grids = np.meshgrid(*[(np.arange(n) - c) * s for n, c, s in
                          zip(shape, centre, spacing, strict=True)],
                        indexing="ij")
    return sum(g * g for g in grids) <= radius**2


def test_first_click_is_inside_the_object_farthest_from_its_boundary():
    gt = np.zeros((20, 30, 30), bool)
    gt[5:15, 4:24, 10:20] = True  # box: the farthest interior points lie on its centre line
    click = next_click(np.zeros_like(gt), gt)
    assert click.is_positive
    z, y, x = click.coord
    assert gt[click.coord]
    assert (z, x) in {(9, 14), (9, 15), (10, 14), (10, 15)}
    assert 8 <= y <= 19


def test_first_click_goes_to_the_largest_missed_region():
    gt = _ball((30, 30, 60), (15, 15, 15), 4) | _ball((30, 30, 60), (15, 15, 42), 9)
    click = next_click(np.zeros_like(gt), gt)
    assert click == Click((15, 15, 42), True)


def test_distance_to_boundary_is_measured_in_mm():
    # a 5 x 12 voxel slab; with 3 mm slices along z the slab is thicker along z in mm
    gt = np.zeros((9, 16), bool)
    gt[2:7, 2:14] = True
    iso = next_click(np.zeros_like(gt), gt)
    assert iso.coord[0] == 4
    aniso_gt = np.zeros((9, 40), bool)
    aniso_gt[2:7, 2:38] = True  # 5 rows of 3 mm = 15 mm; 36 columns of 0.25 mm = 9 mm
    click = next_click(np.zeros_like(aniso_gt), aniso_gt, spacing=(3.0, 0.25))
    assert click.coord[1] in (19, 20)  # the mm-centre along x, whatever row


def test_next_click_in_the_largest_error_region_negative_on_false_positive():
    gt = _ball((40, 40, 40), (20, 20, 20), 8)
    pred = gt.copy()
    pred[2:12, 2:12, 28:38] = True  # a large false positive
    pred &= ~_ball((40, 40, 40), (20, 20, 13), 2)  # a small miss
    click = next_click(pred, gt)
    assert click.is_positive is False
    assert pred[click.coord] and not gt[click.coord]
    assert click.coord in {(6, 6, 32), (7, 7, 33), (6, 7, 32), (7, 6, 33), (6, 6, 33),
                           (7, 7, 32), (6, 7, 33), (7, 6, 32)}


def test_positive_click_on_the_larger_missed_region():
    gt = _ball((40, 40, 40), (20, 20, 20), 10)
    pred = gt & ~_ball((40, 40, 40), (20, 20, 27), 4)  # missed cap
    pred[0:3, 0:3, 0:3] = True  # small false positive
    click = next_click(pred, gt)
    assert click.is_positive
    assert gt[click.coord] and not pred[click.coord]


def test_no_click_when_perfect_and_never_the_same_voxel_twice():
    gt = np.zeros((10, 10), bool)
    gt[3:7, 3:7] = True
    assert next_click(gt, gt) is None
    first = next_click(np.zeros_like(gt), gt)
    second = next_click(np.zeros_like(gt), gt, prev_clicks=[first])
    assert second.coord != first.coord and gt[second.coord]


def test_noc_counts_clicks_and_is_20_when_never():
    assert noc([0.9, 0.95], 0.9) == 0
    assert noc([0.1, 0.5, 0.86, 0.91], 0.85) == 2
    assert noc([0.1, 0.5, 0.86, 0.91], 0.90) == 3
    assert noc([0.1, 0.5], 0.9) == 20


def test_simulate_session_reaches_the_object_with_an_ideal_click_model():
    gt = np.zeros((30, 30), np.uint8)
    gt[5:12, 5:12] = 1
    gt[15:25, 14:28] = 2

    def predict(image, clicks):  # the component of label 2 under any positive click
        out = np.zeros(gt.shape, bool)
        for coord, positive in clicks:
            if positive and gt[coord] == 2:
                out |= gt == 2
        return out

    gen = simulate_session(predict, None, gt, label=2, max_clicks=3)
    dices = list(gen)
    assert dices == pytest.approx([0.0, 1.0, 1.0, 1.0])
    assert noc(dices, 0.9) == 1
