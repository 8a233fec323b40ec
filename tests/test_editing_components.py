"""Holes, islands, largest / clicked component, component table, logical operations."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.editing import (
    EditingError,
    combine_labels,
    component_table,
    count_holes,
    fill_holes,
    keep_component,
    keep_largest,
    remove_islands,
)


def cube_with_cavities():
    """Label 1: a hollow-ish cube with three closed cavities of 1, 8 and 27 voxels; label 2 fills
    part of the biggest cavity."""
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[2:18, 2:18, 2:18] = 1
    labels[4, 4, 4] = 0
    labels[8:10, 4:6, 4:6] = 0
    labels[12:15, 12:15, 12:15] = 0
    labels[13, 13, 13] = 2
    return labels


def test_holes_counted_and_filled_exactly():
    labels = cube_with_cavities()
    assert count_holes(labels == 1) == 3
    filled = fill_holes(labels, 1)
    assert count_holes(filled == 1) == 1  # label 2 still sits inside, kept
    assert filled[13, 13, 13] == 2
    assert (filled == 1).sum() == (labels == 1).sum() + 1 + 8 + 26
    forced = fill_holes(labels, 1, overwrite=True)
    assert count_holes(forced == 1) == 0 and not np.any(forced == 2)
    # a notch open to the outside is not a hole
    notch = np.zeros((1, 9, 9), np.uint8)
    notch[0, 2:7, 2:7] = 1
    notch[0, 4, 4:7] = 0
    np.testing.assert_array_equal(fill_holes(notch, 1), notch)


def test_fill_holes_in_one_slice_only():
    labels = np.zeros((3, 9, 9), np.uint8)
    labels[:, 2:7, 2:7] = 1
    labels[:, 4, 4] = 0
    out = fill_holes(labels, 1, slice_index=1)
    assert out[1, 4, 4] == 1 and out[0, 4, 4] == 0 and out[2, 4, 4] == 0
    # in 3D the tube is open at both ends: not a hole
    np.testing.assert_array_equal(fill_holes(labels, 1), labels)
    per_slice = fill_holes(labels, 1, axis=0)
    assert np.all(per_slice[:, 4, 4] == 1)


def islands():
    labels = np.zeros((10, 30, 30), np.uint8)
    labels[1:9, 1:11, 1:11] = 1  # 800 voxels
    labels[2:4, 20:24, 20:22] = 1  # 16 voxels
    labels[6, 25, 25] = 1  # 1 voxel
    labels[6:8, 14:17, 2:5] = 1  # 18 voxels
    labels[8, 28, 28] = 3
    return labels


def test_remove_islands_by_volume_in_mm3():
    labels = islands()
    spacing = (2.0, 0.5, 0.5)  # voxel = 0.5 mm^3
    out = remove_islands(labels, 1, 8.5, spacing)  # removes 1 (0.5) and 16 (8.0) voxel pieces
    table = component_table(out, 1, spacing)
    assert sorted(r["voxels"] for r in table) == [18, 800]
    assert out[8, 28, 28] == 3
    assert len(component_table(remove_islands(labels, 1, 9.0, spacing), 1, spacing)) == 2
    assert len(component_table(remove_islands(labels, 1, 9.01, spacing), 1, spacing)) == 1
    assert len(component_table(remove_islands(labels, None, 0.5, spacing), 1, spacing)) == 4


def test_keep_largest_and_clicked_component():
    labels = islands()
    largest = keep_largest(labels, 1)
    assert (largest == 1).sum() == 800 and largest[8, 28, 28] == 3
    clicked = keep_component(labels, 1, (2.2, 21, 20.6))
    assert (clicked == 1).sum() == 16
    assert keep_component(labels, None, (6, 25, 25)).astype(bool).sum() == 1 + 1
    with pytest.raises(EditingError, match="not on label"):
        keep_component(labels, 1, (0, 0, 0))
    with pytest.raises(EditingError, match="no label"):
        keep_component(labels, None, (0, 0, 0))
    with pytest.raises(EditingError, match="outside"):
        keep_component(labels, 1, (10, 0, 0))


def test_connectivity_changes_the_count():
    labels = np.zeros((1, 4, 4), np.uint8)
    labels[0, 0, 0] = labels[0, 1, 1] = 1  # touch diagonally
    assert len(component_table(labels, 1, (1, 1, 1))) == 1
    assert len(component_table(labels, 1, (1, 1, 1), connectivity=1)) == 2
    with pytest.raises(EditingError, match="Connectivity"):
        component_table(labels, 1, (1, 1, 1), connectivity=4)


def test_component_table_values():
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[2:4, 2:6, 3:5] = 2  # 16 voxels, centroid (2.5, 3.5, 3.5)
    labels[7, 7, 7] = 2
    rows = component_table(labels, 2, (2.0, 1.0, 0.5), origin=(-10.0, 5.0, 0.0))
    assert [r["id"] for r in rows] == [1, 2]
    big = rows[0]
    assert big["label"] == 2 and big["voxels"] == 16
    assert big["volume_mm3"] == pytest.approx(16.0)
    assert big["volume_ml"] == pytest.approx(0.016)
    assert big["centroid_voxel"] == pytest.approx((2.5, 3.5, 3.5))
    assert big["centroid_mm"] == pytest.approx((-5.0, 8.5, 1.75))
    assert big["bbox"] == ((2, 4), (2, 6), (3, 5))
    assert rows[1]["bbox"] == ((7, 8), (7, 8), (7, 8))


def test_combine_labels():
    labels = np.zeros((1, 6, 6), np.uint8)
    labels[0, 0:3, :] = 1
    labels[0, 3:6, :] = 2
    union = combine_labels(labels, 1, 2, "union")
    assert np.all(union == 1)
    other = np.zeros_like(labels)
    other[0, :, 0:2] = 5
    inter = combine_labels(labels, 1, 5, "intersect", other=other)
    assert (inter == 1).sum() == 6 and np.all(inter[0, 0:3, 0:2] == 1)
    np.testing.assert_array_equal(inter == 2, labels == 2)
    sub = combine_labels(labels, 1, 5, "subtract", other=other)
    assert (sub == 1).sum() == 12 and np.all(sub[0, 0:3, 0:2] == 0)
    add = combine_labels(labels, 1, 5, "union", other=other)
    assert (add == 1).sum() == 18  # label 2 not overwritten
    assert (combine_labels(labels, 1, 5, "union", other=other, overwrite=True) == 1).sum() == 24
    with pytest.raises(EditingError, match="operation"):
        combine_labels(labels, 1, 2, "xor")
    with pytest.raises(EditingError, match="not present"):
        combine_labels(labels, 1, 9, "union")


def test_component_table_world_centroids_and_largest_pieces():
    labels = np.zeros((6, 10, 12), np.uint8)
    labels[1:3, 2:6, 3:5] = 2  # 16 voxels
    labels[5, 9, 11] = 2
    labels[0, 0, 0] = 2
    affine = np.array([[0, 0, -0.5, 30.0], [0, -1.0, 0, 12.0], [2.0, 0, 0, -7.0], [0, 0, 0, 1]])
    rows = component_table(labels, 2, (2.0, 1.0, 0.5), affine=affine)
    big = rows[0]
    assert big["centroid_voxel"] == pytest.approx((1.5, 3.5, 3.5))
    assert big["centroid_mm"] == pytest.approx((30 - 0.5 * 3.5, 12 - 3.5, -7 + 2 * 1.5))
    assert [r["pieces"] for r in rows] == [3, 3, 3]
    top = component_table(labels, 2, (2.0, 1.0, 0.5), max_pieces=1)
    assert len(top) == 1 and top[0]["voxels"] == 16 and top[0]["pieces"] == 3
    flat = component_table(labels[1], 2, (1.0, 0.5), affine=affine)
    assert flat[0]["centroid_mm"] == pytest.approx((30 - 0.5 * 3.5, 12 - 3.5, -7.0))
    with pytest.raises(EditingError, match="affine"):
        component_table(labels, 2, (1, 1, 1), affine=np.eye(3))
