"""Shape-based interpolation between annotated slices."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.editing import EditingError, interpolate_slices, signed_distance


def disc(shape, centre, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def test_signed_distance_signs():
    m = disc((21, 21), (10, 10), 5)
    sd = signed_distance(m, (1.0, 1.0))
    assert np.all(sd[m] < 0) and np.all(sd[~m] > 0)
    assert sd[10, 10] == pytest.approx(-np.sqrt(26.0))  # nearest outside voxel: (11, 15)


def test_interpolation_between_two_discs_gives_intermediate_discs():
    shape = (11, 61, 61)
    labels = np.zeros(shape, np.uint8)
    labels[0][disc(shape[1:], (30, 30), 10)] = 1
    labels[10][disc(shape[1:], (30, 30), 20)] = 1
    labels[5, 0:3, 0:3] = 4  # another label in an in-between slice
    out = interpolate_slices(labels, 1, axis=0)
    np.testing.assert_array_equal(out[0], labels[0])
    np.testing.assert_array_equal(out[10], labels[10])
    assert np.all(out[5, 0:3, 0:3] == 4)
    previous = disc(shape[1:], (30, 30), 10)
    for k in range(1, 10):
        sl = out[k] == 1
        r = 10 + k  # expected radius, linear in k
        assert not np.any(disc(shape[1:], (30, 30), r - 1) & ~sl), k
        assert not np.any(sl & ~disc(shape[1:], (30, 30), r + 1)), k
        assert np.all(previous <= sl)  # discs grow monotonically
        previous = sl
    # the area of the middle slice is that of a radius-15 disc within a rim
    assert abs((out[5] == 1).sum() - np.pi * 15**2) < 2 * np.pi * 15


def test_interpolation_moves_a_shape_along_another_axis_and_keeps_other_labels():
    labels = np.zeros((30, 9, 30), np.uint8)
    labels[:, 0, :][disc((30, 30), (11, 11), 5)] = 2  # overlapping discs: the outline moves
    labels[:, 8, :][disc((30, 30), (17, 17), 5)] = 2
    labels[:, 4, :][disc((30, 30), (14, 14), 1)] = 3  # label 3 in the middle slice
    out = interpolate_slices(labels, 2, axis=1, spacing=(1.0, 3.0, 1.0))
    np.testing.assert_array_equal(out == 3, labels == 3)
    mid = out[:, 4, :] == 2
    ys, xs = np.nonzero(mid)
    assert ys.mean() == pytest.approx(14, abs=0.6) and xs.mean() == pytest.approx(14, abs=0.6)
    # all labels at once equals label by label here
    np.testing.assert_array_equal(interpolate_slices(labels, None, axis=1,
                                                     spacing=(1.0, 3.0, 1.0)), out)


def test_adjacent_slices_unchanged_and_errors():
    labels = np.zeros((3, 8, 8), np.uint8)
    labels[0:2, 2:5, 2:5] = 1
    np.testing.assert_array_equal(interpolate_slices(labels, 1, 0), labels)
    with pytest.raises(EditingError, match="not present"):
        interpolate_slices(labels, 2, 0)
    with pytest.raises(EditingError, match="3D"):
        interpolate_slices(labels[0], 1, 0)
    with pytest.raises(EditingError, match="Axis"):
        interpolate_slices(labels, 1, 3)


def test_marked_empty_slice_stops_the_interpolation():
    shape = (9, 31, 31)
    labels = np.zeros(shape, np.uint8)
    labels[0][disc(shape[1:], (15, 15), 6)] = 1
    labels[8][disc(shape[1:], (15, 15), 6)] = 1
    free = interpolate_slices(labels, 1, 0)
    assert all((free[k] == 1).sum() == (labels[0] == 1).sum() for k in range(9))
    stopped = interpolate_slices(labels, 1, 0, annotated=[0, 4, 8])
    np.testing.assert_array_equal(stopped, labels)  # 4 is marked and empty: nothing to fill
    labels[3][disc(shape[1:], (15, 15), 6)] = 1
    partly = interpolate_slices(labels, 1, 0, annotated=[6])
    # 0-3 interpolated; 3-6 and 6-8 not (6 is marked empty)
    assert np.all(partly[1:3] == free[1:3]) and not partly[4:8].any()
    np.testing.assert_array_equal(interpolate_slices(labels, 1, 0, annotated=[0, 3, 8]),
                                  interpolate_slices(labels, 1, 0))
    with pytest.raises(EditingError, match="outside"):
        interpolate_slices(labels, 1, 0, annotated=[12])
