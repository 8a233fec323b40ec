"""Bad input gives a one-line, clinician-readable MedsegIOError (a ValueError), never a traceback."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom.data
import pytest

from napari_medseg.io import (
    MedsegIOError,
    MedsegIOWarning,
    describe_path,
    list_dicom_series,
    read_nifti,
    read_volume,
    read_volumes,
)


def _assert_one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert isinstance(exc.value, ValueError)
    assert text and "\n" not in text and "Traceback" not in text
    return text


@pytest.fixture
def hippo_file(hippo_dir: Path) -> Path:
    return hippo_dir / "imagesTr" / "hippocampus_001.nii.gz"


@pytest.mark.parametrize("reader", [read_volume, read_volumes, describe_path, read_nifti])
def test_truncated_nii_gz(hippo_file: Path, tmp_path: Path, reader) -> None:
    data = hippo_file.read_bytes()
    bad = tmp_path / "truncated.nii.gz"
    bad.write_bytes(data[: len(data) // 2])
    if reader is describe_path:
        # the header is intact, so the header-only summary still works ...
        assert describe_path(bad)["shape"] == list(reversed(nib.load(str(hippo_file)).shape))
        return
    with pytest.raises(MedsegIOError) as exc:
        reader(bad)
    assert "truncated.nii.gz" in _assert_one_line(exc)


@pytest.mark.parametrize("size", [0, 10, 400])
def test_header_too_short_nifti(tmp_path: Path, size: int) -> None:
    bad = tmp_path / "short.nii"
    bad.write_bytes(os.urandom(size))
    for reader in (read_volume, describe_path):
        with pytest.raises(MedsegIOError) as exc:
            reader(bad)
        assert "short.nii" in _assert_one_line(exc)


def test_random_bytes_named_dcm(tmp_path: Path) -> None:
    bad = tmp_path / "scan.dcm"
    bad.write_bytes(np.random.default_rng(0).bytes(5000))
    for reader in (read_volume, read_volumes, describe_path, list_dicom_series):
        with pytest.raises(MedsegIOError) as exc:
            reader(bad)
        assert "scan.dcm" in _assert_one_line(exc)


def test_random_bytes_with_dicom_preamble(tmp_path: Path) -> None:
    bad = tmp_path / "fake"
    bad.write_bytes(b"\0" * 128 + b"DICM" + np.random.default_rng(1).bytes(3000))
    with pytest.raises(MedsegIOError) as exc:
        read_volume(bad)
    _assert_one_line(exc)


def test_truncated_dicom_pixels() -> None:
    path = pydicom.data.get_testdata_file("MR_truncated.dcm")
    with pytest.raises(MedsegIOError) as exc:
        read_volume(path)
    assert "MR_truncated.dcm" in _assert_one_line(exc)


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for reader in (read_volume, read_volumes, describe_path):
        with pytest.raises(MedsegIOError, match="empty") as exc:
            reader(tmp_path / "empty")
        _assert_one_line(exc)
    assert list_dicom_series(tmp_path / "empty") == []


def test_folder_without_dicom_points_to_nifti(tmp_path: Path, hippo_file: Path) -> None:
    shutil.copy(hippo_file, tmp_path / "case.nii.gz")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(MedsegIOError, match="NIfTI files \\(case.nii.gz\\)"):
        read_volume(tmp_path)


def test_missing_path(tmp_path: Path) -> None:
    for reader in (read_volume, read_volumes, describe_path, list_dicom_series, read_nifti):
        with pytest.raises(MedsegIOError, match="not found") as exc:
            reader(tmp_path / "nope.nii.gz")
        _assert_one_line(exc)


def test_unsupported_file_type(tmp_path: Path) -> None:
    odd = tmp_path / "notes.xyz"
    odd.write_bytes(b"hello")
    with pytest.raises(MedsegIOError, match="Unsupported file type: notes.xyz") as exc:
        read_volume(odd)
    _assert_one_line(exc)


def test_damaged_png_is_one_line(tmp_path: Path) -> None:
    png = tmp_path / "photo.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(MedsegIOError, match="Cannot read photo.png") as exc:
        read_volume(png)
    _assert_one_line(exc)


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="running as root: chmod cannot take read permission away (simulated in the next test)",
)
def test_folder_without_permission_for_real(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        with pytest.raises(MedsegIOError, match="Permission denied"):
            read_volume(locked)
    finally:
        locked.chmod(0o755)


def test_folder_without_permission_simulated(tmp_path: Path, monkeypatch) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode))
    for reader in (read_volume, describe_path, list_dicom_series):
        with pytest.raises(MedsegIOError, match="Permission denied") as exc:
            reader(locked)
        _assert_one_line(exc)


def test_listing_refused_by_the_system(tmp_path: Path, monkeypatch) -> None:
    locked = tmp_path / "series"
    locked.mkdir()
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(MedsegIOError, match="Permission denied") as exc:
        read_volume(locked)
    _assert_one_line(exc)


def test_unreadable_subfolder_is_skipped_with_a_warning(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "study"
    (root / "locked").mkdir(parents=True)
    shutil.copy(pydicom.data.get_testdata_file("CT_small.dcm"), root / "ct.dcm")
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(path) == root / "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.warns(MedsegIOWarning, match="permission denied"):
        vol = read_volume(root)
    assert vol.shape == (128, 128)


def test_nans_in_nifti_load_with_a_warning(tmp_path: Path) -> None:
    data = np.arange(60, dtype=np.float32).reshape(3, 4, 5) + 10
    data[0, 0, 0] = np.nan
    data[1, 2, 3] = np.inf
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "nan.nii.gz"))
    with pytest.warns(MedsegIOWarning, match="2 voxel"):
        vol = read_volume(tmp_path / "nan.nii.gz")
    assert np.all(np.isfinite(vol.array))
    assert vol.array[0, 0, 0] == 11.0 and vol.array[3, 2, 1] == 11.0  # lowest valid value
    assert any("NaN" in w for w in vol.metadata["warnings"])


def test_all_nan_nifti_is_refused(tmp_path: Path) -> None:
    # no valid voxel at all: not an image of zeros to segment, train on or rank first
    nib.save(nib.Nifti1Image(np.full((2, 2, 2), np.nan, np.float32), np.eye(4)), str(tmp_path / "n.nii"))
    with pytest.raises(MedsegIOError, match=r"n.nii holds no valid voxel: all 8 are NaN"):
        read_volume(tmp_path / "n.nii")


def test_4d_nifti_needs_channel(tmp_path: Path) -> None:
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3, 2), np.int16), np.eye(4)), str(tmp_path / "t.nii.gz"))
    with pytest.raises(MedsegIOError, match="choose one with channel=0..1") as exc:
        read_volume(tmp_path / "t.nii.gz")
    _assert_one_line(exc)
    assert read_volume(tmp_path / "t.nii.gz", channel=1).shape == (3, 3, 3)


def test_colour_dicom_opens_as_a_colour_picture() -> None:
    path = pydicom.data.get_testdata_file("SC_rgb_rle.dcm")
    if path is None:
        pytest.skip("SC_rgb_rle.dcm not bundled")
    volume = read_volume(path)
    assert volume.rgb and volume.array.shape == (100, 100, 3)


@pytest.mark.parametrize("name", ["t.nii", "t.nii.gz"])
def test_info_says_a_nifti_is_truncated(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((20, 20, 20)).astype(np.float32),
                             np.eye(4)), str(path))
    assert describe_path(path)["warnings"] == []
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    warnings_ = describe_path(path)["warnings"]
    assert len(warnings_) == 1 and "truncated" in warnings_[0] and name in warnings_[0]
    with pytest.raises(MedsegIOError):
        read_volume(path)
