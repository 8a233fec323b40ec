"""Morphology in mm on label maps: exact ellipsoids, fast paths == reference, label safety."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage as ndi

from napari_medseg.editing import (
    EditingError,
    close_label,
    close_mask,
    dilate_mask,
    ellipsoid_footprint,
    erode_mask,
    grow_label,
    hollow_label,
    open_label,
    open_mask,
    shrink_label,
    smooth_label,
)

CT_SPACING = (2.5, 0.8, 0.8)


def analytic_ball(shape, centre, radius_mm, spacing):
    """Voxels whose centre lies within radius_mm (physical) of the centre voxel."""
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, spacing, strict=True))
    return d2 <= radius_mm**2 * (1 + 1e-9)


def random_blob(rng, shape, sigma=1.5, level=0.2):
    return ndi.gaussian_filter(rng.standard_normal(shape), sigma) > level


# --- footprint and exact shapes -------------------------------------------------------------

def test_footprint_is_the_physical_ellipsoid():
    fp = ellipsoid_footprint(3.0, CT_SPACING)
    # extents: floor(3 / 2.5) = 1 in z, floor(3 / 0.8) = 3 in y and x
    assert fp.shape == (3, 7, 7)
    expected = analytic_ball(fp.shape, (1, 3, 3), 3.0, CT_SPACING)
    np.testing.assert_array_equal(fp, expected)
    # exact ties count as inside: offset 1 voxel at 2.5 mm for radius 2.5 mm
    assert ellipsoid_footprint(2.5, CT_SPACING).shape == (3, 7, 7)
    assert ellipsoid_footprint(0.0, CT_SPACING).shape == (1, 1, 1)


@pytest.mark.parametrize("radius", [1.0, 2.5, 3.7, 6.0])
@pytest.mark.parametrize("method", ["rows", "edt", "reference"])
def test_point_grown_by_r_is_the_analytic_ellipsoid(radius, method):
    shape = (11, 25, 25)
    centre = (5, 12, 12)
    labels = np.zeros(shape, np.uint8)
    labels[centre] = 1
    grown = grow_label(labels, 1, radius, CT_SPACING, method=method)
    np.testing.assert_array_equal(grown == 1, analytic_ball(shape, centre, radius, CT_SPACING))


@pytest.mark.parametrize("radius", [1.5, 3.0, 5.0])
def test_sphere_grown_by_r_lies_between_analytic_ellipsoids(radius):
    """Ball(R) (+) ball(r) is inside ball(R + r) and contains ball(R + r - voxel diagonal)."""
    shape = (17, 45, 45)
    centre = (8, 22, 22)
    big_r = 6.0
    labels = analytic_ball(shape, centre, big_r, CT_SPACING).astype(np.uint8)
    grown = grow_label(labels, 1, radius, CT_SPACING) == 1
    diag = float(np.sqrt(sum(s * s for s in CT_SPACING)))
    outer = analytic_ball(shape, centre, big_r + radius, CT_SPACING)
    inner = analytic_ball(shape, centre, big_r + radius - diag, CT_SPACING)
    assert not np.any(grown & ~outer)
    assert not np.any(inner & ~grown)


@pytest.mark.parametrize("radius", [0.8, 1.6, 2.0, 3.9, 4.0])
@pytest.mark.parametrize("gap", [1, 2, 3, 4, 5, 6, 9, 10])
def test_closing_fills_gaps_up_to_twice_the_radius(radius, gap):
    """Two slabs across the whole volume, separated along x by ``gap`` voxels (0.8 mm)."""
    labels = np.zeros((4, 6, 30), np.uint8)
    labels[..., :10] = 1
    labels[..., 10 + gap:] = 1
    closed = close_label(labels, 1, radius, CT_SPACING)
    reach = int(np.floor(radius / 0.8 + 1e-9))
    gap_region = closed[..., 10:10 + gap]
    if gap <= 2 * reach:
        assert np.all(gap_region == 1)
    else:
        assert np.all(gap_region == 0)
    assert np.all(closed[labels == 1] == 1)


# --- fast paths are identical to the reference ----------------------------------------------

SPACINGS = [(1.0, 1.0, 1.0), CT_SPACING, (0.7, 1.9, 1.1), (3.0, 0.5, 0.65)]


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("radius", [0.0, 1.0, 2.0, 2.5, 3.3, 5.0, 7.5])
def test_fast_methods_equal_reference_on_random_blobs(spacing, radius):
    rng = np.random.default_rng(int(radius * 10) + int(spacing[1] * 100))
    mask = random_blob(rng, (14, 22, 19))
    mask[0, 3:9, :4] = True  # touches the border
    for fn in (dilate_mask, erode_mask, open_mask, close_mask):
        ref = fn(mask, radius, spacing, method="reference")
        for method in ("rows", "edt", "auto"):
            got = fn(mask, radius, spacing, method=method)
            assert np.array_equal(got, ref), (fn.__name__, method)


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (0.8, 2.5), (1.3, 0.45)])
@pytest.mark.parametrize("radius", [1.0, 2.6, 4.0])
def test_fast_methods_equal_reference_in_2d(spacing, radius):
    rng = np.random.default_rng(7)
    mask = random_blob(rng, (31, 27))
    for fn in (dilate_mask, erode_mask, open_mask, close_mask):
        ref = fn(mask, radius, spacing, method="reference")
        for method in ("rows", "edt"):
            assert np.array_equal(fn(mask, radius, spacing, method=method), ref)


def test_closing_matches_scikit_image():
    morphology = pytest.importorskip("skimage.morphology")
    if not hasattr(morphology, "binary_closing"):
        pytest.skip("scikit-image without binary_closing")
    rng = np.random.default_rng(3)
    mask = random_blob(rng, (12, 30, 30))
    for radius in (1.0, 3.0, 4.2):
        fp = ellipsoid_footprint(radius, CT_SPACING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            ref_close = morphology.binary_closing(mask, fp)
            ref_open = morphology.binary_opening(mask, fp)
        np.testing.assert_array_equal(close_mask(mask, radius, CT_SPACING), ref_close)
        np.testing.assert_array_equal(open_mask(mask, radius, CT_SPACING), ref_open)


# --- properties -----------------------------------------------------------------------------

masks = arrays(bool, st.tuples(st.integers(3, 7), st.integers(3, 9), st.integers(3, 9)))


@settings(max_examples=25, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(
    mask=masks,
    radius=st.sampled_from([0.5, 1.0, 1.7, 2.5, 3.2]),
    spacing=st.sampled_from([(1.0, 1.0, 1.0), CT_SPACING, (1.2, 0.6, 0.9)]),
)
def test_open_close_are_ordered_and_idempotent(mask, radius, spacing):
    labels = mask.astype(np.uint8)
    opened = open_label(labels, 0, radius, spacing)
    closed = close_label(labels, 0, radius, spacing)
    assert not np.any((opened == 1) & ~mask)
    assert not np.any(mask & (closed != 1))
    np.testing.assert_array_equal(open_label(opened, 0, radius, spacing), opened)
    np.testing.assert_array_equal(close_label(closed, 0, radius, spacing), closed)


# --- label safety, modes --------------------------------------------------------------------

def two_labels():
    labels = np.zeros((6, 20, 20), np.int32)
    labels[2:4, 4:10, 4:10] = 1
    labels[2:4, 11:16, 4:10] = 2
    labels[0, 0, 0] = 7
    return labels


def test_grow_does_not_overwrite_other_labels_unless_asked():
    labels = two_labels()
    before = labels.copy()
    grown = grow_label(labels, 1, 2.0, CT_SPACING)
    np.testing.assert_array_equal(labels, before)  # input untouched
    assert grown is not labels
    for other in (2, 7):
        np.testing.assert_array_equal(grown == other, before == other)
    assert (grown == 1).sum() > (before == 1).sum()
    over = grow_label(labels, 1, 2.0, CT_SPACING, overwrite=True)
    assert (over == 2).sum() < (before == 2).sum()
    np.testing.assert_array_equal(over == 7, before == 7)


@pytest.mark.parametrize("fn", [shrink_label, open_label])
def test_removing_operations_only_touch_the_label(fn):
    labels = two_labels()
    out = fn(labels, 1, 1.6, CT_SPACING)
    changed = out != labels
    assert changed.any()
    assert np.all(labels[changed] == 1) and np.all(out[changed] == 0)


def test_grow_all_labels_goes_to_the_nearest():
    labels = np.zeros((1, 3, 11), np.uint8)
    labels[0, 1, 0] = 1
    labels[0, 1, 10] = 2
    out = grow_label(labels, None, 4.0, (1.0, 1.0, 1.0))
    np.testing.assert_array_equal(out[0, 1], [1, 1, 1, 1, 1, 0, 2, 2, 2, 2, 2])


def test_single_slice_and_per_slice_modes():
    labels = np.zeros((5, 15, 15), np.uint8)
    labels[1:4, 5:10, 5:10] = 1
    # current slice 2 along axis 0: only that slice changes, 2D disc of radius 2 mm in-plane
    out = grow_label(labels, 1, 2.0, (2.5, 1.0, 1.0), slice_index=2)
    np.testing.assert_array_equal(np.delete(out, 2, axis=0), np.delete(labels, 2, axis=0))
    expected = dilate_mask(labels[2] == 1, 2.0, (1.0, 1.0))
    np.testing.assert_array_equal(out[2] == 1, expected)
    # a sagittal slice (axis 2) uses the (z, y) spacing
    sag = grow_label(labels, 1, 2.5, (2.5, 1.0, 1.0), axis=2, slice_index=7)
    np.testing.assert_array_equal(sag[:, :, 7] == 1,
                                  dilate_mask(labels[:, :, 7] == 1, 2.5, (2.5, 1.0)))
    np.testing.assert_array_equal(np.delete(sag, 7, axis=2), np.delete(labels, 7, axis=2))
    # every slice along axis 0: nothing grows across slices
    per = grow_label(labels, 1, 3.0, (1.0, 1.0, 1.0), axis=0)
    assert not per[0].any() and not per[4].any()
    for k in (1, 2, 3):
        np.testing.assert_array_equal(per[k] == 1, dilate_mask(labels[k] == 1, 3.0, (1.0, 1.0)))


def test_smooth_removes_spike_and_fills_dent():
    labels = np.zeros((1, 21, 21), np.uint8)
    labels[0, 5:16, 5:16] = 1
    labels[0, 10, 16:19] = 1  # thin spike
    labels[0, 10, 5] = 0  # one-voxel dent
    out = smooth_label(labels, 1, 1.5, (1.0, 1.0, 1.0))
    assert out[0, 10, 17] == 0 and out[0, 10, 5] == 1
    assert out[0, 10, 10] == 1
    everyone = smooth_label(labels, None, 1.5, (1.0, 1.0, 1.0))
    np.testing.assert_array_equal(everyone, out)


def test_hollow_shell_thickness():
    labels = np.zeros((1, 20, 20), np.uint8)
    labels[0, 5:15, 5:15] = 1
    inside = hollow_label(labels, 1, 2.0, (1.0, 1.0, 1.0))
    # the 10x10 square keeps a 2-voxel rim: 100 - 6*6
    assert (inside == 1).sum() == 100 - 36
    assert inside[0, 10, 10] == 0 and inside[0, 5, 10] == 1 and inside[0, 6, 10] == 1
    outside = hollow_label(labels, 1, 1.0, (1.0, 1.0, 1.0), side="outside")
    assert (outside == 1).sum() == 12 * 12 - 4 - 100
    medial = hollow_label(labels, 1, 2.0, (1.0, 1.0, 1.0), side="medial")
    assert medial[0, 4, 10] == 1 and medial[0, 5, 10] == 1 and medial[0, 10, 10] == 0


# --- errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "call, message",
    [
        (lambda L: grow_label(L, 1, 2.0, (1.0, 1.0)), "spacing"),
        (lambda L: grow_label(L, 1, 2.0, (1.0, 0.0, 1.0)), "positive"),
        (lambda L: grow_label(L, 5, 2.0, (1.0, 1.0, 1.0)), "not present"),
        (lambda L: grow_label(L, 1, -1.0, (1.0, 1.0, 1.0)), "radius"),
        (lambda L: grow_label(L[None], 1, 1.0, (1.0,) * 4), "3D"),
        (lambda L: grow_label(L.astype(float), 1, 1.0, (1.0,) * 3), "integer"),
        (lambda L: grow_label(L, 1, 1.0, (1.0,) * 3, slice_index=99), "outside"),
        (lambda L: grow_label(L, 1, 1.0, (1.0,) * 3, slice_index=0), "slice 0"),
        (lambda L: close_label(L, 1, 1.0, (1.0,) * 3, method="magic"), "method"),
        (lambda L: hollow_label(L, 1, 1.0, (1.0,) * 3, side="up"), "side"),
    ],
)
def test_clear_errors(call, message):
    labels = np.zeros((4, 6, 6), np.uint8)
    labels[1:3, 2:4, 2:4] = 1
    with pytest.raises(EditingError, match=message):
        call(labels)
    assert issubclass(EditingError, ValueError)


def test_auto_switches_to_distance_transform_for_huge_radii_with_same_result():
    from napari_medseg.editing._structuring import _pick

    small = ellipsoid_footprint(3.0, CT_SPACING)
    huge = ellipsoid_footprint(25.0, (0.5, 0.5, 0.5))
    assert _pick("auto", small, 3) == "rows"
    assert _pick("auto", huge, 3) == "edt"
    rng = np.random.default_rng(11)
    mask = random_blob(rng, (12, 40, 40), level=0.6)
    for fn in (dilate_mask, close_mask):
        np.testing.assert_array_equal(fn(mask, 25.0, (0.5, 0.5, 0.5)),
                                      fn(mask, 25.0, (0.5, 0.5, 0.5), method="rows"))


def test_slice_options_need_a_3d_label_map():
    labels = np.zeros((6, 6), np.uint8)
    labels[2:4, 2:4] = 1
    with pytest.raises(EditingError, match="3D"):
        grow_label(labels, 1, 1.0, (1.0, 1.0), axis=0)
    np.testing.assert_array_equal(grow_label(labels, 1, 1.0, (1.0, 1.0)) == 1,
                                  dilate_mask(labels == 1, 1.0, (1.0, 1.0)))


def test_all_labels_mode_leaves_unannotated_voxels_alone():
    labels = np.zeros((1, 5, 12), np.uint8)
    labels[0, 2, 2] = 1
    labels[0, :, 8:] = 255  # IGNORE_LABEL: not annotated
    grown = grow_label(labels, None, 1.0, (1.0, 1.0, 1.0))
    np.testing.assert_array_equal(grown == 255, labels == 255)
    assert (grown == 1).sum() == 5 and grown[0, 2, 3] == 1
    shrunk = shrink_label(labels, 0, 1.0, (1.0, 1.0, 1.0))
    np.testing.assert_array_equal(shrunk == 255, labels == 255)
    assert not np.any(shrunk == 1)


def test_neighbour_counts_fft_equals_direct(monkeypatch):
    from napari_medseg.editing import morphology

    rng = np.random.default_rng(5)
    mask = random_blob(rng, (9, 23, 21))
    mask[:, :, 0] = True  # border replication matters
    fp = ellipsoid_footprint(3.0, (1.0, 0.8, 0.8))
    assert fp.sum() > morphology.FFT_COUNT_THRESHOLD
    direct = ndi.correlate(mask.astype(np.int32), fp.astype(np.int32), mode="nearest")
    np.testing.assert_array_equal(morphology.neighbour_counts(mask, fp), direct)
    labels = mask.astype(np.uint8)
    fast = smooth_label(labels, 1, 3.0, (1.0, 0.8, 0.8))
    monkeypatch.setattr(morphology, "FFT_COUNT_THRESHOLD", 10**9)
    np.testing.assert_array_equal(smooth_label(labels, 1, 3.0, (1.0, 0.8, 0.8)), fast)
