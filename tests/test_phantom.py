"""The synthetic CT phantom: anatomy, HU values, labels, determinism, speed."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import ndimage

from napari_medseg.phantom import PHANTOM_CLASSES, PHANTOM_COLOURS, PHANTOM_HU, make_ct_phantom


@pytest.fixture(scope="module")
def phantom():
    return make_ct_phantom()


def test_shapes_types_and_geometry(phantom) -> None:
    image, labels = phantom
    assert image.shape == labels.shape == (48, 96, 96)
    assert image.array.dtype == np.int16 and labels.array.dtype == np.uint8
    assert image.spacing == labels.spacing == (2.5, 0.8, 0.8)
    assert np.array_equal(image.affine, labels.affine)
    assert image.modality == "CT" and labels.metadata["is_labels"] is True
    np.testing.assert_allclose(np.abs(np.linalg.det(image.affine[:3, :3])), 2.5 * 0.8 * 0.8)
    # centred on the world origin
    centre = image.affine @ np.r_[(np.array(image.shape) - 1) / 2, 1]
    np.testing.assert_allclose(centre[:3], 0, atol=1e-9)


def test_every_class_is_present_with_colour(phantom) -> None:
    _, labels = phantom
    present = set(np.unique(labels.array)) - {0}
    assert present == set(PHANTOM_CLASSES)
    assert set(PHANTOM_COLOURS) == set(PHANTOM_CLASSES)
    assert labels.metadata["classes"] == {str(k): v for k, v in PHANTOM_CLASSES.items()}


@pytest.mark.parametrize(
    ("label", "tissue", "tol"),
    [(1, "liver", 12), (2, "kidney", 15), (3, "spleen", 15), (4, "lung", 25), (5, "bone", 60)],
)
def test_organ_intensities_are_hu_like(phantom, label: int, tissue: str, tol: float) -> None:
    image, labels = phantom
    core = ndimage.binary_erosion(labels.array == label, iterations=1)
    assert core.sum() > 50
    assert abs(np.median(image.array[core]) - PHANTOM_HU[tissue]) < tol


def test_air_outside_and_fat_ring_inside_the_body(phantom) -> None:
    image, labels = phantom
    corner = image.array[:, :8, :8]
    assert abs(np.median(corner) + 1000) < 10
    assert 15 < corner.std() < 25  # noise_hu=20
    # walking in from the left edge at the mid slice: air, then fat, then soft tissue
    row = image.array[24, 48, :48].astype(float)
    assert row[0] < -900
    body = np.nonzero(row > -500)[0][0]
    assert np.min(ndimage.uniform_filter1d(row, 3)[body : body + 6]) < -50
    assert np.max(image.array) > 500


def test_deterministic_given_seed_and_labels_independent_of_noise() -> None:
    a_img, a_lab = make_ct_phantom(seed=3)
    b_img, b_lab = make_ct_phantom(seed=3)
    c_img, c_lab = make_ct_phantom(seed=4)
    assert np.array_equal(a_img.array, b_img.array)
    assert not np.array_equal(a_img.array, c_img.array)
    assert np.array_equal(a_lab.array, c_lab.array)


def test_clean_phantom_without_noise() -> None:
    image, labels = make_ct_phantom(noise_hu=0)
    core = ndimage.binary_erosion(labels.array == 1, iterations=2)
    assert np.all(np.abs(image.array[core] - PHANTOM_HU["liver"]) <= 1)


def test_fast_and_scales_to_small_shapes() -> None:
    start = time.perf_counter()
    make_ct_phantom()
    assert time.perf_counter() - start < 0.5
    image, labels = make_ct_phantom(shape=(16, 32, 32), spacing=(5.0, 2.0, 2.0))
    assert image.shape == (16, 32, 32)
    assert {1, 4, 5} <= set(np.unique(labels.array))


@pytest.mark.parametrize("kwargs", [{"shape": (4, 32, 32)}, {"shape": (32, 32)}, {"noise_hu": -1}])
def test_bad_arguments(kwargs) -> None:
    with pytest.raises(ValueError):
        make_ct_phantom(**kwargs)
