"""Pictures (PNG, JPEG, TIFF, BMP, GIF) in and 2D label pictures out: exact round trips."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_medseg.io import (
    MedsegIOError,
    MedsegIOWarning,
    Volume,
    describe_path,
    is_picture_path,
    read_picture,
    read_volume,
    read_volumes,
    write_picture,
    write_probability_png,
)
from napari_medseg.io.picture import spacing_from_dpi

CHASE = Path(__file__).resolve().parents[2] / "shared" / "data" / "CHASE_DB1"
RNG = np.random.default_rng(18)


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def _quiet_read(path: Path) -> Volume:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MedsegIOWarning)
        return read_picture(path)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("a.png", True), ("A.PNG", True), ("b.jpg", True), ("b.JPEG", True), ("c.tif", True),
     ("c.TIFF", True), ("d.bmp", True), ("e.Gif", True), ("ct.nii.gz", False),
     ("x.dcm", False), ("png", False), ("notes.txt", False)],
)
def test_is_picture_path(name: str, expected: bool) -> None:
    assert is_picture_path(name) is expected


# ------------------------------------------------------------------------------ reading


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_greyscale_png_round_trip_keeps_values_and_bits(tmp_path: Path, dtype) -> None:
    top = 255 if dtype == np.uint8 else 65535
    a = RNG.integers(0, top + 1, (37, 53)).astype(dtype)
    a[0, 0], a[-1, -1] = 0, top
    f = tmp_path / "grey.png"
    Image.fromarray(a).save(f)
    v = read_picture(f)
    assert v.array.dtype == dtype
    np.testing.assert_array_equal(v.array, a)
    assert v.shape == (37, 53) and v.ndim == 2 and not v.rgb
    assert v.name == "grey" and v.modality == "unknown" and not v.has_orientation
    assert v.metadata["format"] == "png" and v.metadata["picture"] is True
    assert v.metadata["path"] == str(f)
    assert v.spacing == (1.0, 1.0) and v.metadata["spacing_known"] is False
    v.array[0, 0] = 1  # writable: a Labels layer made from it must be paintable


@pytest.mark.parametrize("channels", [3, 4])
def test_colour_png_keeps_channel_order(tmp_path: Path, channels: int) -> None:
    a = np.zeros((20, 30, channels), np.uint8)
    for c in range(channels):
        a[..., c] = 10 * (c + 1)  # red 10, green 20, blue 30, alpha 40
    a[5, 7] = (250, 1, 2, 3)[:channels]
    f = tmp_path / "colour.png"
    Image.fromarray(a).save(f)
    v = read_picture(f)
    assert v.rgb and v.shape == (20, 30) and v.array.shape == (20, 30, channels)
    np.testing.assert_array_equal(v.array, a)
    assert v.n_channels == 3
    red, green, blue = (c.array for c in v.channel_volumes())
    assert red[0, 0] == 10 and green[0, 0] == 20 and blue[0, 0] == 30 and red[5, 7] == 250


def test_one_bit_png_reads_zero_and_one(tmp_path: Path) -> None:
    a = np.zeros((16, 24), bool)
    a[3:9, 4:20] = True
    f = tmp_path / "m.png"
    Image.fromarray(a).convert("1").save(f)
    assert Image.open(f).mode == "1"
    v = read_picture(f)
    assert v.array.dtype == np.uint8
    np.testing.assert_array_equal(v.array, a.astype(np.uint8))


def test_palette_mask_reads_indices_and_palette_photo_reads_colour(tmp_path: Path) -> None:
    idx = np.zeros((12, 12), np.uint8)
    idx[2:5, 2:5], idx[7:10, 7:10] = 1, 2
    mask = Image.fromarray(idx).convert("P")
    mask.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    mask.save(tmp_path / "voc.png")
    v = read_picture(tmp_path / "voc.png")
    assert not v.rgb and v.metadata["palette_indices"] is True
    np.testing.assert_array_equal(v.array, idx)

    photo = RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(photo).quantize(200).save(tmp_path / "photo.gif")
    v = read_picture(tmp_path / "photo.gif")
    assert v.rgb and v.array.shape == (32, 32, 3) and v.metadata["format"] == "gif"


def test_grey_palette_reads_grey_levels_not_indices(tmp_path: Path) -> None:
    idx = np.zeros((6, 8), np.uint8)
    idx[2:4, 2:6] = 1
    img = Image.fromarray(idx).convert("P")
    img.putpalette([255, 255, 255, 0, 0, 0] + [0] * (254 * 3))  # index 0 is white
    img.save(tmp_path / "inverted_palette.png")
    v = read_picture(tmp_path / "inverted_palette.png")
    np.testing.assert_array_equal(v.array, np.where(idx == 1, 0, 255))


def test_gif_and_bmp_masks_read_exactly(tmp_path: Path) -> None:
    a = np.zeros((10, 14), np.uint8)
    a[2:6, 3:9] = 255
    Image.fromarray(a).save(tmp_path / "mask.gif")
    Image.fromarray(a).save(tmp_path / "mask.bmp")
    for name, fmt in (("mask.gif", "gif"), ("mask.bmp", "bmp")):
        v = read_picture(tmp_path / name)
        np.testing.assert_array_equal(v.array, a)
        assert v.metadata["format"] == fmt and not v.rgb


def test_netpbm_photo_and_mask_as_stare_ships_them(tmp_path: Path) -> None:
    # STARE's fundus photographs and vessel masks are .ppm files
    rng = np.random.default_rng(4)
    photo = rng.integers(0, 256, (30, 44, 3), dtype=np.uint8)
    mask = np.zeros((30, 44), np.uint8)
    mask[5:9, 2:40] = 255
    Image.fromarray(photo).save(tmp_path / "im0001.ppm")
    Image.fromarray(mask).save(tmp_path / "im0001.ah.PGM")
    v = read_picture(tmp_path / "im0001.ppm")
    assert v.rgb and v.metadata["format"] == "netpbm"
    np.testing.assert_array_equal(v.array, photo)
    np.testing.assert_array_equal(read_volume(tmp_path / "im0001.ah.PGM").array, mask)
    assert is_picture_path("x.pnm") and describe_path(tmp_path / "im0001.ppm")["shape"] == [30, 44]


def test_colour_bmp_and_jpeg(tmp_path: Path) -> None:
    a = np.zeros((24, 40, 3), np.uint8)
    a[..., 0], a[..., 2] = 200, 50
    Image.fromarray(a).save(tmp_path / "c.bmp")
    np.testing.assert_array_equal(read_picture(tmp_path / "c.bmp").array, a)
    Image.fromarray(a).save(tmp_path / "c.jpg", quality=95)
    v = read_picture(tmp_path / "c.jpg")
    assert v.rgb and v.array.shape == (24, 40, 3) and v.metadata["format"] == "jpeg"
    assert v.array.flags.writeable
    assert abs(int(v.array[..., 0].mean()) - 200) <= 3 and abs(int(v.array[..., 2].mean()) - 50) <= 3
    Image.fromarray(a[..., 0]).save(tmp_path / "g.jpeg")
    g = read_picture(tmp_path / "g.jpeg")
    assert not g.rgb and g.shape == (24, 40)


def test_jpeg_exif_orientation_is_applied(tmp_path: Path) -> None:
    a = np.zeros((20, 60, 3), np.uint8)
    a[:, :10] = 255  # bright band on the left of the stored picture
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    with pytest.warns(MedsegIOWarning, match="EXIF orientation"):
        v = read_picture(tmp_path / "phone.jpg")
    assert v.shape == (60, 20)
    assert v.array[:10, :, 0].mean() > 200 and v.array[-10:, :, 0].mean() < 50  # band on top
    Image.fromarray(a).save(tmp_path / "plain.jpg")
    with warnings.catch_warnings():
        warnings.simplefilter("error", MedsegIOWarning)
        assert read_picture(tmp_path / "plain.jpg").shape == (20, 60)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32])
def test_greyscale_tiff_round_trip(tmp_path: Path, dtype) -> None:
    a = (RNG.random((19, 23)) * 1000).astype(dtype)
    tifffile.imwrite(tmp_path / "g.tif", a)
    v = read_picture(tmp_path / "g.tif")
    assert v.array.dtype == dtype and v.metadata["format"] == "tiff"
    np.testing.assert_array_equal(v.array, a)


@pytest.mark.parametrize("channels", [3, 4])
def test_sixteen_bit_colour_tiff(tmp_path: Path, channels: int) -> None:
    a = RNG.integers(0, 65536, (9, 11, channels)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "c.tiff", a, photometric="rgb",
                     extrasamples=["unassalpha"] if channels == 4 else None)
    v = read_picture(tmp_path / "c.tiff")
    assert v.rgb and v.array.dtype == np.uint16 and v.shape == (9, 11)
    np.testing.assert_array_equal(v.array, a)


def test_planar_rgb_tiff_is_channels_last(tmp_path: Path) -> None:
    a = RNG.integers(0, 256, (3, 8, 10)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "p.tif", a, photometric="rgb", planarconfig="separate")
    v = read_picture(tmp_path / "p.tif")
    assert v.rgb
    np.testing.assert_array_equal(v.array, np.moveaxis(a, 0, -1))


def test_multi_page_tiff_is_a_volume(tmp_path: Path) -> None:
    a = RNG.integers(0, 4096, (5, 12, 16)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "stack.tif", a, photometric="minisblack")
    v = read_picture(tmp_path / "stack.tif")
    assert v.ndim == 3 and v.shape == (5, 12, 16) and not v.rgb
    np.testing.assert_array_equal(v.array, a)
    # pages written one by one (no shape metadata) stack too
    with tifffile.TiffWriter(tmp_path / "pages.tif") as tw:
        for page in a:
            tw.write(page)
    np.testing.assert_array_equal(read_picture(tmp_path / "pages.tif").array, a)


def test_tiff_pages_of_different_sizes_read_the_first_with_a_warning(tmp_path: Path) -> None:
    with tifffile.TiffWriter(tmp_path / "mixed.tif") as tw:
        tw.write(np.full((4, 5), 7, np.uint8))
        tw.write(np.full((6, 5), 9, np.uint8))
    with pytest.warns(MedsegIOWarning, match="only the first"):
        v = read_picture(tmp_path / "mixed.tif")
    assert v.shape == (4, 5) and int(v.array[0, 0]) == 7
    assert any("only the first" in w for w in v.metadata["warnings"])


def test_spacing_from_tiff_resolution_and_png_phys(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "cm.tif", np.zeros((4, 6), np.uint8),
                     resolution=(100.0, 50.0), resolutionunit="CENTIMETER")  # x 0.1, y 0.2 mm
    v = read_picture(tmp_path / "cm.tif")
    assert v.metadata["spacing_known"] is True
    assert v.spacing == pytest.approx((0.2, 0.1))
    assert v.napari_geometry()["scale"] == pytest.approx((0.2, 0.1))
    assert v.napari_geometry()["translate"] == (0.0, 0.0)

    Image.fromarray(np.zeros((4, 6), np.uint8)).save(tmp_path / "dpi.png", dpi=(254, 254))
    v = read_picture(tmp_path / "dpi.png")
    assert v.metadata["spacing_known"] is True and v.spacing == pytest.approx((0.1, 0.1), 1e-3)
    # 72 / 96 dpi are what software writes by default: not a physical size
    for dpi in (72, 96):
        Image.fromarray(np.zeros((4, 6), np.uint8)).save(tmp_path / "s.png", dpi=(dpi, dpi))
        v = read_picture(tmp_path / "s.png")
        assert v.metadata["spacing_known"] is False and v.spacing == (1.0, 1.0)
    tifffile.imwrite(tmp_path / "none.tif", np.zeros((4, 6), np.uint8),
                     resolution=(3.0, 3.0), resolutionunit="NONE")
    assert read_picture(tmp_path / "none.tif").metadata["spacing_known"] is False


def test_imagej_stack_spacing(tmp_path: Path) -> None:
    a = np.zeros((3, 4, 5), np.uint8)
    tifffile.imwrite(tmp_path / "ij.tif", a, imagej=True, resolution=(2.0, 2.0),
                     metadata={"spacing": 4.0, "unit": "um", "axes": "ZYX"})
    v = read_picture(tmp_path / "ij.tif")
    assert v.shape == (3, 4, 5)
    assert v.spacing == pytest.approx((0.004, 0.0005, 0.0005))
    assert v.metadata["spacing_known"] is True


@pytest.mark.parametrize(
    ("dpi", "expected"),
    [((254, 254), (0.1, 0.1)), ((254, 127), (0.2, 0.1)), ((72, 72), None), ((0, 0), None),
     ((1e-3, 1e-3), None), (None, None), (("a", 3), None)],
)
def test_spacing_from_dpi_table(dpi, expected) -> None:
    got = spacing_from_dpi(dpi)
    assert got == (pytest.approx(expected) if expected else None)


def test_read_volume_describe_path_and_read_volumes_handle_pictures(tmp_path: Path) -> None:
    a = np.zeros((30, 40, 3), np.uint8)
    a[..., 1] = 99
    f = tmp_path / "photo.png"
    Image.fromarray(a).save(f)
    v = read_volume(f)
    assert v.rgb and v.shape == (30, 40)
    assert [x.shape for x in read_volumes(f)] == [(30, 40)]
    info = describe_path(f)
    json.dumps(info)
    assert info["format"] == "png" and info["shape"] == [30, 40]
    assert info["channels"] == 3 and info["rgb"] is True and info["n_channels"] == 3
    assert info["dtype"] == "uint8" and info["spacing"] == [1.0, 1.0]
    assert info["spacing_known"] is False and info["modality"] == "unknown"
    assert info["series"] == [] and any("Pixel size" in w for w in info["warnings"])
    assert info["value_range"] == [0, 99]


# ------------------------------------------------------------------------------ bad input


def _bad_inputs(tmp_path: Path) -> dict[str, Path]:
    photo = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    out: dict[str, Path] = {}
    for fmt in ("png", "jpg"):
        whole = tmp_path / f"whole.{fmt}"
        Image.fromarray(photo).save(whole)
        data = whole.read_bytes()
        out[f"truncated.{fmt}"] = tmp_path / f"truncated.{fmt}"
        out[f"truncated.{fmt}"].write_bytes(data[: len(data) // 2])
    out["empty.png"] = tmp_path / "empty.png"
    out["empty.png"].write_bytes(b"")
    out["notes.png"] = tmp_path / "notes.png"
    out["notes.png"].write_text("this is a text file, not a picture")
    out["header_only.png"] = tmp_path / "header_only.png"
    out["header_only.png"].write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    for n in (2, 5):
        out[f"c{n}.tif"] = tmp_path / f"c{n}.tif"
        tifffile.imwrite(out[f"c{n}.tif"], np.zeros((4, 5, n), np.uint8),
                         photometric="minisblack", planarconfig="contig")
    out["cut.tif"] = tmp_path / "cut.tif"
    tifffile.imwrite(tmp_path / "ok.tif", np.zeros((40, 50), np.uint16))
    out["cut.tif"].write_bytes((tmp_path / "ok.tif").read_bytes()[:40])
    out["hyper.tif"] = tmp_path / "hyper.tif"
    tifffile.imwrite(out["hyper.tif"], np.zeros((2, 3, 4, 5), np.uint8), imagej=True,
                     metadata={"axes": "TZYX"})
    return out


def test_bad_pictures_raise_one_line_errors_naming_the_file(tmp_path: Path) -> None:
    for name, path in _bad_inputs(tmp_path).items():
        for reader in (read_picture, read_volume, describe_path):
            with pytest.raises(MedsegIOError) as exc:
                reader(path)
            text = _one_line(exc)
            assert name in text, text
    with pytest.raises(MedsegIOError, match="5 channels"):
        read_picture(tmp_path / "c5.tif")
    with pytest.raises(MedsegIOError, match="empty"):
        read_picture(tmp_path / "empty.png")
    with pytest.raises(MedsegIOError, match="not found"):
        read_picture(tmp_path / "missing.png")


# ------------------------------------------------------------------------------ CHASE_DB1


@pytest.mark.skipif(not CHASE.is_dir(), reason="CHASE_DB1 not in ../shared/data")
def test_chase_db1_photo_and_mask() -> None:
    image = read_volume(CHASE / "images" / "Image_01L.jpg")
    assert image.rgb and image.shape == (960, 999) and image.array.shape == (960, 999, 3)
    assert image.array.dtype == np.uint8 and image.metadata["format"] == "jpeg"
    mask = read_volume(CHASE / "masks" / "Image_01L_1stHO.png")
    assert not mask.rgb and mask.shape == (960, 999)
    assert set(np.unique(mask.array).tolist()) == {0, 1}
    assert 0.05 < mask.array.mean() < 0.1
    info = describe_path(CHASE / "images" / "Image_01L.jpg")
    assert info["shape"] == [960, 999] and info["channels"] == 3


# ------------------------------------------------------------------------------ writing


@pytest.mark.parametrize(
    ("values", "suffix", "dtype"),
    [(np.array([[0, 1], [2, 255]], np.uint8), ".png", np.uint8),
     (np.array([[0, 3], [300, 65535]], np.int64), ".png", np.uint16),
     (np.array([[True, False], [False, True]]), ".png", np.uint8),
     (np.array([[0.0, 2.0], [7.0, 0.0]]), ".png", np.uint8),
     (np.array([[0, 70000], [5, 1]], np.uint32), ".tif", np.uint32),
     (np.array([[0, 3], [300, 2]], np.int16), ".tiff", np.int16),
     (np.array([[0, 3], [9, 2]], np.uint8), ".TIF", np.uint8)],
)
def test_write_picture_round_trip(tmp_path: Path, values, suffix, dtype) -> None:
    big = np.kron(values, np.ones((7, 9), values.dtype))  # not square, not tiny
    out = write_picture(big, tmp_path / f"labels{suffix}")
    assert out == tmp_path / f"labels{suffix}"
    back = read_picture(out)
    assert back.array.dtype == dtype and back.shape == big.shape
    np.testing.assert_array_equal(back.array, big.astype(dtype))
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"labels{suffix}"]


def test_write_picture_keeps_known_spacing(tmp_path: Path) -> None:
    v = Volume(np.eye(6, 8, dtype=np.uint8), (0.2, 0.1), metadata={"spacing_known": True})
    back_tif = read_picture(write_picture(v, tmp_path / "l.tif"))
    assert back_tif.spacing == pytest.approx((0.2, 0.1))
    back_png = read_picture(write_picture(v, tmp_path / "l.png"))
    assert back_png.metadata["spacing_known"] and back_png.spacing == pytest.approx((0.2, 0.1),
                                                                                    rel=1e-3)
    unknown = read_picture(write_picture(Volume(np.eye(4, dtype=np.uint8)), tmp_path / "u.png"))
    assert unknown.metadata["spacing_known"] is False


@pytest.mark.parametrize(
    ("data", "name", "match"),
    [(np.array([[0.5, 1.0]]), "l.png", "non-integer"),
     (np.array([[0, -1]]), "l.png", "negative"),
     (np.zeros((2, 3, 4), np.uint8), "l.png", "2D"),
     (np.array([[0, 70000]]), "l.png", "65535"),
     (np.array([[np.nan, 1.0]]), "l.tif", "non-integer"),
     (np.zeros((3, 3), np.uint8), "l.jpg", "must end in"),
     (Volume(np.zeros((3, 3, 3), np.uint8), (1.0, 1.0), rgb=True), "l.png", "colour")],
)
def test_write_picture_refuses_and_writes_nothing(tmp_path: Path, data, name, match) -> None:
    target = tmp_path / name
    with pytest.raises(MedsegIOError, match=match) as exc:
        write_picture(data, target)
    _one_line(exc)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_old_file_and_missing_folder_is_an_error(tmp_path: Path) -> None:
    old = write_picture(np.ones((3, 3), np.uint8), tmp_path / "keep.png")
    before = old.read_bytes()
    with pytest.raises(MedsegIOError):
        write_picture(np.full((3, 3), -4), old)
    assert old.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.png"]
    with pytest.raises(MedsegIOError, match="does not exist"):
        write_picture(np.ones((3, 3), np.uint8), tmp_path / "nope" / "x.png")


def test_write_probability_png(tmp_path: Path) -> None:
    p = RNG.random((33, 17))
    p[0, 0], p[0, 1] = 0.0, 1.0
    out = write_probability_png(p, tmp_path / "prob.png")
    back = read_picture(out)
    assert back.array.dtype == np.uint16 and back.shape == p.shape
    assert back.array[0, 0] == 0 and back.array[0, 1] == 65535
    np.testing.assert_allclose(back.array / 65535.0, p, atol=1 / 131070 + 1e-12)
    for bad in (p * 2, np.full((3, 3), np.nan), np.zeros((2, 3, 3))):
        with pytest.raises(MedsegIOError):
            write_probability_png(bad, tmp_path / "bad.png")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["prob.png"]
