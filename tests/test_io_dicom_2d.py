"""2D DICOM: X-ray (CR/DX), mammography, ultrasound (RGB, YBR, palette), captures, cine loops.

Files written here with pydicom (exact values known) plus pydicom's bundled test files.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.pixels import apply_color_lut, convert_color_space
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from napari_medseg.io import (
    MedsegIOError,
    MedsegIOWarning,
    MultipleSeriesError,
    describe_path,
    list_dicom_series,
    read_dicom,
    read_dicom_series,
    read_volume,
)

DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
MG_STORAGE = "1.2.840.10008.5.1.4.1.1.1.2"  # Digital Mammography X-Ray - For Presentation
CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
US_STORAGE = "1.2.840.10008.5.1.4.1.1.6.1"
US_MULTIFRAME_STORAGE = "1.2.840.10008.5.1.4.1.1.3.1"
SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
SC_MULTIFRAME_GREY = "1.2.840.10008.5.1.4.1.1.7.2"  # Multi-frame Grayscale Byte SC
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def _pydicom_file(name: str) -> Path:
    path = pydicom.data.get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not bundled offline")
    return Path(path)


def _needs_decoder(path: Path) -> None:
    """Skip when pydicom has no decoder for the file's transfer syntax."""
    from pydicom.pixels import get_decoder

    ts = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    if ts.is_compressed and not get_decoder(ts).is_available:
        pytest.skip(f"no decoder installed for {ts.name} ({path.name})")


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MedsegIOWarning)
        return fn(*args, **kwargs)


# ----------------------------------------------------------------------------- synthetic writers


def write_image(
    path: Path,
    pixels: np.ndarray,
    *,
    sop_class: str,
    modality: str,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    signed: bool = False,
    series_uid: str | None = None,
    instance: int = 1,
    planar: int = 0,
    **tags,
) -> Path:
    """Write an uncompressed image; ``pixels`` is (Y, X), (Y, X, 3), (F, Y, X) or (F, Y, X, 3)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientID = "PHANTOM-2D"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.2"
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.SeriesNumber = 3
    ds.InstanceNumber = instance
    colour = photometric not in ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR")
    frames = pixels.ndim == (4 if colour else 3)
    if frames:
        ds.NumberOfFrames = pixels.shape[0]
    ds.Rows, ds.Columns = pixels.shape[1:3] if frames else pixels.shape[:2]
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = photometric
    if colour:
        ds.PlanarConfiguration = planar
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated = bits
    ds.BitsStored = bits_stored or bits
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    data = np.ascontiguousarray(pixels)
    if colour and planar == 1:  # colour-by-plane: RRR...GGG...BBB per frame
        data = np.ascontiguousarray(np.moveaxis(data, -1, -3))
    ds.PixelData = data.astype(data.dtype.newbyteorder("<")).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


def us_region(dx_cm: float, dy_cm: float, units: int = 3, spatial_format: int = 1) -> Dataset:
    region = Dataset()
    region.RegionSpatialFormat = spatial_format
    region.RegionDataType = 1
    region.RegionFlags = 0
    region.RegionLocationMinX0, region.RegionLocationMinY0 = 0, 0
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = 39, 29
    region.PhysicalUnitsXDirection = units
    region.PhysicalUnitsYDirection = units
    region.PhysicalDeltaX = dx_cm
    region.PhysicalDeltaY = dy_cm
    return region


def _coloured(shape=(30, 40)) -> np.ndarray:
    """A uint8 RGB picture whose three channels all differ: R along x, G constant, B along y."""
    y, x = np.mgrid[: shape[0], : shape[1]]
    return np.stack(
        [(x * 255 // (shape[1] - 1)), np.full(shape, 77), (y * 255 // (shape[0] - 1))], axis=-1
    ).astype(np.uint8)


@pytest.fixture
def grey12() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 4096, size=(24, 32)).astype(np.uint16)


# ----------------------------------------------------------------------------- X-ray, MONOCHROME1


def test_monochrome1_dx_is_inverted_exactly_with_imager_spacing(tmp_path: Path, grey12) -> None:
    path = write_image(
        tmp_path / "chest.dcm", grey12, sop_class=DX_STORAGE, modality="DX",
        photometric="MONOCHROME1", bits_stored=12, ImagerPixelSpacing=[0.139, 0.15],
        WindowCenter=2000, WindowWidth=3000, EstimatedRadiographicMagnificationFactor=1.1,
    )
    vol = read_volume(path)
    assert vol.ndim == 2 and vol.shape == (24, 32) and not vol.rgb
    assert vol.array.dtype == np.uint16
    assert np.array_equal(vol.array, 4095 - grey12)  # high values are bright now
    assert vol.spacing == (0.139, 0.15)
    meta = vol.metadata
    assert meta["inverted"] is True and "MONOCHROME1" in meta["inversion_note"]
    assert meta["spacing_known"] is True and meta["spacing_source"] == "ImagerPixelSpacing"
    assert "detector" in meta["spacing_note"] and meta["magnification_factor"] == 1.1
    assert meta["window_center"] == 4095 - 2000 and meta["window_width"] == 3000
    assert vol.modality == "DX" and meta["layout"] == "picture"
    # a projection has no patient orientation: napari shows it as stored, positive spacing
    assert not vol.has_orientation and meta["orientation_unknown"] is True
    geometry = vol.napari_geometry()
    assert geometry["scale"] == (0.139, 0.15) and geometry["translate"] == (0.0, 0.0)
    json.dumps(meta)  # layer.metadata must stay JSON-serialisable


def test_monochrome1_with_rescale_and_signed_data(tmp_path: Path, grey12) -> None:
    path = write_image(
        tmp_path / "cr.dcm", grey12, sop_class=CR_STORAGE, modality="CR",
        photometric="MONOCHROME1", bits_stored=12, PixelSpacing=[0.2, 0.2],
        ImagerPixelSpacing=[0.25, 0.25], RescaleSlope="0.5", RescaleIntercept="-100",
    )
    vol = read_volume(path)
    assert vol.array.dtype == np.float32
    np.testing.assert_array_equal(vol.array, (4095 - grey12) * 0.5 - 100)
    # PixelSpacing (calibrated in the patient) wins over ImagerPixelSpacing
    assert vol.spacing == (0.2, 0.2) and vol.metadata["spacing_source"] == "PixelSpacing"
    assert "spacing_note" not in vol.metadata

    signed = (grey12.astype(np.int32) - 2048).astype(np.int16)
    path = write_image(
        tmp_path / "signed.dcm", signed, sop_class=DX_STORAGE, modality="DX",
        photometric="MONOCHROME1", signed=True, ImagerPixelSpacing=[0.1, 0.1],
    )
    vol = read_volume(path)
    assert vol.array.dtype == np.int16
    assert np.array_equal(vol.array, -1 - signed.astype(np.int32))


def test_mammogram_with_patient_orientation_tags_has_no_3d_orientation(tmp_path: Path) -> None:
    pixels = np.arange(20 * 16, dtype=np.uint16).reshape(20, 16)
    path = write_image(
        tmp_path / "mg.dcm", pixels, sop_class=MG_STORAGE, modality="MG",
        ImagerPixelSpacing=[0.07, 0.07], PatientOrientation=["A", "R"],
        # even a stray ImageOrientationPatient does not make a projection a slice
        ImageOrientationPatient=[1, 0, 0, 0, 1, 0], ImagePositionPatient=[0, 0, 0],
    )
    vol = read_volume(path)
    assert np.array_equal(vol.array, pixels) and vol.spacing == (0.07, 0.07)
    assert not vol.has_orientation and vol.metadata["inverted"] is False
    (info,) = list_dicom_series(path)
    assert info.layout == "picture" and not info.has_orientation and info.modality == "MG"


def test_pydicom_cr_monochrome1_files_with_real_headers() -> None:
    folder = _pydicom_file("CT_small.dcm").parent / "dicomdirtests" / "77654033" / "CR1"
    if not folder.is_dir():
        pytest.skip("pydicom's dicomdirtests are not bundled")
    (path,) = sorted(folder.iterdir())
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1" and "PixelSpacing" not in ds
    vol = read_volume(path)
    expected = ((2 ** int(ds.BitsStored) - 1) - ds.pixel_array) * float(ds.RescaleSlope) + float(
        ds.RescaleIntercept
    )
    np.testing.assert_allclose(vol.array, expected.astype(np.float32))
    assert vol.spacing == tuple(float(v) for v in ds.ImagerPixelSpacing)
    assert vol.modality == "CR" and not vol.has_orientation and vol.metadata["inverted"]


def test_mixed_folder_lists_ct_series_and_xray_images() -> None:
    folder = _pydicom_file("CT_small.dcm").parent / "dicomdirtests" / "77654033"
    if not folder.is_dir():
        pytest.skip("pydicom's dicomdirtests are not bundled")
    infos = _quiet(list_dicom_series, folder)
    by_modality = sorted((i.modality, i.layout) for i in infos)
    assert by_modality == [("CR", "picture")] * 3 + [("CT", "volume")]
    ct = next(i for i in infos if i.modality == "CT")
    assert ct.has_orientation and len(ct.shape) == 3
    with pytest.raises(MultipleSeriesError, match="2D image") as exc:
        _quiet(read_volume, folder)
    assert len(exc.value.series) == 4
    volumes = _quiet(read_dicom, folder)
    assert sorted(v.ndim for v in volumes) == [2, 2, 2, 3]
    cr = next(i for i in infos if i.modality == "CR")
    assert _quiet(read_volume, folder, series_uid=cr.key).shape == tuple(cr.shape)


def test_mixed_synthetic_folder_ct_stack_plus_xray(tmp_path: Path, grey12) -> None:
    ct_uid = generate_uid()
    for k in range(3):
        write_image(
            tmp_path / "ct" / f"s{k}.dcm", (grey12 + k).astype(np.int16), sop_class=CT_STORAGE,
            modality="CT", signed=True, series_uid=ct_uid, instance=k + 1,
            ImagePositionPatient=[0, 0, 2.5 * k], ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
            PixelSpacing=[0.8, 0.8], RescaleSlope=1, RescaleIntercept=-1024,
        )
    write_image(tmp_path / "xray" / "dx.dcm", grey12, sop_class=DX_STORAGE, modality="DX",
                ImagerPixelSpacing=[0.15, 0.15])
    infos = list_dicom_series(tmp_path)
    assert sorted((i.modality, i.shape) for i in infos) == [("CT", (3, 24, 32)), ("DX", (24, 32))]
    ct = read_volume(tmp_path, series_uid=ct_uid)
    assert ct.has_orientation and ct.spacing == (2.5, 0.8, 0.8)
    assert "orientation_unknown" not in ct.metadata and ct.metadata["spacing_known"]
    dx = read_volume(tmp_path / "xray")
    assert dx.shape == (24, 32) and not dx.has_orientation


def test_several_views_in_one_series_are_separate_images(tmp_path: Path, grey12) -> None:
    uid = generate_uid()
    for k, view in enumerate(("PA", "LL")):
        write_image(tmp_path / f"{view}.dcm", grey12 + k, sop_class=DX_STORAGE, modality="DX",
                    series_uid=uid, instance=k + 1, ImagerPixelSpacing=[0.15, 0.15],
                    ViewPosition=view)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MedsegIOWarning)  # nothing odd about two views
        infos = list_dicom_series(tmp_path)
        volumes = read_dicom(tmp_path)
    assert [i.key for i in infos] == [f"{uid}#1", f"{uid}#2"]
    assert all(i.layout == "picture" and i.shape == (24, 32) for i in infos)
    assert [v.name for v in volumes] == ["PA", "LL"]
    assert np.array_equal(volumes[1].array, grey12 + 1)


def test_image_without_any_spacing_says_so(tmp_path: Path, grey12) -> None:
    path = write_image(tmp_path / "sc.dcm", grey12.astype(np.uint8), sop_class=SC_STORAGE,
                       modality="OT")
    with pytest.warns(MedsegIOWarning, match="1 mm pixels assumed"):
        vol = read_volume(path)
    assert vol.spacing == (1.0, 1.0)
    assert vol.metadata["spacing_known"] is False and vol.metadata["spacing_source"] is None
    assert any("1 mm pixels" in w for w in vol.metadata["warnings"])
    assert not vol.has_orientation


# ----------------------------------------------------------------------------- colour


@pytest.mark.parametrize("planar", [0, 1])
def test_rgb_ultrasound_with_calibrated_region(tmp_path: Path, planar: int) -> None:
    rgb = _coloured()
    doppler = us_region(0.5, 0.0, units=4, spatial_format=3)  # not in cm: ignored
    path = write_image(
        tmp_path / "us.dcm", rgb, sop_class=US_STORAGE, modality="US", photometric="RGB",
        planar=planar, SequenceOfUltrasoundRegions=Sequence([doppler, us_region(0.01, 0.02)]),
    )
    vol = read_volume(path)
    assert vol.rgb and vol.array.shape == (30, 40, 3) and vol.shape == (30, 40) and vol.ndim == 2
    assert vol.array.dtype == np.uint8
    assert np.array_equal(vol.array, rgb)  # channel order R, G, B exactly
    assert vol.spacing == pytest.approx((0.2, 0.1))  # rows from PhysicalDeltaY, cm -> mm
    meta = vol.metadata
    assert meta["spacing_source"] == "SequenceOfUltrasoundRegions" and meta["spacing_known"]
    assert meta["colour"] == "RGB" and meta["photometric_interpretation"] == "RGB"
    assert not vol.has_orientation and vol.modality == "US"
    red, green, blue = vol.channel_volumes()
    assert np.array_equal(green.array, np.full((30, 40), 77))
    assert red.array[0, -1] == 255 and blue.array[-1, 0] == 255


def test_ultrasound_regions_with_other_units_give_no_spacing(tmp_path: Path) -> None:
    path = write_image(
        tmp_path / "us.dcm", _coloured(), sop_class=US_STORAGE, modality="US", photometric="RGB",
        SequenceOfUltrasoundRegions=Sequence([us_region(0.01, 0.01, units=0)]),
    )
    with pytest.warns(MedsegIOWarning, match="1 mm pixels assumed"):
        vol = read_volume(path)
    assert vol.spacing == (1.0, 1.0) and vol.metadata["spacing_known"] is False


def test_ultrasound_regions_that_disagree_warn(tmp_path: Path) -> None:
    regions = Sequence([us_region(0.01, 0.01), us_region(0.03, 0.03)])
    path = write_image(tmp_path / "us.dcm", _coloured(), sop_class=US_STORAGE, modality="US",
                       photometric="RGB", SequenceOfUltrasoundRegions=regions)
    with pytest.warns(MedsegIOWarning, match="different pixel sizes"):
        vol = read_volume(path)
    assert vol.spacing == pytest.approx((0.1, 0.1))


def test_ybr_full_secondary_capture_is_converted_to_rgb(tmp_path: Path) -> None:
    rgb = _coloured()
    rgb[:5, :5] = (255, 0, 0)  # a pure red corner
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    path = write_image(tmp_path / "sc.dcm", ybr, sop_class=SC_STORAGE, modality="OT",
                       photometric="YBR_FULL", PixelSpacing=[0.5, 0.5])
    vol = read_volume(path)
    assert vol.rgb and vol.array.shape == (30, 40, 3)
    assert np.abs(vol.array.astype(int) - rgb).max() <= 2  # 8-bit YCbCr round trip
    assert vol.array[0, 0, 0] >= 253 and vol.array[0, 0, 1:].max() <= 2
    assert vol.metadata["colour"] == "RGB (stored as YBR_FULL)" and vol.spacing == (0.5, 0.5)


def test_pydicom_ybr_full_422_matches_the_rgb_original() -> None:
    reference_path = _pydicom_file("SC_rgb_rle.dcm")
    _needs_decoder(reference_path)
    reference = pydicom.dcmread(reference_path).pixel_array.astype(int)
    vol = read_volume(_pydicom_file("SC_ybr_full_422_uncompressed.dcm"))
    assert vol.rgb and vol.array.shape == reference.shape
    assert np.abs(vol.array.astype(int) - reference).max() <= 6  # 4:2:2 chroma subsampling
    assert np.array_equal(read_volume(reference_path).array, reference)


def test_pydicom_palette_colour_ultrasound() -> None:
    path = _pydicom_file("examples_palette.dcm")
    ds = pydicom.dcmread(path)
    vol = read_volume(path)
    expected = apply_color_lut(ds.pixel_array, ds) // 256  # 8-bit colours stored as c * 256
    assert vol.rgb and vol.array.dtype == np.uint8 and np.array_equal(vol.array, expected)
    assert vol.metadata["colour"] == "RGB (palette colour)"
    delta = float(ds.SequenceOfUltrasoundRegions[0].PhysicalDeltaX) * 10
    assert vol.spacing == pytest.approx((delta, delta))
    assert not vol.has_orientation


def test_pydicom_rgb_ultrasound_without_calibration() -> None:
    path = _pydicom_file("examples_rgb_color.dcm")
    with pytest.warns(MedsegIOWarning, match="1 mm pixels"):
        vol = read_volume(path)
    assert np.array_equal(vol.array, pydicom.dcmread(path).pixel_array)
    assert vol.rgb and vol.shape == (240, 320) and vol.metadata["spacing_known"] is False
    big_endian = _quiet(read_volume, _pydicom_file("ExplVR_BigEnd.dcm"))
    assert big_endian.rgb and big_endian.array.shape == (60, 80, 3)


def test_four_samples_per_pixel_is_a_clear_error(tmp_path: Path) -> None:
    path = write_image(tmp_path / "cmyk.dcm", _coloured(), sop_class=SC_STORAGE, modality="OT",
                       photometric="RGB")
    ds = pydicom.dcmread(path)
    ds.SamplesPerPixel = 4
    ds.PhotometricInterpretation = "ARGB"
    ds.PixelData = np.zeros((30, 40, 4), np.uint8).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    with pytest.raises(MedsegIOError, match="4 samples per pixel") as exc:
        _quiet(read_volume, path)
    assert "\n" not in str(exc.value)


def test_truncated_colour_file_is_a_one_line_error(tmp_path: Path) -> None:
    path = write_image(tmp_path / "us.dcm", _coloured(), sop_class=US_STORAGE, modality="US",
                       photometric="RGB")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(MedsegIOError) as exc:
        _quiet(read_volume, path)
    assert "\n" not in str(exc.value)


# ----------------------------------------------------------------------------- frames (cine)


def test_greyscale_ultrasound_cine_is_frames_over_time(tmp_path: Path) -> None:
    frames = np.random.default_rng(2).integers(0, 256, size=(5, 30, 40)).astype(np.uint8)
    path = write_image(
        tmp_path / "cine.dcm", frames, sop_class=US_MULTIFRAME_STORAGE, modality="US",
        FrameTime=40.0, SequenceOfUltrasoundRegions=Sequence([us_region(0.01, 0.01)]),
    )
    vol = read_volume(path)
    assert vol.shape == (5, 30, 40) and not vol.rgb and np.array_equal(vol.array, frames)
    assert vol.spacing == pytest.approx((1.0, 0.1, 0.1))
    meta = vol.metadata
    assert meta["layout"] == "frames" and meta["frame_axis"] == "time"
    assert meta["frame_time_ms"] == 40.0 and "not slices" in meta["frame_note"]
    assert not vol.has_orientation
    (info,) = list_dicom_series(path)
    assert info.n_slices == 5 and info.frame_axis == "time" and info.shape == (5, 30, 40)


def test_colour_cine_is_frames_y_x_rgb(tmp_path: Path) -> None:
    frames = np.stack([np.roll(_coloured(), k, axis=1) for k in range(4)])
    path = write_image(tmp_path / "cine.dcm", frames, sop_class=US_MULTIFRAME_STORAGE,
                       modality="US", photometric="RGB", FrameTime=33.3,
                       SequenceOfUltrasoundRegions=Sequence([us_region(0.02, 0.02)]))
    vol = read_volume(path)
    assert vol.rgb and vol.array.shape == (4, 30, 40, 3) and vol.shape == (4, 30, 40)
    assert np.array_equal(vol.array, frames) and vol.metadata["frame_axis"] == "time"


def test_multiframe_greyscale_capture_without_geometry(tmp_path: Path) -> None:
    frames = np.arange(3 * 8 * 9, dtype=np.uint8).reshape(3, 8, 9)
    path = write_image(tmp_path / "mf.dcm", frames, sop_class=SC_MULTIFRAME_GREY, modality="OT",
                       SliceThickness=5.0)
    vol = _quiet(read_volume, path)
    assert np.array_equal(vol.array, frames) and vol.spacing == (1.0, 1.0, 1.0)
    assert vol.metadata["frame_axis"] == "unknown" and not vol.has_orientation
    assert not any("InstanceNumber" in w for w in vol.metadata["warnings"])


def test_pydicom_ybr_cine_ultrasound() -> None:
    path = _pydicom_file("examples_ybr_color.dcm")
    _needs_decoder(path)
    vol = read_volume(path)
    assert vol.rgb and vol.array.shape == (30, 240, 320, 3)
    assert vol.metadata["frame_axis"] == "time" and vol.metadata["frame_time_ms"] == 33.333
    assert np.array_equal(vol.array, pydicom.dcmread(path).pixel_array)


def test_pydicom_two_frame_rgb_capture() -> None:
    path = _pydicom_file("SC_rgb_rle_2frame.dcm")
    _needs_decoder(path)
    vol = read_volume(path)
    assert vol.rgb and vol.array.shape == (2, 100, 100, 3)
    assert np.array_equal(vol.array, pydicom.dcmread(path).pixel_array)


# ----------------------------------------------------------------------------- 3D unchanged


def test_oriented_ct_slice_keeps_its_orientation() -> None:
    vol = read_volume(_pydicom_file("CT_small.dcm"))
    assert vol.has_orientation and vol.metadata["layout"] == "volume"
    assert "orientation_unknown" not in vol.metadata and vol.metadata["spacing_known"]
    assert vol.metadata["colour"] == "greyscale" and not vol.rgb


# ----------------------------------------------------------------------------- info and napari


def test_describe_path_shows_modality_shape_and_colour(tmp_path: Path) -> None:
    path = write_image(
        tmp_path / "us.dcm", _coloured(), sop_class=US_STORAGE, modality="US", photometric="RGB",
        SequenceOfUltrasoundRegions=Sequence([us_region(0.01, 0.02)]),
    )
    info = describe_path(path)
    json.dumps(info)
    (entry,) = info["series"]
    assert entry["modality"] == "US" and entry["shape"] == [30, 40]
    assert entry["rgb"] is True and entry["colour"] == "RGB" and entry["layout"] == "picture"
    assert entry["spacing_source"] == "SequenceOfUltrasoundRegions"
    assert entry["has_orientation"] is False
    assert info["modality"] == "US" and info["shape"] == [30, 40]
    np.testing.assert_allclose(info["spacing"], [0.2, 0.1])


def test_read_dicom_series_and_read_volume_agree(tmp_path: Path, grey12) -> None:
    path = write_image(tmp_path / "dx.dcm", grey12, sop_class=DX_STORAGE, modality="DX",
                       photometric="MONOCHROME1", bits_stored=12, ImagerPixelSpacing=[0.1, 0.1])
    a, b = read_volume(path), read_dicom_series(tmp_path)
    assert np.array_equal(a.array, b.array) and a.spacing == b.spacing
    np.testing.assert_array_equal(a.affine, b.affine)


def test_napari_reader_gives_an_rgb_image_layer(tmp_path: Path) -> None:
    pytest.importorskip("napari")
    from napari_medseg._reader import get_reader

    rgb = _coloured()
    path = write_image(tmp_path / "us.dcm", rgb, sop_class=US_STORAGE, modality="US",
                       photometric="RGB", SequenceOfUltrasoundRegions=Sequence([us_region(0.01, 0.02)]))
    reader = get_reader(str(path))
    assert callable(reader)
    ((data, kwargs, layer_type),) = reader(str(path))
    assert layer_type == "image" and kwargs.get("rgb") is True
    assert np.array_equal(np.asarray(data), rgb)
    assert tuple(kwargs["scale"]) == pytest.approx((0.2, 0.1))  # positive: shown as stored
    assert kwargs["metadata"]["medseg"]["rgb"] is True


def test_napari_reader_gives_a_greyscale_xray_image_layer(tmp_path: Path, grey12) -> None:
    pytest.importorskip("napari")
    from napari_medseg._reader import get_reader

    path = write_image(tmp_path / "dx.dcm", grey12, sop_class=DX_STORAGE, modality="DX",
                       photometric="MONOCHROME1", bits_stored=12, ImagerPixelSpacing=[0.1, 0.1])
    ((data, kwargs, layer_type),) = get_reader(str(path))(str(path))
    assert layer_type == "image" and not kwargs.get("rgb")
    assert np.array_equal(np.asarray(data), 4095 - grey12)
    assert tuple(kwargs["scale"]) == pytest.approx((0.1, 0.1))
    assert kwargs["metadata"]["medseg"]["source"]["spacing_source"] == "ImagerPixelSpacing"
