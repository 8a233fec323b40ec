"""Hostile or damaged NIfTI headers give one clear line, before any large allocation (issue 14)."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from napari_medseg.io import MedsegIOError, read_nifti


def _save(img, path):
    nib.save(img, str(path))
    return path


def test_rgb24_nifti_opens_as_a_colour_picture(tmp_path):
    rgb = np.zeros((6, 5), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    rgb["R"], rgb["G"], rgb["B"] = 10, 20, 30
    rgb["R"][0, 0] = 200
    vol = read_nifti(_save(nib.Nifti1Image(rgb, np.eye(4)), tmp_path / "c.nii"))
    assert vol.rgb and vol.shape == (5, 6)  # array order (Y, X) = nibabel (x, y) transposed
    assert tuple(vol.array[0, 0]) == (200, 20, 30) and tuple(vol.array[1, 1]) == (10, 20, 30)


@pytest.mark.parametrize("bad", ["zero", "nan"])
def test_degenerate_affine_is_repaired_and_said(tmp_path, bad):
    value = 0.0 if bad == "zero" else np.nan
    img = nib.Nifti1Image(np.ones((4, 5, 6), np.float32), None)
    img.header.set_zooms((0.5, 0.5, 2.0))
    path = _save(img, tmp_path / "a.nii")
    data = bytearray(path.read_bytes())
    hdr = nib.Nifti1Header.from_fileobj(__import__("io").BytesIO(bytes(data)))
    hdr["sform_code"], hdr["qform_code"] = 1, 0
    for row in ("srow_x", "srow_y", "srow_z"):
        hdr[row] = [value] * 4
    data[: len(hdr.binaryblock)] = hdr.binaryblock
    path.write_bytes(bytes(data))
    vol = read_nifti(path)
    assert np.all(np.isfinite(vol.affine)) and vol.spacing == (2.0, 0.5, 0.5)
    assert not vol.has_orientation
    assert any("degenerate" in w for w in vol.metadata["warnings"])


def test_implausible_voxel_size_is_refused(tmp_path):
    img = nib.Nifti1Image(np.ones((4, 5, 6), np.float32), np.diag([1e6, 1.0, 1.0, 1.0]))
    with pytest.raises(MedsegIOError, match="implausible voxel sizes"):
        read_nifti(_save(img, tmp_path / "s.nii.gz"))


def test_a_header_claiming_a_huge_image_is_refused_before_allocating(tmp_path):
    """A small gzip file whose header claims 20000^3 voxels: refused from the header."""
    img = nib.Nifti1Image(np.zeros((2, 2, 2), np.uint8), np.eye(4))
    raw = bytearray(img.header.binaryblock)
    hdr = nib.Nifti1Header.from_fileobj(__import__("io").BytesIO(bytes(raw) + b"\0" * 4))
    hdr.set_data_shape((20000, 20000, 20000))
    path = tmp_path / "bomb.nii.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(hdr.binaryblock + b"\0" * 4 + b"\0" * 1000)
    with pytest.raises(MedsegIOError, match="voxels|memory"):
        read_nifti(path)


def test_truncated_uncompressed_file(tmp_path):
    path = _save(nib.Nifti1Image(np.ones((16, 16, 16), np.float32), np.eye(4)), tmp_path / "t.nii")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MedsegIOError, match="truncated"):
        read_nifti(path)


def test_unknown_datatype_code_is_one_line(tmp_path):
    path = _save(nib.Nifti1Image(np.ones((4, 4, 4), np.int16), np.eye(4)), tmp_path / "d.nii")
    data = bytearray(path.read_bytes())
    data[70:72] = (9999).to_bytes(2, "little")  # datatype field
    path.write_bytes(bytes(data))
    with pytest.raises(MedsegIOError) as info:
        read_nifti(path)
    assert "\n" not in str(info.value) and "d.nii" in str(info.value)


def test_nan_in_a_label_map_is_an_error_not_background(tmp_path):
    data = np.zeros((4, 4, 4), np.float32)
    data[1, 1, 1] = np.nan
    data[2, 2, 2] = 1
    path = _save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "lab.nii.gz")
    with pytest.raises(MedsegIOError, match="NaN"):
        read_nifti(path, as_labels=True)
