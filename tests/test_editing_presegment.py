"""Classical pre-segmentation on small synthetic images with known classes."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.editing import (
    EditingError,
    constrain_paint,
    gmm_segment,
    intensity_mask,
    kmeans_segment,
    region_grow,
    threshold_segment,
    watershed_segment,
)


def three_tissues(noise=5.0, seed=0):
    """(8, 24, 24) image: background 0, 'fat' -100 block, 'bone' 400 block, noise."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((8, 24, 24), np.uint8)
    truth[:, 2:10, 2:10] = 1  # -100
    truth[:, 14:22, 14:22] = 3  # 400
    truth[truth == 0] = 2  # 0
    means = {1: -100.0, 2: 0.0, 3: 400.0}
    img = np.vectorize(means.get)(truth).astype(np.float32)
    return img + rng.normal(0, noise, img.shape).astype(np.float32), truth


def test_otsu_window_and_multiotsu():
    img, truth = three_tissues(noise=3.0)
    two = np.where(np.arange(24) < 10, 0.0, 400.0) + np.random.default_rng(2).normal(0, 5, (6, 24, 24))
    otsu = threshold_segment(two, "otsu")
    assert otsu.dtype == np.uint8
    np.testing.assert_array_equal(otsu == 1, np.broadcast_to(np.arange(24) >= 10, two.shape))
    # inside a mask: bone (400) against fat (-100) only; outside the mask stays 0
    from skimage.filters import threshold_otsu

    mask = truth != 2
    masked = threshold_segment(img, "otsu", mask=mask)
    np.testing.assert_array_equal(masked == 1, (img > threshold_otsu(img[mask])) & mask)
    assert np.mean((masked == 1) == (truth == 3)) > 0.999
    window = threshold_segment(img, "window", low=-150, high=-50)
    np.testing.assert_array_equal(window == 1, truth == 1)
    multi = threshold_segment(img, "multiotsu", n_classes=3)
    # multi-Otsu thresholds sit at histogram bin centres in the gaps: a voxel or two may flip
    assert np.mean(multi == truth) > 0.999
    means = [img[multi == c].mean() for c in (1, 2, 3)]
    assert means == sorted(means)
    with pytest.raises(EditingError, match="low"):
        threshold_segment(img, "window")
    with pytest.raises(EditingError, match="method"):
        threshold_segment(img, "magic")


@pytest.mark.parametrize("segment", [kmeans_segment, gmm_segment])
def test_clustering_orders_classes_by_intensity(segment):
    img, truth = three_tissues()
    out = segment(img, 3, seed=1)
    np.testing.assert_array_equal(out, truth)
    mask = truth != 3
    masked = segment(img, 2, mask=mask, seed=1)
    assert np.all(masked[~mask] == 0)
    np.testing.assert_array_equal(masked[mask], truth[mask])
    with pytest.raises(EditingError, match="classes"):
        segment(img, 1)


def test_region_grow_stays_in_the_connected_region():
    img, truth = three_tissues(noise=0.0)
    img[:, 2:10, 12:13] = -100  # touching bridge? no: column 12 is not adjacent to block 2:10
    out = region_grow(img, (4, 5, 5), tolerance=20)
    np.testing.assert_array_equal(out == 1, truth == 1)
    bridge = img.copy()
    bridge[:, 5, 10:12] = -100
    grown = region_grow(bridge, (4, 5, 5), tolerance=20)
    assert grown[0, 5, 12] == 1 and grown.sum() > out.sum()
    with pytest.raises(EditingError, match="outside"):
        region_grow(img, (9, 0, 0), 1)


def test_watershed_from_markers_splits_at_the_edge():
    img = np.zeros((1, 20, 40), np.float32)
    img[..., 20:] = 100.0
    markers = np.zeros(img.shape, np.int32)
    markers[0, 10, 2] = 1
    markers[0, 10, 37] = 2
    out = watershed_segment(img, markers)
    assert np.all(out[..., :20] == 1) and np.all(out[..., 20:] == 2)
    with pytest.raises(EditingError, match="marker"):
        watershed_segment(img, np.zeros_like(markers))


def test_intensity_constrained_paint():
    img = np.linspace(-200, 200, 5 * 5, dtype=np.float32).reshape(1, 5, 5)
    old = np.zeros((1, 5, 5), np.uint8)
    old[0, 0, 0] = 2
    new = np.ones_like(old)  # a stroke over everything
    out = constrain_paint(old, new, img, -50, 50)
    np.testing.assert_array_equal(out == 1, intensity_mask(img, -50, 50))
    assert out[0, 0, 0] == 2
    with pytest.raises(EditingError, match="empty"):
        intensity_mask(img, 5, -5)


# --- the air around the body is not a tissue class (issue 13, item 8) -------------------------


def _frame_air(hu: np.ndarray, width: int = 4) -> np.ndarray:
    """Air (< -900 HU) in a frame along the slice borders: surely outside the body."""
    frame = np.zeros(hu.shape, bool)
    frame[:, :width] = frame[:, -width:] = True
    frame[:, :, :width] = frame[:, :, -width:] = True
    return frame & (hu < -900)


@pytest.mark.parametrize("segment", [kmeans_segment, gmm_segment])
def test_clustering_leaves_the_air_around_the_phantom_at_zero(segment):
    from napari_medseg.phantom import make_ct_phantom

    image, truth = make_ct_phantom((16, 64, 64))
    hu = image.array
    air = hu < -900
    out = segment(hu, 3, modality="CT")
    body = np.zeros(hu.shape, bool)
    body[hu > -500] = True
    assert not out[air & (truth.array == 0) & ~(hu > -500)].any()  # outside air: 0
    assert (out[body] > 0).all()  # every tissue voxel is classified
    lungs = truth.array == 4  # -800 HU, inside the body: a class, not background
    assert (out[lungs] > 0).all()
    # before: the air became a class (the darkest) and took one of the three
    old = segment(hu, 3, modality="CT", exclude_air=False)
    assert (old[air & (truth.array == 0)] > 0).all()


@pytest.mark.parametrize("segment", [kmeans_segment, gmm_segment])
def test_clustering_excludes_outside_air_on_a_real_ct(segment, samples_dir):
    from napari_medseg.editing import outside_air_mask
    from napari_medseg.io import read_nifti

    ct = read_nifti(samples_dir / "ct_abdomen_totalsegmentator" / "example_ct.nii.gz")
    hu = ct.array
    out = segment(hu, 3, modality=ct.modality)
    outside = _frame_air(hu)
    assert outside.sum() > 100_000
    assert not out[outside].any()
    assert (out[hu > -500] > 0).all()
    inside_air = (hu < -500) & ~outside_air_mask(hu, "CT")  # lungs, bowel gas
    assert inside_air.sum() > 1000 and (out[inside_air] > 0).all()
    # without the exclusion the outside air is the darkest class
    assert (segment(hu, 3, exclude_air=False)[outside] > 0).all()


def test_outside_air_on_a_cropped_mr_excludes_almost_nothing(hippo_cases):
    import nibabel as nib

    from napari_medseg.editing import air_threshold, outside_air_mask

    image_path, _ = hippo_cases(1)[0]
    img = np.asarray(nib.load(str(image_path)).dataobj).transpose(2, 1, 0)
    air = outside_air_mask(img, "MR")
    assert air.mean() < 0.03  # a crop inside the head: at most a few dark border voxels
    assert not air.any() or img[air].max() <= np.percentile(img, 10)
    assert air_threshold(img, "MR") < np.percentile(img, 5)
    out = kmeans_segment(img, 3, modality="MR")
    assert set(np.unique(out)) <= {0, 1, 2, 3} and (out > 0).mean() > 0.97
    for c in (1, 2, 3):
        assert (out == c).sum() > 1000


def test_outside_air_ignores_enclosed_air_and_takes_modality_into_account():
    from napari_medseg.editing import air_threshold, outside_air_mask

    hu = np.full((3, 20, 20), -1000.0, np.float32)
    hu[:, 3:17, 3:17] = 40.0  # body
    hu[:, 7:12, 7:12] = -1000.0  # air inside (lung, bowel gas)
    air = outside_air_mask(hu)  # unknown modality: recognised as CT by -1000 HU
    assert air[:, 0, 0].all() and not air[:, 9, 9].any() and not air[:, 5, 5].any()
    assert air.sum() == 3 * (400 - 196)
    assert air_threshold(hu, "CT") == -500.0
    assert air_threshold(hu + 1000.0, "MR") == pytest.approx(104.0)
    with pytest.raises(EditingError, match="only air"):
        kmeans_segment(np.full((2, 8, 8), -1000.0), 2, modality="CT")
