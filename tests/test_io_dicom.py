"""DICOM discovery and reading: real samples, pydicom's bundled files and series written here."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from napari_medseg.io import (
    DICOM_CODECS_EXTRA,
    MedsegIOError,
    MedsegIOWarning,
    MissingDecoderError,
    MultipleSeriesError,
    describe_path,
    list_dicom_series,
    read_dicom,
    read_dicom_series,
    read_nifti,
    read_volume,
    read_volumes,
)

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _pydicom_file(name: str) -> Path:
    try:
        path = pydicom.data.get_testdata_file(name, download=False)
    except TypeError:  # older pydicom without the download argument
        path = pydicom.data.get_testdata_file(name)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not bundled offline")
    return Path(path)


def _ras(ipp) -> np.ndarray:
    return (LPS_TO_RAS @ np.r_[np.asarray(ipp, float), 1.0])[:3]


# ----------------------------------------------------------------------- synthetic series writer


def write_slice(
    path: Path,
    pixels: np.ndarray,
    ipp,
    *,
    iop=(1, 0, 0, 0, 1, 0),
    pixel_spacing=(0.8, 0.7),
    series_uid: str,
    instance: int,
    slope: float = 1.0,
    intercept: float = -1024.0,
    modality: str = "CT",
    description: str = "synthetic",
    thickness: float = 2.0,
) -> None:
    """Write one uncompressed CT slice; stored values = (HU - intercept) / slope."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientID = "PHANTOM-1"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.StudyDescription = "synthetic study"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesDescription = description
    ds.SeriesNumber = 7
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [f"{v:.6f}" for v in ipp]
    ds.ImageOrientationPatient = [f"{v:.8f}" for v in iop]
    ds.PixelSpacing = [f"{v}" for v in pixel_spacing]
    ds.SliceThickness = thickness
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleSlope = f"{slope}"
    ds.RescaleIntercept = f"{intercept}"
    ds.PixelData = np.ascontiguousarray(pixels.astype("<i2")).tobytes()
    ds.save_as(str(path), enforce_file_format=True)


def make_series(
    folder: Path,
    hu: np.ndarray,
    *,
    spacing: float = 2.0,
    origin=(-40.0, -30.0, 100.0),
    iop=(1, 0, 0, 0, 1, 0),
    skip: tuple[int, ...] = (),
    series_uid: str | None = None,
    prefix: str = "img",
    rng: np.random.Generator | None = None,
    slope: float = 1.0,
    intercept: float = -1024.0,
    step_vector=None,
    description: str = "synthetic",
) -> tuple[str, list[np.ndarray]]:
    """Write ``hu`` (Z, Y, X) as slices with shuffled names and misleading InstanceNumbers.

    Returns the series UID and the LPS positions of the written slices (in array order).
    """
    rng = rng or np.random.default_rng(0)
    uid = series_uid or generate_uid()
    row, col = np.asarray(iop[:3], float), np.asarray(iop[3:], float)
    normal = np.cross(row, col)
    step = np.asarray(step_vector, float) if step_vector is not None else normal * spacing
    folder.mkdir(parents=True, exist_ok=True)
    kept = [k for k in range(hu.shape[0]) if k not in skip]
    names = rng.permutation(len(kept))
    instances = rng.permutation(len(kept)) + 1  # InstanceNumber unrelated to position
    positions = []
    for n, k in enumerate(kept):
        ipp = np.asarray(origin, float) + k * step
        positions.append(ipp)
        stored = np.round((hu[k] - intercept) / slope)
        write_slice(
            folder / f"{prefix}_{names[n]:03d}.dcm", stored, ipp, iop=iop, series_uid=uid,
            instance=int(instances[n]), slope=slope, intercept=intercept, description=description,
        )
    return uid, positions


@pytest.fixture
def hu_volume() -> np.ndarray:
    rng = np.random.default_rng(42)
    hu = rng.integers(-1000, 1500, size=(9, 12, 10)).astype(np.int16)
    hu[:, 0, 0] = np.arange(9) * 100 - 1000  # slice index encoded in a corner voxel
    return hu


# -------------------------------------------------------------------------- synthetic series tests


def test_shuffled_names_and_instance_numbers_sort_by_position(tmp_path: Path, hu_volume) -> None:
    uid, positions = make_series(tmp_path / "s", hu_volume)
    (tmp_path / "s" / "README.txt").write_text("not a DICOM file")
    (tmp_path / "s" / "junk.bin").write_bytes(os.urandom(2000))
    with warnings.catch_warnings():
        warnings.simplefilter("error", MedsegIOWarning)  # a clean series warns about nothing
        vol = read_volume(tmp_path / "s")
    assert vol.array.dtype == np.int16
    assert np.array_equal(vol.array, hu_volume)  # right order, HU rescale applied exactly
    assert vol.spacing == (2.0, 0.8, 0.7)
    assert vol.modality == "CT"
    assert vol.metadata["series_uid"] == uid and vol.metadata["format"] == "dicom"
    assert vol.metadata["warnings"] == []
    # the affine maps slice k, row 0, column 0 to that slice's ImagePositionPatient (in RAS)
    for k, ipp in enumerate(positions):
        np.testing.assert_allclose((vol.affine @ [k, 0, 0, 1])[:3], _ras(ipp), atol=1e-6)
    # one step along a row (column index) moves along +x in LPS, i.e. -x in RAS, by 0.7 mm
    np.testing.assert_allclose(vol.affine[:3, 2], [-0.7, 0, 0], atol=1e-12)
    np.testing.assert_allclose(vol.affine[:3, 1], [0, -0.8, 0], atol=1e-12)


def test_missing_slice_is_reported_not_hidden(tmp_path: Path, hu_volume) -> None:
    make_series(tmp_path / "gap", hu_volume, skip=(4,))
    with pytest.warns(MedsegIOWarning, match="1 slice\\(s\\) missing"):
        vol = read_volume(tmp_path / "gap")
    assert vol.shape == (8, 12, 10)
    (msg,) = [w for w in vol.metadata["warnings"] if "missing" in w]
    # names the neighbours of the gap: slices 4 and 5 of the stack, 4 mm apart instead of 2
    assert "slice 4" in msg and "slice 5" in msg and "4 mm" in msg and "2 mm apart" in msg
    assert "106 mm" in msg and "110 mm" in msg  # positions along the normal (z = 100 + 2k)
    (info,) = list_dicom_series(tmp_path / "gap")
    assert any("missing" in w for w in info.warnings)
    assert np.array_equal(vol.array, np.delete(hu_volume, 4, axis=0))


def test_uneven_spacing_is_reported(tmp_path: Path, hu_volume) -> None:
    folder = tmp_path / "uneven"
    uid = generate_uid()
    zs = [0, 2, 4, 6, 9, 11, 13, 15, 17]
    for k, z in enumerate(zs):
        write_slice(folder / f"{k}.dcm", hu_volume[k] + 1024, (0, 0, z), series_uid=uid, instance=k)
    with pytest.warns(MedsegIOWarning, match="Uneven slice spacing"):
        vol = read_volume(folder)
    assert vol.spacing[0] == 2.0


def test_two_interleaved_series_in_one_folder(tmp_path: Path, hu_volume) -> None:
    folder = tmp_path / "mixed"
    uid_a, _ = make_series(folder, hu_volume, prefix="x", description="A", rng=np.random.default_rng(1))
    uid_b, _ = make_series(
        folder, hu_volume[:5] + 7, prefix="y", description="B", spacing=3.0,
        origin=(0, 0, 0), rng=np.random.default_rng(2),
    )
    infos = list_dicom_series(folder)
    assert {i.series_uid for i in infos} == {uid_a, uid_b}
    assert all(i.is_image for i in infos)
    with pytest.raises(MultipleSeriesError) as err:
        read_volume(folder)
    assert isinstance(err.value, MedsegIOError) and isinstance(err.value, ValueError)
    assert {i.series_uid for i in err.value.series} == {uid_a, uid_b}
    volumes = {v.metadata["series_uid"]: v for v in read_dicom(folder)}
    assert np.array_equal(volumes[uid_a].array, hu_volume)
    assert np.array_equal(volumes[uid_b].array, hu_volume[:5] + 7)
    assert volumes[uid_b].spacing[0] == 3.0
    chosen = read_volume(folder, series_uid=uid_b)
    assert chosen.name == "B" and chosen.shape == (5, 12, 10)
    assert len(read_volumes(folder)) == 2
    with pytest.raises(MedsegIOError, match="No DICOM series with UID"):
        read_dicom_series(folder, series_uid="1.2.3.4")


def test_series_with_two_orientations_is_split(tmp_path: Path, hu_volume) -> None:
    folder = tmp_path / "split"
    uid = generate_uid()
    for k in range(3):
        write_slice(folder / f"ax{k}.dcm", hu_volume[k] + 1024, (0, 0, 2 * k), series_uid=uid, instance=k)
        write_slice(
            folder / f"cor{k}.dcm", hu_volume[k] + 1024, (0, 2 * k, 0), iop=(1, 0, 0, 0, 0, -1),
            series_uid=uid, instance=10 + k,
        )
    infos = list_dicom_series(folder)
    assert sorted(i.key for i in infos) == [f"{uid}#1", f"{uid}#2"]
    assert all(i.n_slices == 3 and i.series_uid == uid for i in infos)
    with pytest.raises(MultipleSeriesError):
        read_dicom_series(folder, series_uid=uid)
    vol = read_dicom_series(folder, series_uid=infos[0].key)
    assert vol.shape == (3, 12, 10)


def test_oblique_stack_in_a_subfolder_tree(tmp_path: Path, hu_volume) -> None:
    c, s = np.cos(0.4), np.sin(0.4)
    iop = (1, 0, 0, 0, c, s)  # rotated about x: oblique, but slices stacked along their normal
    make_series(tmp_path / "patient" / "study" / "series", hu_volume, iop=iop, spacing=2.5)
    vol = read_volume(tmp_path / "patient")
    assert np.array_equal(vol.array, hu_volume)
    assert vol.metadata["gantry_tilt_deg"] == 0.0
    assert not any("tilt" in w.lower() for w in vol.metadata["warnings"])
    rot = vol.affine[:3, :3] / np.asarray(vol.spacing)
    np.testing.assert_allclose(rot.T @ rot, np.eye(3), atol=1e-7)  # orthogonal, rotated
    np.testing.assert_allclose(vol.spacing, (2.5, 0.8, 0.7), atol=1e-6)


def test_gantry_tilt_is_resampled_onto_an_orthogonal_grid(tmp_path: Path) -> None:
    # a vertical rod (constant world x, y) imaged with slices whose origin shifts in y
    n, rows, cols, dz, tilt = 8, 40, 30, 2.0, np.radians(15)
    dy = dz * np.tan(tilt)
    hu = np.full((n, rows, cols), -1000, np.int16)
    rod_row = 10.0
    for k in range(n):
        # pixel row of the rod in slice k: world y = k*dy + row*0.8 == rod_row * 0.8
        r = rod_row - k * dy / 0.8
        hu[k, int(round(r)) - 1 : int(round(r)) + 2, 14:17] = 1000
    make_series(tmp_path / "tilt", hu, step_vector=(0, dy, dz))
    with pytest.warns(MedsegIOWarning, match="Gantry tilt of 15.0 degrees"):
        vol = read_volume(tmp_path / "tilt")
    assert abs(vol.metadata["gantry_tilt_deg"] - 15.0) < 0.1
    assert vol.spacing[0] == pytest.approx(dz)
    rod_rows = [float(np.mean(np.nonzero(vol.array[k, :, 15] > 0)[0])) for k in range(n)]
    assert np.ptp(rod_rows) < 0.6  # raw data moves by >2 pixels over the stack
    raw_rows = [float(np.mean(np.nonzero(hu[k, :, 15] > 0)[0])) for k in range(n)]
    assert np.ptp(raw_rows) > 2


def test_float_rescale_gives_float32(tmp_path: Path, hu_volume) -> None:
    make_series(tmp_path / "f", hu_volume.astype(float), slope=0.5, intercept=-1024.0)
    vol = read_volume(tmp_path / "f")
    assert vol.array.dtype == np.float32
    np.testing.assert_allclose(vol.array, hu_volume, atol=0.5)


def test_single_synthetic_file_is_2d(tmp_path: Path, hu_volume) -> None:
    make_series(tmp_path / "one", hu_volume[:1])
    (path,) = list((tmp_path / "one").iterdir())
    vol = read_volume(path)
    assert vol.shape == (12, 10) and vol.spacing == (0.8, 0.7)
    assert np.array_equal(vol.array, hu_volume[0])


def test_describe_dicom_folder_is_json(tmp_path: Path, hu_volume) -> None:
    uid, _ = make_series(tmp_path / "d", hu_volume)
    info = describe_path(tmp_path / "d")
    text = json.dumps(info)
    assert uid in text
    assert info["shape"] == [9, 12, 10]
    assert info["spacing"] == [2.0, 0.8, 0.7]
    assert info["modality"] == "CT"
    assert info["dtype"] == "int16"
    assert len(info["series"]) == 1
    entry = info["series"][0]
    assert entry["uid"] == uid and entry["slices"] == 9 and entry["description"] == "synthetic"
    assert np.allclose(np.array(info["affine"]), read_volume(tmp_path / "d").affine)


# ---------------------------------------------------------------------------- real sample series


HIPPOCROP = {
    "PGBM-002_HippoCrop": (32, 51, 35),
    "PGBM-006_HippoCrop": (35, 48, 36),
    "PGBM-003_HippoCrop": (40, 50, 34),
}


@pytest.mark.parametrize("name", sorted(HIPPOCROP))
def test_mr_hippocampus_crop_series(samples_dir: Path, name: str) -> None:
    folder = samples_dir / "mr_dicom_hippocrop" / name
    vol = read_volume(folder)
    assert vol.shape == HIPPOCROP[name]
    assert vol.spacing == (1.0, 1.0, 1.0)
    assert vol.modality == "MR"
    assert vol.metadata["warnings"] == []
    # slice k of the volume is the file whose position along the normal is k-th smallest
    files = sorted(folder.glob("*.dcm"), key=lambda f: float(pydicom.dcmread(f).ImagePositionPatient[2]))
    for k in (0, len(files) // 2, len(files) - 1):
        ds = pydicom.dcmread(files[k])
        assert np.array_equal(vol.array[k], ds.pixel_array)
        np.testing.assert_allclose((vol.affine @ [k, 0, 0, 1])[:3], _ras(ds.ImagePositionPatient))


def test_hippocrop_parent_folder_lists_four_series(samples_dir: Path) -> None:
    infos = list_dicom_series(samples_dir / "mr_dicom_hippocrop")
    assert len(infos) == 4 and all(i.is_image and i.modality == "MR" for i in infos)
    assert sorted(i.n_slices for i in infos) == [22, 32, 35, 40]
    with pytest.raises(MultipleSeriesError) as err:
        read_volume(samples_dir / "mr_dicom_hippocrop")
    assert len(err.value.series) == 4


def test_oblique_full_fov_t1(samples_dir: Path) -> None:
    folder = samples_dir / "mr_dicom_hippocrop" / "PGBM-003_T1post_fullFOV"
    (info,) = list_dicom_series(folder)
    assert info.description == "T1post" and info.modality == "MR" and info.n_slices == 22
    assert info.shape == (22, 320, 280)
    np.testing.assert_allclose(info.spacing, (6.5, 0.6875, 0.6875), atol=1e-6)
    vol = read_volume(folder)
    assert vol.array.dtype == np.uint16
    assert vol.metadata["gantry_tilt_deg"] == 0.0 and vol.metadata["warnings"] == []
    rot = vol.affine[:3, :3] / np.asarray(vol.spacing)
    np.testing.assert_allclose(rot.T @ rot, np.eye(3), atol=1e-6)  # orthonormal directions
    # rotated: the slice axis is ~10.8 degrees away from the scanner's z axis
    angle = np.degrees(np.arccos(abs(rot[2, 0])))
    assert 9.0 < angle < 13.0
    for f in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        world = _ras(ds.ImagePositionPatient)
        k = np.linalg.solve(vol.affine, np.r_[world, 1.0])[:3]
        np.testing.assert_allclose(k[1:], 0, atol=1e-4)  # every slice origin lies on the grid
        assert abs(k[0] - round(k[0])) < 1e-4


def test_jpeg2000_ct_series_in_hounsfield_units(samples_dir: Path) -> None:
    folder = samples_dir / "ct_abdomen_totalsegmentator" / "example_ct_dicom"
    (info,) = list_dicom_series(folder)
    assert "JPEG 2000" in info.transfer_syntax and info.decoder_available is True
    assert info.series_uid.startswith("no-uid-")  # this anonymised series has an empty UID
    vol = read_volume(folder)
    assert vol.shape == (20, 512, 512)
    np.testing.assert_allclose(vol.spacing, (2.0, 0.9765625, 0.9765625))
    assert vol.modality == "CT" and vol.array.dtype == np.int16 and vol.metadata["rescaled"]
    assert -1100 <= vol.array.min() <= -900  # air
    assert np.median(vol.array[:, :40, :40]) < -900  # corners outside the body are air
    assert 500 < vol.array.max() < 3100
    # the reference label map (same grid, written as NIfTI by others) overlays the body:
    seg = read_nifti(samples_dir / "ct_abdomen_totalsegmentator" / "example_seg_dicom.nii.gz")
    zz, yy, xx = np.meshgrid(*(np.arange(s) for s in vol.shape), indexing="ij")
    idx = np.stack([zz.ravel(), yy.ravel(), xx.ravel(), np.ones(zz.size)])
    seg_idx = np.rint(np.linalg.solve(seg.affine, vol.affine @ idx)[:3]).astype(int)
    labels_on_grid = seg.array[tuple(seg_idx)].reshape(vol.shape)
    assert np.median(vol.array[labels_on_grid > 0]) > -100
    assert np.median(vol.array[labels_on_grid == 0]) < -900
    # Volume.on_grid_of gives the same voxels by transposing / flipping (no resampling)
    assert not np.array_equal(seg.array, labels_on_grid)  # the rows run the other way
    np.testing.assert_array_equal(seg.on_grid_of(vol), labels_on_grid)


def test_jpeg2000_without_decoders_names_the_extra(samples_dir: Path, monkeypatch) -> None:
    from pydicom.pixels import get_decoder

    folder = samples_dir / "ct_abdomen_totalsegmentator" / "example_ct_dicom"
    ts = pydicom.dcmread(next(folder.iterdir()), stop_before_pixels=True).file_meta.TransferSyntaxUID
    decoder = get_decoder(ts)
    monkeypatch.setattr(decoder, "_available", {})
    monkeypatch.setattr(decoder, "_unavailable", {"pylibjpeg": ("pylibjpeg", "pylibjpeg-openjpeg")})
    import napari_medseg.io.dicom_pixels as pixels_module

    monkeypatch.setattr(pixels_module, "_imagecodecs_j2k", lambda: None)  # no imagecodecs either
    (info,) = list_dicom_series(folder)
    assert info.decoder_available is False
    assert any(DICOM_CODECS_EXTRA in w for w in info.warnings)
    with pytest.raises(MissingDecoderError, match=r"napari-medseg\[dicom-codecs\]") as err:
        read_volume(folder)
    assert "JPEG 2000" in str(err.value) and "\n" not in str(err.value)
    # and when the decoder look-up cannot tell, pydicom's own failure is translated the same way
    import napari_medseg.io.dicom as dicom_module

    # looked up in both: the series listing (dicom) and the pixel decoding (dicom_pixels)
    monkeypatch.setattr(dicom_module, "_decoder_available", lambda ts: None)
    monkeypatch.setattr(pixels_module, "_decoder_available", lambda ts: None)
    with pytest.raises(MissingDecoderError, match=r"napari-medseg\[dicom-codecs\]"):
        read_volume(folder)


def test_seg_and_rtstruct_are_listed_as_non_images(samples_dir: Path) -> None:
    infos = list_dicom_series(samples_dir / "ct_dicom_seg_dcmqi")
    kinds = {i.modality: i for i in infos}
    assert kinds["CT"].is_image and kinds["CT"].n_slices == 3
    assert not kinds["SEG"].is_image and "Segmentation" in kinds["SEG"].kind
    assert kinds["SEG"].shape is None and kinds["SEG"].spacing is None
    # the folder holds one image series: it opens without a choice, the SEG is skipped
    vol = read_volume(samples_dir / "ct_dicom_seg_dcmqi")
    assert vol.shape == (3, 512, 512) and vol.modality == "CT"
    assert vol.spacing[0] == pytest.approx(1.0)
    # a SEG or RTSTRUCT file itself opens as a label map on its referenced series (issue 15)
    seg = read_volume(samples_dir / "ct_dicom_seg_dcmqi" / "liver.dcm")
    assert seg.shape == (3, 512, 512) and seg.array.max() >= 1
    rt = read_volume(samples_dir / "rtstruct" / "rt-utils_phantom" / "rt.dcm")
    assert rt.array.max() >= 1
    breast = read_volume(samples_dir / "rtstruct" / "dicompyler_breast" / "rtss.dcm")
    assert breast.shape == (512, 512) and breast.metadata["label_names"]["5"] == "Heart"
    phantom = read_volume(samples_dir / "rtstruct" / "rt-utils_phantom")
    assert phantom.shape == (2, 512, 512) and phantom.spacing[0] == pytest.approx(5.0)
    seg_info = describe_path(samples_dir / "ct_dicom_seg_dcmqi")
    assert [s["is_image"] for s in seg_info["series"]] == [True, False]


# --------------------------------------------------------------------- pydicom's bundled test data


def test_pydicom_ct_small_single_file() -> None:
    path = _pydicom_file("CT_small.dcm")
    vol = read_volume(path)
    ds = pydicom.dcmread(path)
    assert vol.shape == (128, 128) and vol.modality == "CT"
    np.testing.assert_allclose(vol.spacing, [float(v) for v in ds.PixelSpacing])
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert np.array_equal(vol.array, expected)
    np.testing.assert_allclose((vol.affine @ [0, 0, 0, 1])[:3], _ras(ds.ImagePositionPatient))


@pytest.mark.parametrize(
    "name", ["MR_small.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_bigendian.dcm"]
)
def test_pydicom_mr_small_variants_decode_identically(name: str) -> None:
    reference = pydicom.dcmread(_pydicom_file("MR_small.dcm")).pixel_array
    vol = read_volume(_pydicom_file(name))
    assert vol.modality == "MR" and vol.shape == (64, 64)
    assert np.array_equal(vol.array, reference)


def test_pydicom_bundled_header_only_series_is_not_an_image() -> None:
    folder = _pydicom_file("CT_small.dcm").parent / "dicomdirtests" / "TINY_ALPHA"
    if not folder.is_dir():
        pytest.skip("pydicom's TINY_ALPHA series is not bundled")
    (info,) = list_dicom_series(folder)  # DICOMDIR ignored; 50 CT headers without pixel data
    assert info.modality == "CT" and info.n_slices > 10 and not info.is_image
    with pytest.raises(MedsegIOError, match="without pixel data"):
        read_volume(folder)


def test_pydicom_localizer_series_split_by_orientation() -> None:
    folder = _pydicom_file("CT_small.dcm").parent / "dicomdirtests" / "98892003" / "MR2"
    if not folder.is_dir():
        pytest.skip("pydicom's dicomdirtests are not bundled")
    infos = list_dicom_series(folder)
    by_uid: dict[str, list] = {}
    for i in infos:
        by_uid.setdefault(i.series_uid, []).append(i)
    # each 3-plane localizer series is split into three single-slice parts
    assert sorted(len(v) for v in by_uid.values()) == [1, 3, 3]
    assert all(i.key == f"{i.series_uid}#{n + 1}" for v in by_uid.values() if len(v) == 3
               for n, i in enumerate(sorted(v, key=lambda i: i.key)))
    assert all(i.shape == (16, 16) for i in infos)
    assert len(read_dicom(folder)) == 7


# ------------------------------------------------------------------ multi-frame, duplicates, no geometry


def _enhanced_ct(path: Path, hu: np.ndarray, z_positions, *, spacing=(0.8, 0.7)) -> None:
    """A multi-frame (enhanced) CT file whose frames are stored in the given z order."""
    from pydicom.sequence import Sequence

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"  # Enhanced CT Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesDescription = "enhanced"
    ds.NumberOfFrames = hu.shape[0]
    ds.Rows, ds.Columns = hu.shape[1:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    shared = pydicom.Dataset()
    orient, measures, transform = pydicom.Dataset(), pydicom.Dataset(), pydicom.Dataset()
    orient.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    measures.PixelSpacing = list(spacing)
    measures.SliceThickness = 3.0
    transform.RescaleSlope = 1
    transform.RescaleIntercept = -1024
    shared.PlaneOrientationSequence = Sequence([orient])
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PixelValueTransformationSequence = Sequence([transform])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for z in z_positions:
        item, pos = pydicom.Dataset(), pydicom.Dataset()
        pos.ImagePositionPatient = [0.0, 0.0, float(z)]
        item.PlanePositionSequence = Sequence([pos])
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = np.ascontiguousarray((hu + 1024).astype("<u2")).tobytes()
    ds.save_as(str(path), enforce_file_format=True)


def test_multiframe_file_is_a_sorted_3d_volume(tmp_path: Path, hu_volume) -> None:
    order = [3, 0, 4, 1, 2]  # frame i is stored at z = 3 * order[i]
    stored = np.stack([hu_volume[k] for k in order])  # frame i holds slice order[i]
    _enhanced_ct(tmp_path / "enhanced.dcm", stored, [3.0 * k for k in order])
    vol = read_volume(tmp_path / "enhanced.dcm")
    assert vol.shape == (5, 12, 10)
    assert vol.spacing == (3.0, 0.8, 0.7)
    assert np.array_equal(vol.array, hu_volume[:5])  # sorted by position, HU from shared group
    np.testing.assert_allclose((vol.affine @ [4, 0, 0, 1])[:3], [0, 0, 12.0])


def test_duplicate_positions_are_dropped_with_a_warning(tmp_path: Path, hu_volume) -> None:
    uid = generate_uid()
    for k in range(4):
        write_slice(tmp_path / f"a{k}.dcm", hu_volume[k] + 1024, (0, 0, 2 * k), series_uid=uid, instance=k)
    write_slice(tmp_path / "dup.dcm", hu_volume[5] + 1024, (0, 0, 2), series_uid=uid, instance=9)
    with pytest.warns(MedsegIOWarning, match="share their position"):
        vol = read_volume(tmp_path)
    assert vol.shape == (4, 12, 10)


def test_series_without_positions_falls_back_to_instance_number(tmp_path: Path, hu_volume) -> None:
    uid = generate_uid()
    for k in range(3):
        path = tmp_path / f"{9 - k}.dcm"
        write_slice(path, hu_volume[k] + 1024, (0, 0, 2 * k), series_uid=uid, instance=k + 1)
        ds = pydicom.dcmread(path)
        del ds.ImagePositionPatient
        del ds.ImageOrientationPatient
        ds.save_as(str(path), enforce_file_format=True)
    with pytest.warns(MedsegIOWarning, match="ordered by InstanceNumber"):
        vol = read_volume(tmp_path)
    assert np.array_equal(vol.array, hu_volume[:3])
    assert vol.spacing[0] == 2.0  # SliceThickness


def test_dicomdir_file_opens_its_folder() -> None:
    folder = _pydicom_file("CT_small.dcm").parent / "dicomdirtests" / "TINY_ALPHA"
    if not (folder / "DICOMDIR").is_file():
        pytest.skip("pydicom's dicomdirtests are not bundled")
    via_index = list_dicom_series(folder / "DICOMDIR")
    assert [i.key for i in via_index] == [i.key for i in list_dicom_series(folder)]
    assert via_index[0].n_slices > 10


def test_totalsegmentator_pair_is_one_patient_in_one_world(samples_dir: Path) -> None:
    """The DICOM series (LPS, rows front to back) and the NIfTI label map written from it by
    another tool (RAS, rows back to front) describe the same patient: anatomy on the expected
    sides in RAS, and the same napari placement for each physical voxel."""
    from napari_medseg.io.volume import NAPARI_WORLD_FROM_RAS

    folder = samples_dir / "ct_abdomen_totalsegmentator"
    ct = read_volume(folder / "example_ct_dicom")
    seg = read_nifti(folder / "example_seg_dicom.nii.gz")

    def ras_centroid(value: int) -> np.ndarray:
        index = np.argwhere(seg.array == value).mean(axis=0)
        return (seg.affine @ np.r_[index, 1.0])[:3]

    liver, spleen, aorta, vertebra = (ras_centroid(v) for v in (5, 1, 52, 32))
    assert liver[0] > spleen[0]  # RAS x grows to the patient's right: the liver is there
    assert aorta[1] > vertebra[1]  # the aorta lies in front of the spine
    g_ct, g_seg = ct.napari_geometry(), seg.napari_geometry()
    assert g_ct["aligned"] and g_seg["aligned"]
    assert np.sign(g_ct["scale"][1]) == -np.sign(g_seg["scale"][1])  # rows stored reversed
    for index in ((0, 0, 0), (19, 511, 511), (10, 100, 400)):
        world = np.asarray(g_ct["scale"]) * index + g_ct["translate"]
        np.testing.assert_allclose(world, NAPARI_WORLD_FROM_RAS @ (ct.affine @ np.r_[index, 1])[:3],
                                   atol=1e-6)
        seg_index = np.linalg.solve(seg.affine, ct.affine @ np.r_[index, 1.0])[:3]
        np.testing.assert_allclose(np.asarray(g_seg["scale"]) * seg_index + g_seg["translate"],
                                   world, atol=1e-6)


def test_rescale_slice_by_slice_keeps_exact_values_and_a_small_dtype():
    from napari_medseg.io.dicom import _rescaled

    rng = np.random.default_rng(0)
    stored = rng.integers(0, 4096, size=(5, 8, 8)).astype(np.uint16)
    expected = stored.astype(np.int64) - 1024
    out, rescaled = _rescaled(stored.copy(), [(1.0, -1024.0)] * 5)
    assert rescaled and out.dtype == np.int16
    np.testing.assert_array_equal(out, expected)
    # per-slice intercepts, one of them pushing past int16
    scales = [(1.0, -1024.0)] * 4 + [(1.0, 40000.0)]
    out, _ = _rescaled(stored.copy(), scales)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out[4], stored[4].astype(np.int64) + 40000)
    np.testing.assert_array_equal(out[:4], expected[:4])
    out, _ = _rescaled(stored.copy(), [(2.5, -1.0)] * 5)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, stored * 2.5 - 1.0, rtol=1e-6)
    same, rescaled = _rescaled(stored, [(1.0, 0.0)] * 5)
    assert same is stored and not rescaled


def test_jpeg2000_threaded_decoding_gives_pydicoms_values(samples_dir: Path, tmp_path: Path,
                                                          monkeypatch) -> None:
    """JPEG 2000 slices decoded on threads by imagecodecs hold exactly what pydicom's own
    decoders give: a scanner-written series and a signed one compressed here."""
    pytest.importorskip("imagecodecs")
    from dicom_factory import write_ct_series
    from pydicom.uid import JPEG2000Lossless

    import napari_medseg.io.dicom_pixels as pixels_module

    signed = write_ct_series(tmp_path / "signed")
    for f in signed.iterdir():
        ds = pydicom.dcmread(f)
        ds.compress(JPEG2000Lossless)
        ds.save_as(f, enforce_file_format=True)
    calls = []
    real = pixels_module._decode_j2k
    monkeypatch.setattr(pixels_module, "_decode_j2k",
                        lambda *a: calls.append(a[0]) or real(*a))
    for folder in (samples_dir / "ct_abdomen_totalsegmentator" / "example_ct_dicom", signed):
        threaded = read_volume(folder)
        assert calls, "the threaded JPEG 2000 path was not taken"
        calls.clear()
        with monkeypatch.context() as m:
            m.setattr(pixels_module, "_imagecodecs_j2k", lambda: None)  # pydicom's decoders
            plain = read_volume(folder)
        assert not calls
        assert threaded.array.dtype == plain.array.dtype
        np.testing.assert_array_equal(threaded.array, plain.array)
    assert plain.array.min() < 0  # the signed series kept its sign
