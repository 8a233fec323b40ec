"""Per-slice contours in mm and as napari Shapes polygons."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.editing import EditingError, label_contours, label_contours_for_shapes


def test_square_contour_in_mm():
    labels = np.zeros((4, 10, 12), np.uint8)
    labels[1:3, 2:6, 3:9] = 1
    labels[1, 0:2, 0:2] = 2
    contours = label_contours(labels, 1, axis=0, spacing=(3.0, 0.5, 2.0), origin=(0, 10, -5))
    assert [k for k, _ in contours] == [1, 2]
    poly = contours[0][1]
    assert poly.shape[1] == 2
    np.testing.assert_allclose(poly[0], poly[-1])  # closed
    # iso-line at 0.5 lies half a voxel outside the voxel centres: y in [1.5, 5.5], x in [2.5, 8.5]
    assert poly[:, 0].min() == pytest.approx(10 + 1.5 * 0.5)
    assert poly[:, 0].max() == pytest.approx(10 + 5.5 * 0.5)
    assert poly[:, 1].min() == pytest.approx(-5 + 2.5 * 2.0)
    assert poly[:, 1].max() == pytest.approx(-5 + 8.5 * 2.0)


def test_contours_at_the_border_are_closed_and_other_axes():
    labels = np.zeros((5, 6, 7), np.uint8)
    labels[:, 0:3, 0:3] = 1
    contours = label_contours(labels, 1, axis=2)
    assert [k for k, _ in contours] == [0, 1, 2]
    for _, poly in contours:
        np.testing.assert_allclose(poly[0], poly[-1])
        assert poly[:, 0].min() == pytest.approx(-0.5) and poly[:, 0].max() == pytest.approx(4.5)


def test_shapes_form_uses_voxel_indices():
    labels = np.zeros((4, 10, 10), np.uint8)
    labels[2, 3:6, 3:6] = 1
    labels[2, 7:9, 7:9] = 1
    polys = label_contours_for_shapes(labels, 1, axis=0)
    assert len(polys) == 2
    for p in polys:
        assert p.shape[1] == 3 and np.all(p[:, 0] == 2)
    sag = label_contours_for_shapes(labels, 1, axis=2)
    assert {int(p[0, 2]) for p in sag} == {3, 4, 5, 7, 8}
    with pytest.raises(EditingError, match="not present"):
        label_contours(labels, 3)
    with pytest.raises(EditingError, match="origin"):
        label_contours(labels, 1, origin=(0, 0))
