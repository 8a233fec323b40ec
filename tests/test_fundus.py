"""Fundus field-of-view masks and the CHASE_DB1 dataset in the nnU-Net v2 layout."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_medseg.dataset import DatasetError, load_msd_dataset, read_roi_mask, read_splits
from napari_medseg.dataset.fundus import chase_db1_dataset, fundus_fov_mask
from napari_medseg.events import IGNORE_LABEL
from napari_medseg.io import Volume
from napari_medseg.io.picture import read_picture

CHASE = Path(__file__).resolve().parents[2] / "shared" / "data" / "CHASE_DB1"


def _synthetic_fundus(shape=(240, 260), radius=100, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """A bright disc with JPEG-like noise on a near-black surround, and the true disc."""
    rng = np.random.default_rng(seed)
    y, x = np.indices(shape)
    disc = (y - shape[0] / 2) ** 2 + (x - shape[1] / 2) ** 2 < radius ** 2
    rgb = rng.integers(0, 8, (*shape, 3)).astype(np.float32)
    rgb[disc] = (150, 70, 30)
    rgb[disc] += rng.normal(0, 10, (int(disc.sum()), 3))
    return np.clip(rgb, 0, 255).astype(np.uint8), disc


def test_synthetic_disc_is_found_and_eroded():
    rgb, disc = _synthetic_fundus()
    mask = fundus_fov_mask(rgb)
    assert mask.dtype == bool and mask.shape == disc.shape
    assert not mask[~disc].any()  # nothing of the black surround
    inner = ndi.binary_erosion(disc, iterations=5)
    assert mask[inner].all()  # the whole disc but its rim
    lost = disc & ~mask
    assert 0 < lost.sum() < 0.05 * disc.sum()  # the rim is dropped, a few pixels wide
    no_erosion = fundus_fov_mask(rgb, erode_px=0)
    assert no_erosion.sum() > mask.sum()
    assert no_erosion[disc].all()  # the thresholded edge lies within 2 px of the true one
    assert not no_erosion[~ndi.binary_dilation(disc, iterations=2)].any()


def test_dark_lesion_at_the_rim_and_a_separate_bright_label():
    rgb, disc = _synthetic_fundus()
    y, x = np.indices(disc.shape)
    lesion = (y - 120) ** 2 + (x - 35) ** 2 < 15 ** 2  # dark spot on the left rim
    rgb[lesion & disc] = 3
    rgb[2:12, 2:40] = 255  # a burnt-in white caption in the corner
    mask = fundus_fov_mask(rgb)
    assert mask[120, 40]  # the convex hull closes the notch the lesion made
    assert not mask[5, 10] and not mask[0, 0]  # the caption is not the field of view
    labelled, count = ndi.label(mask)
    assert count == 1


def test_inputs_volume_grey_channels_and_threshold():
    rgb, disc = _synthetic_fundus(seed=1)
    expected = fundus_fov_mask(rgb)
    np.testing.assert_array_equal(fundus_fov_mask(Volume(rgb, (1.0, 1.0), rgb=True)), expected)
    planes = [rgb[..., c] for c in range(3)]
    np.testing.assert_array_equal(fundus_fov_mask(planes), expected)
    np.testing.assert_array_equal(fundus_fov_mask([Volume(p) for p in planes]), expected)
    grey = fundus_fov_mask(rgb.max(axis=-1))  # the brightest channel is what counts
    np.testing.assert_array_equal(grey, expected)
    strict = fundus_fov_mask(rgb, threshold=140.0)
    assert strict.sum() < expected.sum()
    with pytest.raises(ValueError, match="brighter than the threshold"):
        fundus_fov_mask(rgb, threshold=1000.0)


def test_no_border_black_and_3d():
    bright = np.full((50, 60, 3), 120, np.uint8)
    assert fundus_fov_mask(bright).all()
    with pytest.raises(ValueError, match="black"):
        fundus_fov_mask(np.zeros((50, 60, 3), np.uint8))
    with pytest.raises(ValueError, match="2D"):
        fundus_fov_mask(np.zeros((4, 50, 60), np.uint8))


# ------------------------------------------------------------------ the real CHASE_DB1 copy


@pytest.fixture(scope="module")
def chase_dir(tmp_path_factory) -> Path:
    if not (CHASE / "images").is_dir():
        pytest.skip(f"CHASE_DB1 not found at {CHASE}")
    return chase_db1_dataset(tmp_path_factory.mktemp("chase") / "Dataset_CHASE_DB1", CHASE)


def test_chase_layout_files(chase_dir):
    meta = json.loads((chase_dir / "dataset.json").read_text())
    assert meta["file_ending"] == ".jpg" and meta["labels"] == {"background": 0, "vessel": 1}
    assert meta["channel_names"] == {"0": "red", "1": "green", "2": "blue"}
    assert meta["numTraining"] == 28
    images = sorted(p.name for p in (chase_dir / "imagesTr").iterdir())
    assert len(images) == 28 and images[0] == "Image_01L_0000.jpg"
    assert len(list((chase_dir / "labelsTr").glob("*.png"))) == 28
    assert len(list((chase_dir / "masksTr").glob("*.png"))) == 28
    # copied byte for byte
    digest = hashlib.sha256((chase_dir / "imagesTr" / "Image_07R_0000.jpg").read_bytes())
    assert digest.digest() == hashlib.sha256((CHASE / "images" / "Image_07R.jpg").read_bytes()) \
        .digest()
    train, test = read_splits(chase_dir / "splits_final.json")
    assert len(train) == 20 and len(test) == 8 and not set(train) & set(test)
    assert {int(c[6:8]) for c in train} == set(range(1, 11))
    assert test == [f"Image_{n}{e}" for n in range(11, 15) for e in "LR"]
    assert not [p for p in chase_dir.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_chase_fov_masks_cover_the_retina(chase_dir):
    for mask_path in sorted((chase_dir / "masksTr").iterdir()):
        cid = mask_path.name[: -len(".png")]
        fov = read_roi_mask(mask_path)
        vessels = read_picture(CHASE / "masks" / f"{cid}_1stHO.png").array > 0
        assert fov.shape == (960, 999)
        assert 0.60 <= fov.mean() <= 0.85, cid
        assert fov[vessels].mean() >= 0.99, cid  # (nearly) every vessel pixel is inside
        assert not fov[0, 0] and not fov[0, -1] and not fov[-1, 0] and not fov[-1, -1], cid
        _, count = ndi.label(fov)
        assert count == 1, cid
        filled = ndi.binary_fill_holes(fov)
        assert filled.sum() == fov.sum(), cid  # no holes
        # convex-ish: the blob fills most of its bounding box like a disc does (pi/4)
        rows, cols = np.nonzero(fov)
        box = (np.ptp(rows) + 1) * (np.ptp(cols) + 1)
        assert fov.sum() / box > 0.75, cid


def test_chase_loads_as_three_channels_with_fov(chase_dir):
    ds = load_msd_dataset(chase_dir, ["Image_01L", "Image_11R"])
    assert ds.channel_names == ["red", "green", "blue"]
    assert ds.label_names == {0: "background", 1: "vessel"} and ds.num_classes == 2
    for case in ds.cases:
        assert len(case.channels) == 3
        assert all(ch.shape == (960, 999) and not ch.rgb for ch in case.channels)
        assert set(np.unique(case.labels).tolist()) == {0, 1}
        assert 0.05 < case.labels.mean() < 0.10  # vessels are 6.5-8 % of the picture
        assert case.roi is not None and case.roi.shape == (960, 999)
        lab = case.training_labels()
        assert np.all(lab[~case.roi] == IGNORE_LABEL)
    photo = read_picture(CHASE / "images" / "Image_11R.jpg").array
    np.testing.assert_array_equal(ds.cases[1].channels[1].array, photo[..., 1])  # green


def test_chase_png_variant_and_errors(tmp_path):
    if not (CHASE / "images").is_dir():
        pytest.skip(f"CHASE_DB1 not found at {CHASE}")
    src = tmp_path / "src"  # a two-photo copy keeps the test short
    for sub, pattern in (("images", "Image_{}.jpg"), ("masks", "Image_{}_1stHO.png")):
        (src / sub).mkdir(parents=True)
        for cid in ("01L", "14R"):
            name = pattern.format(cid)
            (src / sub / name).write_bytes((CHASE / sub / name).read_bytes())
    out = chase_db1_dataset(tmp_path / "png", src, split=(["Image_01L"], ["Image_14R"]),
                            fov=False, file_ending=".png")
    assert sorted(p.name for p in (out / "imagesTr").iterdir()) == ["Image_01L_0000.png",
                                                                    "Image_14R_0000.png"]
    assert not (out / "masksTr").exists()
    assert read_splits(out / "splits_final.json") == (["Image_01L"], ["Image_14R"])
    case = load_msd_dataset(out, ["Image_01L"]).cases[0]
    photo = read_picture(CHASE / "images" / "Image_01L.jpg").array
    np.testing.assert_array_equal(case.channels[0].array, photo[..., 0])
    assert case.roi is None
    with pytest.raises(DatasetError, match="not an empty folder"):
        chase_db1_dataset(out, src)
    (src / "masks" / "Image_14R_1stHO.png").unlink()
    with pytest.raises(DatasetError, match="vessel masks missing.*Image_14R"):
        chase_db1_dataset(tmp_path / "w", src)
    with pytest.raises(DatasetError, match="No CHASE_DB1 copy"):
        chase_db1_dataset(tmp_path / "x", tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="not in CHASE_DB1"):
        chase_db1_dataset(tmp_path / "y", CHASE, split=(["Image_99L"], []))
    with pytest.raises(DatasetError, match="Unknown CHASE_DB1 split"):
        chase_db1_dataset(tmp_path / "z", CHASE, split="random")
    assert not [p for p in tmp_path.iterdir() if p.name not in ("src", "png")]
