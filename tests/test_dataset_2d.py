"""nnU-Net v2 natural-image datasets: PNG / JPEG / TIFF images, mask values, FOV masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_medseg.dataset import (
    Case,
    DatasetError,
    list_msd_cases,
    load_msd_dataset,
    picture_label_values,
    read_dataset_json,
    read_label_image,
    read_roi_mask,
    write_labels,
    write_msd_dataset,
)
from napari_medseg.events import IGNORE_LABEL
from napari_medseg.io import Volume

SHAPE = (40, 48)
RGB_NAMES = {"0": "R", "1": "G", "2": "B"}
ONE_CLASS = {"background": 0, "vessel": 1}


def _photo(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A colour picture (Y, X, 3) uint8 with a bright disc and its 0/1 mask."""
    rng = np.random.default_rng(seed)
    y, x = np.indices(SHAPE)
    cy, cx = rng.integers(12, 28), rng.integers(12, 36)
    mask = ((y - cy) ** 2 + (x - cx) ** 2 < 49).astype(np.uint8)
    rgb = rng.integers(0, 60, (*SHAPE, 3)).astype(np.uint8)
    rgb[mask > 0] = (200, 120, 40)
    return rgb, mask


def _save(array: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _dataset(root: Path, layout: str = "rgb", mask_scale: int = 255, ending: str = ".png",
             label_ending: str = ".png", n: int = 3, labels: dict | None = None,
             channel_names: dict | None = None) -> Path:
    """Write an nnU-Net v2 natural-image dataset by hand (as a user's folder would be)."""
    for i in range(n):
        rgb, mask = _photo(i)
        cid = f"case_{i:03d}"
        if layout == "rgb":  # one colour file, nnU-Net v2 style CASE_0000
            _save(rgb, root / "imagesTr" / f"{cid}_0000{ending}")
        elif layout == "rgb_plain":  # one colour file named CASE.png
            _save(rgb, root / "imagesTr" / f"{cid}{ending}")
        else:  # one greyscale file per channel
            for c in range(3):
                _save(np.ascontiguousarray(rgb[..., c]), root / "imagesTr" / f"{cid}_{c:04d}{ending}")
        _save((mask * mask_scale).astype(np.uint8), root / "labelsTr" / f"{cid}{label_ending}")
    meta = {"channel_names": channel_names or RGB_NAMES, "labels": labels or ONE_CLASS,
            "numTraining": n, "file_ending": ending, "name": "Discs"}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


@pytest.mark.parametrize("layout", ["rgb", "rgb_plain", "channels"])
@pytest.mark.parametrize("mask_scale", [1, 255])
def test_png_layouts_load_as_three_channels(tmp_path, layout, mask_scale):
    root = _dataset(tmp_path / "ds", layout, mask_scale)
    ds = load_msd_dataset(root)
    assert ds.case_ids == ["case_000", "case_001", "case_002"]
    assert ds.channel_names == ["R", "G", "B"] and ds.label_names == {0: "background", 1: "vessel"}
    for i, case in enumerate(ds.cases):
        rgb, mask = _photo(i)
        assert len(case.channels) == 3 and case.image.shape == SHAPE
        for c, channel in enumerate(case.channels):
            assert not channel.rgb
            np.testing.assert_array_equal(channel.array, rgb[..., c])  # channel order kept
        assert case.labels.dtype == np.uint8
        np.testing.assert_array_equal(case.labels, mask)  # 0/255 and 0/1 -> 0/1
        assert case.roi is None


def test_list_cases_finds_pictures_by_stem(tmp_path):
    root = _dataset(tmp_path / "ds", "channels")
    (root / "labelsTr" / "notes.txt").write_text("not a label")
    listed = list_msd_cases(root)
    assert [c[0] for c in listed] == ["case_000", "case_001", "case_002"]
    assert [p.name for p in listed[1][1]] == ["case_001_0000.png", "case_001_0001.png",
                                              "case_001_0002.png"]
    assert listed[1][2].name == "case_001.png"


def test_jpeg_images_with_png_and_tif_labels(tmp_path):
    root = _dataset(tmp_path / "ds", "rgb", 255, ending=".jpg")
    # a TIFF label next to JPEG images is found by its stem too
    mask = _photo(2)[1]
    (root / "labelsTr" / "case_002.png").unlink()
    _save(mask * 255, root / "labelsTr" / "case_002.tif")
    ds = load_msd_dataset(root)
    assert len(ds.cases) == 3 and len(ds.cases[0].channels) == 3
    for i, case in enumerate(ds.cases):
        np.testing.assert_array_equal(case.labels, _photo(i)[1])
        # JPEG is lossy: the disc colour survives approximately
        assert abs(float(case.channels[0].array[_photo(i)[1] > 0].mean()) - 200) < 15


def test_two_label_files_for_one_case_is_an_error(tmp_path):
    root = _dataset(tmp_path / "ds")
    _save(_photo(0)[1], root / "labelsTr" / "case_000.tif")
    with pytest.raises(DatasetError, match="several files for case_000"):
        list_msd_cases(root)


def test_ambiguous_mask_is_a_one_line_error(tmp_path):
    root = _dataset(tmp_path / "ds")
    bad = np.zeros(SHAPE, np.uint8)
    bad[:10], bad[10:20] = 128, 255
    _save(bad, root / "labelsTr" / "case_001.png")
    with pytest.raises(DatasetError) as info:
        load_msd_dataset(root)
    text = str(info.value)
    assert "case_001" in text and "{0, 128, 255}" in text and "\n" not in text


def test_values_not_named_in_a_multi_class_dataset(tmp_path):
    labels = {"background": 0, "disc": 1, "cup": 2}
    root = _dataset(tmp_path / "ds", labels=labels)
    ds = load_msd_dataset(root, ["case_000"])  # 0/255 with two classes: 255 = not annotated
    assert set(np.unique(ds.cases[0].labels)) == {0, IGNORE_LABEL}
    three = np.zeros(SHAPE, np.uint8)
    three[:5], three[5:10] = 1, 2
    _save(three, root / "labelsTr" / "case_001.png")
    np.testing.assert_array_equal(load_msd_dataset(root, ["case_001"]).cases[0].labels, three)
    three[10:12] = 7
    _save(three, root / "labelsTr" / "case_001.png")
    with pytest.raises(DatasetError, match=r"case_001.*\{0, 1, 2, 7\}"):
        load_msd_dataset(root, ["case_001"])


@pytest.mark.parametrize(
    ("values", "names", "expected"),
    [
        ([0, 255], {0: "bg", 1: "a"}, [0, 1]),
        ([0, 1], {0: "bg", 1: "a"}, [0, 1]),
        ([0, 128], {0: "bg", 1: "a"}, [0, 1]),
        ([0, 65535], {0: "bg", 1: "a"}, [0, 1]),
        ([255, 255], {0: "bg", 1: "a"}, [1, 1]),
        ([0, 7], {0: "bg", 2: "lesion"}, [0, 2]),
        ([0, 1, 255], {0: "bg", 1: "a"}, [0, 1, IGNORE_LABEL]),
        ([0, 1, 2], {0: "bg", 1: "a", 2: "b"}, [0, 1, 2]),
        ([0, 128, 255], {0: "bg", 1: "a"}, None),
        ([0, 3], {0: "bg", 1: "a", 2: "b"}, None),
        ([0, 1, 2], {0: "bg", 1: "a"}, None),
    ],
)
def test_picture_label_values_table(values, names, expected):
    array = np.array([values], dtype=np.uint16 if max(values) > 255 else np.uint8)
    if expected is None:
        with pytest.raises(DatasetError, match="holds the values"):
            picture_label_values(array, names, "c1")
    else:
        out = picture_label_values(array, names, "c1")
        assert out.dtype == np.uint8 and out.tolist() == [expected]


def test_bool_and_float_masks():
    names = {0: "bg", 1: "a"}
    assert picture_label_values(np.array([[True, False]]), names).tolist() == [[1, 0]]
    assert picture_label_values(np.array([[0.0, 255.0]]), names).tolist() == [[0, 1]]
    with pytest.raises(DatasetError, match="non-integer"):
        picture_label_values(np.array([[0.0, 0.5]]), names)


def test_rgb_masks_grey_ok_colour_refused(tmp_path):
    root = _dataset(tmp_path / "ds")
    mask = _photo(0)[1] * 255
    _save(np.stack([mask] * 3, axis=-1), root / "labelsTr" / "case_000.png")
    np.testing.assert_array_equal(load_msd_dataset(root, ["case_000"]).cases[0].labels,
                                  _photo(0)[1])
    colour = np.stack([mask, mask, np.zeros_like(mask)], axis=-1)
    _save(colour, root / "labelsTr" / "case_000.png")
    with pytest.raises(DatasetError, match="case_000.*colour picture"):
        load_msd_dataset(root, ["case_000"])


def test_channel_count_must_match_channel_names(tmp_path):
    root = _dataset(tmp_path / "ds", channel_names={"0": "grey"})
    with pytest.raises(DatasetError, match="names 1 channel.*hold 3"):
        load_msd_dataset(root)
    # a greyscale photo stored as RGB (equal channels) is one channel
    grey = np.stack([_photo(0)[0][..., 1]] * 3, axis=-1)
    _save(grey, root / "imagesTr" / "case_000_0000.png")
    case = load_msd_dataset(root, ["case_000"]).cases[0]
    assert len(case.channels) == 1 and case.image.shape == SHAPE
    np.testing.assert_array_equal(case.image.array, grey[..., 0])
    # three channels named but a single grey picture given
    root2 = _dataset(tmp_path / "ds2", "channels")
    for c in (1, 2):
        (root2 / "imagesTr" / f"case_000_{c:04d}.png").unlink()
    with pytest.raises(DatasetError, match="case_000: dataset.json names 3 channel"):
        load_msd_dataset(root2)


def test_missing_image_and_bad_file_ending(tmp_path):
    root = _dataset(tmp_path / "ds")
    (root / "imagesTr" / "case_002_0000.png").unlink()
    with pytest.raises(DatasetError, match="No image in imagesTr/ for case case_002"):
        load_msd_dataset(root)
    meta = json.loads((root / "dataset.json").read_text())
    meta["file_ending"] = ".webp"
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="file_ending '.webp' is not supported"):
        read_dataset_json(root)


def test_fov_masks_folder_sets_case_roi(tmp_path):
    root = _dataset(tmp_path / "ds")
    y, x = np.indices(SHAPE)
    fov = ((y - 20) ** 2 + (x - 24) ** 2 < 18 ** 2)
    for i in range(3):
        # 0/255 PNG, 0/1 PNG, and a GIF: all the same region
        path = root / "masksTr" / f"case_{i:03d}{'.gif' if i == 2 else '.png'}"
        _save((fov * (1 if i == 1 else 255)).astype(np.uint8), path)
    ds = load_msd_dataset(root)
    for case in ds.cases:
        np.testing.assert_array_equal(case.roi, fov)
        np.testing.assert_array_equal(case.metric_mask(), fov)
        lab = case.training_labels()
        assert np.all(lab[~fov] == IGNORE_LABEL)  # left out of the loss
        np.testing.assert_array_equal(lab[fov], case.labels[fov])
        assert case.stored_labels() is case.labels  # the label file is not changed
        assert case.annotated_fraction() == pytest.approx(1.0)
    # every case needs a mask once the folder exists
    (root / "masksTr" / "case_001.png").unlink()
    with pytest.raises(DatasetError, match="case_001 has no region-of-interest mask"):
        load_msd_dataset(root)
    # an empty mask is refused
    _save(np.zeros(SHAPE, np.uint8), root / "masksTr" / "case_001.png")
    with pytest.raises(DatasetError, match="case_001.*empty"):
        load_msd_dataset(root)


def test_roi_given_in_code(tmp_path):
    root = _dataset(tmp_path / "ds")
    half = np.zeros(SHAPE, bool)
    half[:, :24] = True
    ds = load_msd_dataset(root, roi={f"case_{i:03d}": half for i in range(3)})
    assert all(np.array_equal(c.roi, half) for c in ds.cases)
    with pytest.raises(DatasetError, match="No region-of-interest mask given for case case_001"):
        load_msd_dataset(root, roi={"case_000": half})
    seen = []

    def bright(channels_last: np.ndarray) -> np.ndarray:
        seen.append(channels_last.shape)
        return channels_last[..., 0] > 100

    ds = load_msd_dataset(root, roi=bright)
    assert seen == [(*SHAPE, 3)] * 3
    np.testing.assert_array_equal(ds.cases[0].roi, _photo(0)[1] > 0)


def test_case_roi_validation():
    image = Volume(np.zeros(SHAPE, np.float32))
    labels = np.zeros(SHAPE, np.uint8)
    with pytest.raises(DatasetError, match="region-of-interest mask shape"):
        Case("c", image, labels, roi=np.ones((4, 4), bool))
    with pytest.raises(DatasetError, match="region-of-interest mask is empty"):
        Case("c", image, labels, roi=np.zeros(SHAPE, bool))
    annotated = np.zeros(SHAPE, bool)
    annotated[:20] = True
    roi = np.zeros(SHAPE, bool)
    roi[:, :24] = True
    case = Case("c", image, labels, annotated, roi=roi)
    lab = case.training_labels()
    assert np.all(lab[~annotated | ~roi] == IGNORE_LABEL) and np.all(lab[annotated & roi] == 0)
    assert case.annotated_fraction() == pytest.approx(0.5)  # of the pixels inside the roi


def test_colour_case_round_trip_through_png_dataset(tmp_path):
    cases = []
    for i in range(2):
        rgb, mask = _photo(i)
        roi = np.ones(SHAPE, bool)
        roi[:4] = False
        cases.append(Case(f"photo_{i}", Volume(rgb, (1.0, 1.0), rgb=True), mask, roi=roi))
    root = write_msd_dataset(cases, tmp_path / "out", {0: "background", 1: "disc"},
                             name="Photos", file_ending=".png")
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["file_ending"] == ".png" and meta["labels"] == {"background": 0, "disc": 1}
    assert meta["channel_names"] == {"0": "red", "1": "green", "2": "blue"}
    assert sorted(p.name for p in (root / "imagesTr").iterdir()) == ["photo_0_0000.png",
                                                                     "photo_1_0000.png"]
    ds = load_msd_dataset(root)
    for case, back in zip(cases, ds.cases, strict=True):
        assert len(back.channels) == 3
        for a, b in zip(case.channels, back.channels, strict=True):
            np.testing.assert_array_equal(a.array, b.array)
        np.testing.assert_array_equal(back.labels, case.labels)
        np.testing.assert_array_equal(back.roi, case.roi)


def test_per_channel_and_tiff_writing(tmp_path):
    rng = np.random.default_rng(3)
    t1 = Volume(rng.integers(0, 4000, SHAPE).astype(np.uint16))
    t2 = Volume(rng.normal(0, 1, SHAPE).astype(np.float32))
    labels = np.zeros(SHAPE, np.uint8)
    labels[10:20, 10:20] = 1
    case = Case("mr", t1, labels, extra_channels=(t2,))
    with pytest.raises(DatasetError, match="non-integer intensities"):
        write_msd_dataset([case], tmp_path / "png", {0: "bg", 1: "a"}, file_ending=".png")
    assert not (tmp_path / "png").exists()  # checked before anything is written
    root = write_msd_dataset([case], tmp_path / "tif", {0: "bg", 1: "a"}, modality="MR",
                             file_ending=".tif")
    assert sorted(p.name for p in (root / "imagesTr").iterdir()) == ["mr_0000.tif", "mr_0001.tif"]
    back = load_msd_dataset(root).cases[0]
    np.testing.assert_array_equal(back.image.array, t1.array)
    np.testing.assert_allclose(back.extra_channels[0].array, t2.array)
    np.testing.assert_array_equal(back.labels, labels)


def test_picture_writer_refuses_3d_and_unreadable_sparse(tmp_path):
    vol = Case("v", Volume(np.zeros((4, 8, 8), np.float32)), np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(DatasetError, match="3D"):
        write_msd_dataset([vol], tmp_path / "a", {0: "bg", 1: "a"}, file_ending=".png")
    annotated = np.zeros(SHAPE, bool)
    annotated[:5] = True
    sparse = Case("s", Volume(np.zeros(SHAPE, np.uint8)), np.zeros(SHAPE, np.uint8), annotated)
    with pytest.raises(DatasetError, match="no foreground"):
        write_msd_dataset([sparse], tmp_path / "b", {0: "bg", 1: "a"}, file_ending=".png")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_label_and_mask_file_helpers(tmp_path):
    mask = (_photo(0)[1] * 255).astype(np.uint8)
    path = _save(mask, tmp_path / "m.png")
    assert set(np.unique(read_label_image(path).array)) == {0, 255}
    assert set(np.unique(read_label_image(path, {0: "bg", 1: "a"}).array)) == {0, 1}
    np.testing.assert_array_equal(read_roi_mask(path), mask > 0)
    out = write_labels(Volume(_photo(1)[1]), tmp_path / "sub" / "l.png")
    np.testing.assert_array_equal(read_label_image(out).array, _photo(1)[1])


def test_dataset_json_without_file_ending_finds_pictures(tmp_path):
    root = _dataset(tmp_path / "ds")
    meta = json.loads((root / "dataset.json").read_text())
    del meta["file_ending"]
    (root / "dataset.json").write_text(json.dumps(meta))
    ds = load_msd_dataset(root)
    assert len(ds.cases) == 3 and len(ds.cases[0].channels) == 3


def test_nifti_dataset_keeps_roi_in_masks_folder(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.zeros((6, 10, 12), np.uint8)
    labels[2:4, 3:6, 3:6] = 1
    roi = np.ones(labels.shape, bool)
    roi[:, :, :2] = False
    case = Case("vol", Volume(rng.normal(0, 1, labels.shape).astype(np.float32)), labels, roi=roi)
    root = write_msd_dataset([case], tmp_path / "nii", {0: "bg", 1: "a"})
    assert (root / "masksTr" / "vol.nii.gz").is_file()
    back = load_msd_dataset(root).cases[0]
    np.testing.assert_array_equal(back.labels, labels)  # the label file is not masked
    np.testing.assert_array_equal(back.roi, roi)
    assert load_msd_dataset(root, roi={"vol": np.ones(labels.shape, bool)}).cases[0].roi.all()
