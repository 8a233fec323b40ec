"""Synthetic breast ultrasound: determinism, lesion share, speckle statistics, dataset layout."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from napari_medseg.phantom import ultrasound_dataset, ultrasound_phantom


def test_deterministic_by_seed() -> None:
    a_img, a_lab = ultrasound_phantom(seed=5)
    b_img, b_lab = ultrasound_phantom(seed=5)
    c_img, c_lab = ultrasound_phantom(seed=6)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab)
    assert not np.array_equal(a_img, c_img)
    assert not np.array_equal(a_lab, c_lab)
    assert a_img.dtype == np.uint8 and a_lab.dtype == np.uint8
    assert a_img.shape == a_lab.shape == (256, 256)


@pytest.mark.parametrize("sector", [False, True])
def test_lesions_cover_2_to_30_percent(sector: bool) -> None:
    fractions = []
    for seed in range(12):
        _, lab = ultrasound_phantom((128, 160), n_lesions=1 + seed % 3, seed=seed, sector=sector)
        assert set(np.unique(lab)) == {0, 1}
        fractions.append(lab.mean())
    assert 0.02 <= min(fractions) and max(fractions) <= 0.30
    assert max(fractions) - min(fractions) > 0.05  # sizes vary


def test_no_lesion_and_bad_arguments() -> None:
    image, lab = ultrasound_phantom((64, 64), n_lesions=0)
    assert not lab.any() and image.std() > 10
    with pytest.raises(ValueError, match="32"):
        ultrasound_phantom((16, 64))
    with pytest.raises(ValueError, match="n_lesions"):
        ultrasound_phantom(n_lesions=-1)


def test_speckle_and_dark_lesion() -> None:
    for seed in range(6):
        image, lab = ultrasound_phantom(seed=seed)
        img = image.astype(float)
        lesion = lab == 1
        ring = ndimage.binary_dilation(lesion, iterations=12) & ~ndimage.binary_dilation(
            lesion, iterations=3)
        # hypoechoic: clearly darker than the tissue around it
        assert img[lesion].mean() < 0.75 * img[ring].mean()
        # speckle: grainy (not constant, not smooth) inside homogeneous tissue and lesion,
        # with a coefficient of variation typical of log-compressed speckle
        inner = ndimage.binary_erosion(lesion, iterations=3)
        assert img[inner].std() > 8
        cv = img[ring].std() / img[ring].mean()
        assert 0.15 < cv < 0.8
        # neighbouring pixels are correlated (smoothed scatterers), far ones are not
        tissue = img[150:230, 20:240] - img[150:230, 20:240].mean()
        near = np.mean(tissue[:, :-1] * tissue[:, 1:]) / tissue.var()
        far = np.mean(tissue[:, :-20] * tissue[:, 20:]) / tissue.var()
        assert near > 0.3 and abs(far) < near / 2


def test_sector_blanks_outside_the_fan() -> None:
    image, lab = ultrasound_phantom(seed=1, sector=True)
    assert image[0, 0] == 0 and image[0, -1] == 0 and lab[:, :5].sum() == 0
    assert image[100:160, 100:160].mean() > 20 and np.mean(image[100:160, 100:160] == 0) < 0.2


def test_dataset_layout(tmp_path) -> None:
    from PIL import Image

    root = ultrasound_dataset(tmp_path / "us", n_cases=4, seed=3, shape=(64, 96))
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["file_ending"] == ".png"
    assert meta["channel_names"] == {"0": "US"}
    assert meta["labels"] == {"background": 0, "lesion": 1}
    assert meta["numTraining"] == 4
    images = sorted(p.name for p in (root / "imagesTr").iterdir())
    labels = sorted(p.name for p in (root / "labelsTr").iterdir())
    assert images == [f"US_{i:03d}_0000.png" for i in range(4)]
    assert labels == [f"US_{i:03d}.png" for i in range(4)]
    for i in range(4):
        img = np.asarray(Image.open(root / "imagesTr" / f"US_{i:03d}_0000.png"))
        lab = np.asarray(Image.open(root / "labelsTr" / f"US_{i:03d}.png"))
        expected_img, expected_lab = ultrasound_phantom((64, 96), 2 if i == 3 else 1, 3 + i)
        assert img.dtype == np.uint8 and np.array_equal(img, expected_img)
        assert np.array_equal(lab, expected_lab)
    with pytest.raises(ValueError, match="already holds"):
        ultrasound_dataset(root, n_cases=1)


def test_dataset_reads_as_msd(tmp_path) -> None:
    """The package's dataset reader takes the PNG dataset (once it reads pictures)."""
    msd = pytest.importorskip("napari_medseg.dataset.msd")
    root = ultrasound_dataset(tmp_path / "us", n_cases=2, shape=(64, 64))
    cases = msd.list_msd_cases(root)
    assert [c[0] for c in cases] == ["US_000", "US_001"]
    image = msd.read_image(cases[0][1][0])
    assert image.shape == (64, 64)
