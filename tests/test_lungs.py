""""Lungs (CT)" pre-segmentation: phantoms with exact ground truth, a real CT, 2D, errors, speed."""

from __future__ import annotations

import time

import numpy as np
import pytest

from napari_medseg.editing import EditingError, lungs_ct
from napari_medseg.metrics import dice
from napari_medseg.phantom import make_chest_ct_phantom, make_ct_phantom

TS = "ct_abdomen_totalsegmentator"
#: TotalSegmentator "total" classes: right lung lobes and left lung lobes.
RIGHT_LOBES, LEFT_LOBES = (12, 13, 14), (10, 11)


@pytest.fixture(scope="module")
def chest():
    return make_chest_ct_phantom()


def test_chest_phantom_both_lungs_sides_and_vessels(chest) -> None:
    image, labels = chest
    gt = labels.array
    out = lungs_ct(image.array, image.spacing, separate_sides=True, affine=image.affine)
    assert out.dtype == np.uint8 and out.shape == gt.shape
    assert set(np.unique(out)) == {0, 1, 2}
    assert dice(out == 1, gt == 1) > 0.98  # right lung
    assert dice(out == 2, gt == 2) > 0.98  # left lung
    # vessels (soft tissue inside the lungs) are part of the lung mask
    vessels = (image.array > -320) & np.isin(gt, (1, 2))
    assert vessels.sum() > 200
    assert np.mean(out[vessels] > 0) > 0.95
    # the stomach bubble below the left lung is gas, not lung
    assert image.array[3, 59, 87] < -900
    assert not np.any(out[:6] > 0)


def test_airways_excluded_or_kept(chest) -> None:
    image, labels = chest
    airway = labels.array == 3
    without = lungs_ct(image.array, image.spacing, affine=image.affine)
    with_airways = lungs_ct(image.array, image.spacing, exclude_airways=False,
                            affine=image.affine)
    assert np.mean(without[airway] > 0) < 0.2
    assert np.mean(with_airways[airway] > 0) > 0.9
    assert set(np.unique(without)) == {0, 1}
    lungs = np.isin(labels.array, (1, 2))
    assert dice(without > 0, lungs) > 0.98


def test_touching_lungs_are_split_into_right_and_left() -> None:
    image, labels = make_chest_ct_phantom(lungs_touch=True)
    gt = labels.array
    out = lungs_ct(image.array, image.spacing, separate_sides=True, affine=image.affine)
    assert dice(out == 1, gt == 1) > 0.95
    assert dice(out == 2, gt == 2) > 0.95
    single = lungs_ct(image.array, image.spacing, affine=image.affine)
    assert dice(single > 0, np.isin(gt, (1, 2))) > 0.98


def test_sides_follow_the_affine() -> None:
    image, labels = make_chest_ct_phantom(noise_hu=0)
    flipped = image.array[:, :, ::-1]
    affine = image.affine.copy()
    affine[:3, 3] += affine[:3, 2] * (image.shape[2] - 1)
    affine[:3, 2] *= -1
    out = lungs_ct(flipped, image.spacing, separate_sides=True, affine=affine)
    assert dice(out == 1, labels.array[:, :, ::-1] == 1) > 0.98
    # no affine: DICOM convention, columns from the patient's right to left (as the phantom)
    plain = lungs_ct(image.array, image.spacing, separate_sides=True)
    assert dice(plain == 1, labels.array == 1) > 0.98


def test_abdominal_phantom_lungs() -> None:
    image, labels = make_ct_phantom()
    out = lungs_ct(image.array, image.spacing, affine=image.affine)
    assert dice(out > 0, labels.array == 4) > 0.95


def _real_ct(samples_dir):
    from napari_medseg.io import read_volume

    folder = samples_dir / TS
    ct = read_volume(folder / "example_ct.nii.gz")
    seg = read_volume(folder / "example_seg.nii.gz").array  # on the top 30 slices
    ref = np.zeros(ct.shape, dtype=np.uint8)
    top = ct.shape[0] - seg.shape[0]
    ref[top:][np.isin(seg, RIGHT_LOBES)] = 1
    ref[top:][np.isin(seg, LEFT_LOBES)] = 2
    return ct, ref


def test_real_ct_lung_bases(samples_dir) -> None:
    """Lung bases of a real abdominal CT, against TotalSegmentator's lobes (a model output)."""
    ct, ref = _real_ct(samples_dir)
    start = time.perf_counter()
    out = lungs_ct(ct.array, ct.spacing, separate_sides=True, affine=ct.affine)
    assert time.perf_counter() - start < 5.0
    assert dice(out > 0, ref > 0) > 0.9
    assert dice(out == 1, ref == 1) > 0.9  # right lung on the patient's right
    assert dice(out == 2, ref == 2) > 0.85
    litres = np.count_nonzero(out) * np.prod(ct.spacing) / 1e6
    assert 0.05 < litres < 0.3  # only the bases are in this field of view
    # the colon gas (larger than these lung bases) is not taken for lung
    with pytest.raises(EditingError, match="No lungs found"):
        lungs_ct(ct.array[:60], ct.spacing, affine=ct.affine)


def test_real_ct_single_slice(samples_dir) -> None:
    ct, ref = _real_ct(samples_dir)
    z = ct.shape[0] - 1
    out = lungs_ct(ct.array[z], ct.spacing[1:], separate_sides=True, affine=ct.affine)
    assert out.shape == ct.shape[1:]
    assert dice(out > 0, ref[z] > 0) > 0.9
    assert dice(out == 1, ref[z] == 1) > 0.9


def test_phantom_single_slice(chest) -> None:
    image, labels = chest
    z = image.shape[0] // 2 + 10
    out = lungs_ct(image.array[z], image.spacing[1:], separate_sides=True)
    assert dice(out == 1, labels.array[z] == 1) > 0.97
    assert dice(out == 2, labels.array[z] == 2) > 0.97


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"modality": "MR"}, "needs a CT"),
        ({"scale": True}, "Hounsfield"),
        ({"no_lungs": True}, "No lungs found"),
    ],
)
def test_clear_errors(chest, kwargs, match) -> None:
    image, _ = chest
    array = image.array
    modality = kwargs.get("modality", "CT")
    if kwargs.get("scale"):
        array = (array.astype(np.float32) + 1024) / 4095  # a normalised image, not HU
    if kwargs.get("no_lungs"):
        array = np.where(array < -320, np.int16(10), array)
        array[:, :5] = -1000  # air around, no air inside
    with pytest.raises(EditingError, match=match) as err:
        lungs_ct(array, image.spacing, modality=modality)
    assert "\n" not in str(err.value)
    assert isinstance(err.value, ValueError)


def test_large_ct_in_seconds() -> None:
    """A 160 x 512 x 512 CT (the analysis runs on a ~2 mm grid): a few seconds."""
    image, labels = make_chest_ct_phantom(shape=(40, 128, 128), spacing=(6.0, 2.5, 2.5))
    big = image.array.repeat(4, 0).repeat(4, 1).repeat(4, 2)
    start = time.perf_counter()
    out = lungs_ct(big, (1.5, 0.625, 0.625))
    assert time.perf_counter() - start < 12.0
    gt = np.isin(labels.array, (1, 2)).repeat(4, 0).repeat(4, 1).repeat(4, 2)
    assert dice(out > 0, gt) > 0.97


def test_real_dicom_ct_lung_bases_and_sides(samples_dir) -> None:
    """Three 512 x 512 DICOM slices through the liver dome: both lung bases, on the right sides."""
    from napari_medseg.io import read_volume

    ct = read_volume(samples_dir / "ct_dicom_seg_dcmqi" / "ct-3slice")
    out = lungs_ct(ct.array, ct.spacing, ct.modality, separate_sides=True, affine=ct.affine)
    assert set(np.unique(out)) == {0, 1, 2}
    columns = np.arange(ct.shape[2])
    right_x = columns[(out == 1).any(axis=(0, 1))].mean()
    left_x = columns[(out == 2).any(axis=(0, 1))].mean()
    assert right_x < ct.shape[2] / 2 < left_x  # DICOM columns run from the patient's right
    for value in (1, 2):
        area_cm2 = np.count_nonzero(out[1] == value) * ct.spacing[1] * ct.spacing[2] / 100
        assert 30 < area_cm2 < 150
    assert np.all(ct.array[out > 0] < 200)  # no bone or contrast taken for lung


def test_slice_above_the_lungs_has_none(samples_dir) -> None:
    from napari_medseg.io import read_volume

    ct = read_volume(samples_dir / "rtstruct" / "dicompyler_breast" / "ct.0.dcm")
    with pytest.raises(EditingError, match="No lungs found"):
        lungs_ct(ct.array, ct.spacing, ct.modality, affine=ct.affine)
