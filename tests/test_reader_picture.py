"""npe2 reader and writer for pictures: layer tuples for photos and masks, PNG/TIFF labels out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_medseg._reader import (
    find_matching_labels,
    get_reader,
    is_label_picture,
    picture_mask_values,
    read_paths,
)
from napari_medseg._writer import write_labels_picture
from napari_medseg.io import MedsegIOError, Volume, read_picture

CHASE = Path(__file__).resolve().parents[2] / "shared" / "data" / "CHASE_DB1"
RNG = np.random.default_rng(5)
PLUGIN = "napari-medseg"


def _photo(shape=(48, 64)) -> np.ndarray:
    """A smooth colour 'photograph' with noise (many distinct values in every channel)."""
    y, x = np.mgrid[: shape[0], : shape[1]]
    base = np.stack([x * 3, y * 4, (x + y) * 2], axis=-1) % 256
    return np.clip(base + RNG.integers(0, 20, base.shape), 0, 255).astype(np.uint8)


def _read(path: Path) -> list[tuple]:
    reader = get_reader(str(path))
    assert callable(reader)
    return reader(str(path))


@pytest.mark.parametrize("name", ["a.png", "b.PNG", "c.jpg", "d.JPEG", "e.tif", "f.TIFF",
                                  "g.bmp", "h.gif"])
def test_get_reader_claims_pictures_from_the_name(tmp_path: Path, name: str) -> None:
    assert callable(get_reader(str(tmp_path / name)))  # no file needed: path only
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader([str(tmp_path / name), str(tmp_path / "notes.txt")]) is None


def test_colour_photo_opens_as_rgb_image_with_plugin_metadata(tmp_path: Path) -> None:
    a = _photo()
    Image.fromarray(a).save(tmp_path / "fundus_mask_like_name.png")  # name hint: still a photo
    [(data, kwargs, layer_type)] = _read(tmp_path / "fundus_mask_like_name.png")
    assert layer_type == "image" and kwargs["rgb"] is True
    np.testing.assert_array_equal(data, a)
    assert kwargs["scale"] == (1.0, 1.0) and kwargs["translate"] == (0.0, 0.0)
    medseg = kwargs["metadata"]["medseg"]
    assert medseg["rgb"] is True and medseg["shape"] == [48, 64]
    assert medseg["source"]["picture"] is True and medseg["source"]["spacing_known"] is False
    assert medseg["source"]["format"] == "png"
    assert "colormap" not in kwargs
    rebuilt = Volume.from_geometry_metadata(data, medseg)
    assert rebuilt.rgb and rebuilt.shape == (48, 64)


def test_sixteen_bit_colour_gets_contrast_from_its_values(tmp_path: Path) -> None:
    a = (RNG.integers(0, 4000, (10, 12, 3))).astype(np.uint16)
    tifffile.imwrite(tmp_path / "c.tif", a, photometric="rgb")
    [(data, kwargs, layer_type)] = _read(tmp_path / "c.tif")
    assert layer_type == "image" and kwargs["rgb"] and data.dtype == np.uint16
    assert kwargs["contrast_limits"] == [float(a.min()), float(a.max())]


def test_greyscale_photo_never_opens_as_labels(tmp_path: Path) -> None:
    grey = _photo()[..., 1]
    for name in ("xray.png", "segmentation_input.png", "manual_exposure.tif"):
        Image.fromarray(grey).save(tmp_path / name)
        [(_, kwargs, layer_type)] = _read(tmp_path / name)
        assert layer_type == "image", name
        assert kwargs["colormap"] == "gray"
    # few grey levels, mostly not background, no name hint: an image (e.g. a test pattern)
    pattern = np.full((20, 20), 200, np.uint8)
    pattern[:5] = 0
    Image.fromarray(pattern).save(tmp_path / "pattern.png")
    assert _read(tmp_path / "pattern.png")[0][2] == "image"
    # a JPEG of a mask: compression noise makes many grey levels -> an image, not Labels
    mask = np.zeros((64, 64), np.uint8)
    mask[20:40, 10:50] = 255
    Image.fromarray(mask).save(tmp_path / "lesion_mask.jpg", quality=60)
    assert _read(tmp_path / "lesion_mask.jpg")[0][2] == "image"


def test_zero_one_mask_opens_as_labels(tmp_path: Path) -> None:
    mask = np.zeros((30, 40), bool)
    mask[5:15, 10:30] = True
    Image.fromarray(mask).convert("1").save(tmp_path / "Image_99L_1stHO.png")
    [(data, kwargs, layer_type)] = _read(tmp_path / "Image_99L_1stHO.png")
    assert layer_type == "labels"
    np.testing.assert_array_equal(data, mask.astype(np.uint8))
    assert kwargs["metadata"]["medseg"]["classes"] == {1: {"name": "label 1",
                                                           "color": "#e6194b"}}
    assert "label_values_mapped" not in kwargs["metadata"]["medseg"]["source"]


def test_zero_255_mask_opens_as_label_one_with_a_note(tmp_path: Path) -> None:
    mask = np.zeros((30, 40), np.uint8)
    mask[5:15, 10:30] = 255
    Image.fromarray(mask).save(tmp_path / "case_07.png")  # no name hint: mostly 0, 2 values
    [(data, kwargs, layer_type)] = _read(tmp_path / "case_07.png")
    assert layer_type == "labels"
    assert set(np.unique(data).tolist()) == {0, 1}
    np.testing.assert_array_equal(data, (mask == 255).astype(np.uint8))
    source = kwargs["metadata"]["medseg"]["source"]
    assert source["label_values_mapped"] == {"255": 1}
    assert any("255" in w for w in source["warnings"])


def test_grey_level_mask_becomes_one_label_per_grey_level(tmp_path: Path) -> None:
    mask = np.zeros((30, 40), np.uint8)
    mask[5:15, 10:30], mask[20:25, 5:35] = 128, 255  # 255 would be "not annotated" as a label
    Image.fromarray(mask).save(tmp_path / "us_00_mask.png")
    [(data, kwargs, layer_type)] = _read(tmp_path / "us_00_mask.png")
    assert layer_type == "labels"
    expected = np.select([mask == 128, mask == 255], [1, 2], 0)
    np.testing.assert_array_equal(data, expected)
    source = kwargs["metadata"]["medseg"]["source"]
    assert source["label_values_mapped"] == {"128": 1, "255": 2}
    assert "Mask values 128, 255 were read as labels 1, 2." in source["warnings"]
    assert set(kwargs["metadata"]["medseg"]["classes"]) == {1, 2}
    keeps = np.zeros((20, 20), np.uint8)
    keeps[2:6, 2:6], keeps[10:14, 10:14] = 1, 255  # label 1 and unannotated pixels: kept
    Image.fromarray(keeps).save(tmp_path / "labels_sparse.png")
    [(data, _, _)] = _read(tmp_path / "labels_sparse.png")
    assert set(np.unique(data).tolist()) == {0, 1, 255}


def test_multi_class_mask_keeps_its_values(tmp_path: Path) -> None:
    mask = np.zeros((20, 20), np.uint8)
    mask[2:6, 2:6], mask[10:14, 10:14] = 1, 2
    Image.fromarray(mask).save(tmp_path / "labels.png")
    [(data, _, layer_type)] = _read(tmp_path / "labels.png")
    assert layer_type == "labels"
    np.testing.assert_array_equal(data, mask)


def test_label_picture_rules_table() -> None:
    photo = Volume(_photo()[..., 0], metadata={"picture": True})
    assert not is_label_picture(photo, "mask.png")
    colour = Volume(np.zeros((4, 4, 3), np.uint8), (1.0, 1.0), rgb=True)
    assert not is_label_picture(colour, "mask.png")
    floats = Volume(np.zeros((4, 4), np.float32))
    assert not is_label_picture(floats, "mask.png")
    blank = Volume(np.zeros((4, 4), np.uint8))
    assert not is_label_picture(blank, "photo.png")  # nothing but 0: not called a mask unhinted
    assert is_label_picture(blank, "photo_mask.png")
    in_folder = Volume(np.arange(16, dtype=np.uint8).reshape(4, 4) % 3)
    assert is_label_picture(in_folder, "labelsTr/case_001.png")
    assert not is_label_picture(in_folder, "imagesTr/case_001.png")  # 1/3 zeros, no hint
    np.testing.assert_array_equal(picture_mask_values(np.array([[0, 65535]], np.uint16))[0],
                                  [[0, 1]])
    ranked, mapping = picture_mask_values(np.array([[0, 128, 255]], np.uint8))
    assert mapping == {"128": 1, "255": 2} and ranked.tolist() == [[0, 1, 2]]
    unchanged, mapping = picture_mask_values(np.array([[0, 1, 2, 7]], np.uint8))
    assert mapping is None and unchanged.tolist() == [[0, 1, 2, 7]]


def test_known_spacing_becomes_the_layer_scale(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "xray.tif", _photo()[..., 0],
                     resolution=(50.0, 25.0), resolutionunit="CENTIMETER")
    [(_, kwargs, _)] = _read(tmp_path / "xray.tif")
    assert kwargs["scale"] == pytest.approx((0.4, 0.2)) and kwargs["translate"] == (0.0, 0.0)
    assert kwargs["metadata"]["medseg"]["source"]["spacing_known"] is True


def test_multi_page_tiff_opens_as_a_3d_image(tmp_path: Path) -> None:
    stack = RNG.integers(0, 4096, (4, 16, 16)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    [(data, kwargs, layer_type)] = _read(tmp_path / "stack.tif")
    assert layer_type == "image" and data.shape == (4, 16, 16) and len(kwargs["scale"]) == 3


def test_unreadable_picture_is_a_notification_not_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 50)
    assert read_paths(str(bad)) == [(None,)]


@pytest.mark.skipif(not CHASE.is_dir(), reason="CHASE_DB1 not in ../shared/data")
def test_chase_db1_photo_and_mask_layers() -> None:
    [(img, ikw, itype)] = _read(CHASE / "images" / "Image_01L.jpg")
    assert itype == "image" and ikw["rgb"] and img.shape == (960, 999, 3)
    [(mask, mkw, mtype)] = _read(CHASE / "masks" / "Image_01L_1stHO.png")
    assert mtype == "labels" and mask.shape == (960, 999)
    assert set(np.unique(mask).tolist()) == {0, 1}
    assert mkw["scale"] == ikw["scale"] == (1.0, 1.0)


def test_find_matching_labels_for_pictures(tmp_path: Path) -> None:
    for folder in ("imagesTr", "labelsTr", "images", "masks"):
        (tmp_path / folder).mkdir()
    img = tmp_path / "imagesTr" / "case_001_0000.png"
    img.write_bytes(b"")
    assert find_matching_labels(img) is None
    (tmp_path / "labelsTr" / "case_001.png").write_bytes(b"")
    assert find_matching_labels(img) == tmp_path / "labelsTr" / "case_001.png"
    photo = tmp_path / "images" / "Image_01L.jpg"
    photo.write_bytes(b"")
    (tmp_path / "masks" / "Image_01L_1stHO.png").write_bytes(b"")
    assert find_matching_labels(photo) == tmp_path / "masks" / "Image_01L_1stHO.png"
    (tmp_path / "images" / "Image_01L_mask.tif").write_bytes(b"")
    assert find_matching_labels(photo) == tmp_path / "images" / "Image_01L_mask.tif"
    flat = tmp_path / "us.bmp"
    flat.write_bytes(b"")
    (tmp_path / "us_seg.jpg").write_bytes(b"")  # a JPEG cannot hold exact labels
    assert find_matching_labels(flat) is None


@pytest.mark.skipif(not CHASE.is_dir(), reason="CHASE_DB1 not in ../shared/data")
def test_chase_db1_photo_finds_its_mask() -> None:
    found = find_matching_labels(CHASE / "images" / "Image_01L.jpg")
    assert found == CHASE / "masks" / "Image_01L_1stHO.png"


# ------------------------------------------------------------------------------ writer


def _labels_meta(tmp_path: Path, array: np.ndarray, **source) -> dict:
    """napari layer attributes of a Labels layer opened from a picture."""
    Image.fromarray(array).save(tmp_path / "src_mask.png")
    [(_, kwargs, _)] = _read(tmp_path / "src_mask.png")
    kwargs["metadata"]["medseg"]["source"].update(source)
    return kwargs


def test_writer_saves_2d_labels_as_png_and_tiff(tmp_path: Path) -> None:
    labels = np.zeros((30, 45), np.uint8)
    labels[3:9, 4:30], labels[15:20, 5:8] = 1, 2
    meta = _labels_meta(tmp_path, labels)
    out_png = write_labels_picture(str(tmp_path / "out.png"), labels, meta)
    assert out_png[0] == str(tmp_path / "out.png")
    np.testing.assert_array_equal(read_picture(out_png[0]).array, labels)
    assert len(out_png) == 2 and json.loads(Path(out_png[1]).read_text())["labels"]["1"]
    big = labels.astype(np.uint16) * 300
    out_tif = write_labels_picture(str(tmp_path / "out.tif"), big, meta)
    back = read_picture(out_tif[0])
    assert back.array.dtype == np.uint16
    np.testing.assert_array_equal(back.array, big)


def test_writer_keeps_the_pixel_size_of_the_image(tmp_path: Path) -> None:
    labels = np.eye(8, 10, dtype=np.uint8)
    meta = {"name": "l", "scale": (0.25, 0.5), "translate": (0.0, 0.0),
            "metadata": {"medseg": {"spacing": [0.25, 0.5], "affine": np.diag(
                [1.0, 0.25, 0.5, 1.0]).tolist(), "shape": [8, 10],
                "source": {"spacing_known": True, "picture": True}}}}
    out = write_labels_picture(str(tmp_path / "l.tif"), labels, meta)
    back = read_picture(out[0])
    assert back.spacing == pytest.approx((0.25, 0.5)) and back.metadata["spacing_known"]


def test_writer_refuses_3d_labels_and_bad_values(tmp_path: Path) -> None:
    with pytest.raises(MedsegIOError, match="3D.*nii.gz") as exc:
        write_labels_picture(str(tmp_path / "v.png"), np.zeros((3, 4, 5), np.uint8),
                             {"name": "vol"})
    assert "\n" not in str(exc.value)
    with pytest.raises(MedsegIOError, match="negative"):
        write_labels_picture(str(tmp_path / "n.png"), np.full((3, 3), -1), {"name": "n"})
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ napari door


def test_open_photo_and_mask_then_save_labels_in_napari(make_napari_viewer, tmp_path) -> None:
    import napari

    photo = _photo((40, 50))
    mask = np.zeros((40, 50), np.uint8)
    mask[10:20, 10:30] = 255
    Image.fromarray(photo).save(tmp_path / "fundus.png")
    Image.fromarray(mask).save(tmp_path / "fundus_mask.png")
    viewer = make_napari_viewer()
    [image] = viewer.open(str(tmp_path / "fundus.png"), plugin=PLUGIN)
    [labels] = viewer.open(str(tmp_path / "fundus_mask.png"), plugin=PLUGIN)
    assert isinstance(image, napari.layers.Image) and image.rgb
    assert image.data.shape == (40, 50, 3) and image.ndim == 2
    assert isinstance(labels, napari.layers.Labels)
    assert set(np.unique(labels.data).tolist()) == {0, 1}
    assert labels.metadata["medseg"]["source"]["label_values_mapped"] == {"255": 1}
    labels.data[30:35, 40:45] = 2  # paint a second class
    out = tmp_path / "saved.png"
    labels.save(str(out), plugin=PLUGIN)
    back = read_picture(out).array
    assert back.shape == (40, 50) and back[32, 42] == 2 and back[15, 15] == 1
