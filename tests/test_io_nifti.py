"""NIfTI reading/writing on the real hippocampus and CT samples, and exact geometry round trips."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_medseg.io import (
    MedsegIOError,
    Volume,
    affine_from_nifti,
    describe_path,
    looks_like_label_map,
    read_nifti,
    read_volume,
    read_volumes,
    sample_data_dir,
    save_labels,
    write_nifti,
)


def _oblique_affine(spacing=(2.5, 0.7, 0.9), angle=0.37, origin=(-12.3, 45.6, 7.89)) -> np.ndarray:
    """A Volume affine rotated about two axes, with non-1 mm, anisotropic spacing."""
    a, b = angle, angle / 3
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    aff = np.eye(4)
    aff[:3, :3] = rz @ rx @ np.diag(spacing)
    aff[:3, 3] = origin
    return aff


# ------------------------------------------------------------------------- real hippocampus data


def test_every_hippocampus_case_reads_with_right_shape_and_spacing(hippo_dir: Path) -> None:
    images = sorted((hippo_dir / "imagesTr").glob("hippocampus_*.nii.gz"))
    assert len(images) == 220
    for image_path in images:
        label_path = hippo_dir / "labelsTr" / image_path.name
        nib_img = nib.load(str(image_path))
        image = read_nifti(image_path)
        labels = read_nifti(label_path)
        expected_shape = tuple(reversed(nib_img.shape))
        assert image.shape == expected_shape, image_path.name
        assert labels.shape == expected_shape, label_path.name
        assert image.spacing == (1.0, 1.0, 1.0)
        assert np.array_equal(image.affine, affine_from_nifti(nib_img.affine))
        assert np.array_equal(labels.affine, image.affine)
        # intensities stay intensities, labels become integers 0/1/2
        assert image.metadata["is_labels"] is False, image_path.name
        assert labels.metadata["is_labels"] is True, label_path.name
        assert labels.array.dtype == np.uint8, label_path.name
        assert set(np.unique(labels.array)) == {0, 1, 2}, label_path.name
        # array is the nibabel array transposed, voxel for voxel
        assert np.array_equal(image.array, np.asanyarray(nib_img.dataobj).T)


@pytest.mark.parametrize("case", ["hippocampus_003", "hippocampus_243"])
def test_float32_label_files_come_out_integer(hippo_dir: Path, case: str) -> None:
    path = hippo_dir / "labelsTr" / f"{case}.nii.gz"
    stored = np.asanyarray(nib.load(str(path)).dataobj)
    assert stored.dtype == np.float32  # the premise of this test
    labels = read_nifti(path)
    assert labels.array.dtype.kind == "u"
    assert labels.metadata["nifti_dtype"] == "float32"
    assert np.array_equal(labels.array, stored.T.astype(np.uint8))
    # as_labels=False keeps what is stored
    raw = read_nifti(path, as_labels=False)
    assert raw.array.dtype == np.float32 and raw.metadata["is_labels"] is False


def test_float_image_is_not_mistaken_for_labels(hippo_dir: Path) -> None:
    image = read_nifti(hippo_dir / "imagesTr" / "hippocampus_003.nii.gz")
    assert image.array.dtype == np.float32
    assert image.metadata["is_labels"] is False
    with pytest.raises(MedsegIOError, match="non-integer"):
        read_nifti(hippo_dir / "imagesTr" / "hippocampus_003.nii.gz", as_labels=True)


@pytest.mark.parametrize("case", ["hippocampus_001", "hippocampus_003", "hippocampus_243"])
def test_label_round_trip_on_real_hippocampus_is_exact(hippo_dir: Path, tmp_path: Path, case: str) -> None:
    image = read_nifti(hippo_dir / "imagesTr" / f"{case}.nii.gz")
    labels = read_nifti(hippo_dir / "labelsTr" / f"{case}.nii.gz")
    out = save_labels(labels.array, image, tmp_path / f"{case}_labels.nii.gz")
    assert out == tmp_path / f"{case}_labels.nii.gz"
    back = read_nifti(out)
    assert back.array.dtype == np.uint8
    assert np.array_equal(back.array, labels.array)
    assert np.array_equal(back.affine, image.affine)
    assert back.spacing == image.spacing
    # the file is plain NIfTI-1 other tools read identically, with the source's sform code
    img = nib.load(str(out))
    assert np.array_equal(img.affine, nib.load(str(hippo_dir / "imagesTr" / f"{case}.nii.gz")).affine)
    assert int(img.header["sform_code"]) == int(image.metadata["sform_code"])
    assert len(img.header.extensions) == 0
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left behind


def test_sample_data_folder_is_found_and_complete() -> None:
    root = sample_data_dir()
    meta = json.loads((root / "hippocampus" / "dataset.json").read_text())
    assert meta["numTraining"] == len(meta["training"]) == 2
    for entry in meta["training"]:
        image = read_volume(root / "hippocampus" / entry["image"])
        labels = read_volume(root / "hippocampus" / entry["label"])
        assert image.shape == labels.shape
        assert labels.array.dtype == np.uint8
        assert set(np.unique(labels.array)) == {0, 1, 2}
    text = (root / "ATTRIBUTION.md").read_text()
    for needle in ("CC BY-SA 4.0", "Simpson", "Antonelli", "Vanderbilt"):
        assert needle in text


# ----------------------------------------------------------------------------- synthetic geometry


@pytest.mark.parametrize("labels_flag", [True, False])
def test_oblique_affine_round_trip_is_bit_exact(tmp_path: Path, labels_flag: bool) -> None:
    rng = np.random.default_rng(1)
    affine = _oblique_affine()
    array = rng.integers(0, 7, size=(6, 9, 11)).astype(np.uint8) if labels_flag else (
        rng.normal(size=(6, 9, 11)).astype(np.float32)
    )
    vol = Volume(array, (2.5, 0.7, 0.9), affine, "MR", {}, "oblique")
    out = write_nifti(vol, tmp_path / "oblique.nii.gz", labels=labels_flag)
    back = read_nifti(out, as_labels=labels_flag)
    assert np.array_equal(back.affine, affine)
    assert np.array_equal(back.array, array)
    assert back.array.dtype == array.dtype
    np.testing.assert_allclose(back.spacing, (2.5, 0.7, 0.9), rtol=1e-12)
    # other programs see the same geometry, to float32 precision, through the sform
    img = nib.load(str(out))
    np.testing.assert_allclose(img.affine, vol.nifti_affine(), atol=1e-5)
    assert img.shape == (11, 9, 6)


def test_stale_float64_affine_extension_is_ignored(tmp_path: Path) -> None:
    affine = _oblique_affine()
    vol = Volume(np.zeros((3, 4, 5), np.uint8), (2.5, 0.7, 0.9), affine)
    out = write_nifti(vol, tmp_path / "x.nii.gz", labels=True)
    img = nib.load(str(out))
    moved = img.affine.copy()
    moved[:3, 3] += 10.0  # another program moves the image: its sform must win
    img.set_sform(moved, code=2)
    nib.save(img, str(tmp_path / "moved.nii.gz"))
    back = read_nifti(tmp_path / "moved.nii.gz")
    assert np.array_equal(back.affine, affine_from_nifti(nib.load(str(tmp_path / "moved.nii.gz")).affine))
    np.testing.assert_allclose(back.origin, np.array(vol.origin) + 10.0, atol=1e-4)


def test_2d_round_trip(tmp_path: Path) -> None:
    array = np.arange(12, dtype=np.int16).reshape(3, 4)
    vol = Volume(array, (0.5, 0.25))
    out = write_nifti(vol, tmp_path / "slice.nii")
    back = read_nifti(out)
    assert back.shape == (3, 4)
    assert np.array_equal(back.array, array)
    assert np.array_equal(back.affine, vol.affine)
    assert back.spacing == (0.5, 0.25)


def test_real_ct_nifti_round_trip_and_modality_guess(samples_dir: Path, tmp_path: Path) -> None:
    path = samples_dir / "ct_abdomen_totalsegmentator" / "example_ct_sm.nii.gz"
    ct = read_nifti(path)
    nib_img = nib.load(str(path))
    assert ct.shape == tuple(reversed(nib_img.shape))
    assert ct.spacing == (3.0, 3.0, 3.0)
    assert ct.modality == "CT"  # guessed from HU values, flagged as a guess
    assert ct.metadata["modality_guessed"] is True
    assert np.array_equal(ct.affine, affine_from_nifti(nib_img.affine))
    out = write_nifti(ct, tmp_path / "ct.nii.gz")
    back = read_nifti(out)
    assert back.array.dtype == ct.array.dtype
    assert np.array_equal(back.array, ct.array)
    assert np.array_equal(back.affine, ct.affine)


def test_multilabel_map_is_detected_by_name(samples_dir: Path) -> None:
    seg = read_nifti(samples_dir / "ct_abdomen_totalsegmentator" / "example_seg.nii.gz")
    assert seg.metadata["is_labels"] is True
    assert seg.modality == "unknown"
    assert len(np.unique(seg.array)) > 16  # more classes than the no-hint limit
    assert looks_like_label_map(seg.array, "example_seg") is True
    assert looks_like_label_map(seg.array, "ct") is False


def test_4d_needs_a_channel(tmp_path: Path) -> None:
    data = np.stack([np.full((4, 5, 6), c, np.float32) for c in range(3)], axis=-1)
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), str(tmp_path / "multi.nii.gz"))
    with pytest.raises(MedsegIOError, match="3 channels"):
        read_nifti(tmp_path / "multi.nii.gz")
    with pytest.raises(MedsegIOError, match="3 channels"):
        read_volume(tmp_path / "multi.nii.gz")
    second = read_volume(tmp_path / "multi.nii.gz", channel=2)
    assert second.shape == (6, 5, 4) and np.all(second.array == 2)
    assert second.metadata["channel"] == 2 and second.metadata["n_channels"] == 3
    with pytest.raises(MedsegIOError, match="channel 5 does not exist"):
        read_nifti(tmp_path / "multi.nii.gz", channel=5)
    assert describe_path(tmp_path / "multi.nii.gz")["n_channels"] == 3


def test_singleton_fourth_axis_is_dropped(tmp_path: Path) -> None:
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6, 1)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "one.nii.gz"))
    vol = read_nifti(tmp_path / "one.nii.gz")
    assert vol.shape == (6, 5, 4)
    assert np.array_equal(vol.array, data[..., 0].T)


def test_write_refuses_bad_labels_and_names(tmp_path: Path) -> None:
    vol = Volume(np.full((2, 3, 4), 0.5, np.float32))
    with pytest.raises(MedsegIOError, match="non-integer"):
        write_nifti(vol, tmp_path / "bad.nii.gz", labels=True)
    with pytest.raises(MedsegIOError, match=".nii or .nii.gz"):
        write_nifti(vol, tmp_path / "bad.png")
    with pytest.raises(MedsegIOError, match="does not exist"):
        write_nifti(vol, tmp_path / "no" / "such" / "dir.nii.gz")
    assert list(tmp_path.iterdir()) == []
    # a name without suffix gets .nii.gz
    assert write_nifti(vol, tmp_path / "plain").name == "plain.nii.gz"


def test_save_labels_checks_shape_and_picks_dtype(tmp_path: Path) -> None:
    ref = Volume(np.zeros((3, 4, 5), np.float32), (2.0, 1.0, 1.0))
    with pytest.raises(MedsegIOError, match="do not match"):
        save_labels(np.zeros((3, 4, 4), np.uint8), ref, tmp_path / "l.nii.gz")
    big = np.zeros((3, 4, 5), np.int64)
    big[0, 0, 0] = 300
    back = read_nifti(save_labels(big, ref, tmp_path / "big.nii.gz"))
    assert back.array.dtype == np.uint16 and back.array[0, 0, 0] == 300


def test_overwrite_is_atomic_replacement(tmp_path: Path) -> None:
    target = tmp_path / "labels.nii.gz"
    ref = Volume(np.zeros((2, 3, 4), np.uint8))
    save_labels(np.ones((2, 3, 4), np.uint8), ref, target)
    save_labels(np.full((2, 3, 4), 2, np.uint8), ref, target)
    assert np.all(read_nifti(target).array == 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.nii.gz"]


def test_read_volumes_and_describe_nifti(hippo_dir: Path) -> None:
    path = hippo_dir / "imagesTr" / "hippocampus_001.nii.gz"
    (vol,) = read_volumes(path)
    info = describe_path(path)
    json.dumps(info)
    assert info["format"] == "nifti"
    assert info["shape"] == list(vol.shape)
    assert info["spacing"] == [1.0, 1.0, 1.0]
    assert info["affine"] == vol.affine.tolist()
    assert info["dtype"] == "uint8"
    assert info["series"] == []


def test_header_scaling_is_applied_without_float64(tmp_path: Path) -> None:
    stored = np.arange(-5, 19, dtype=np.int16).reshape(2, 3, 4) + 1000
    offset = nib.Nifti1Image(stored, np.eye(4))
    offset.header.set_slope_inter(1, -1024)
    nib.save(offset, str(tmp_path / "offset.nii.gz"))
    vol = read_nifti(tmp_path / "offset.nii.gz")
    assert vol.array.dtype == np.int16
    assert np.array_equal(vol.array, (stored.astype(int) - 1024).T)
    assert vol.modality == "unknown"  # -1029 .. -1006: all below -500 but nothing >= 0
    half = nib.Nifti1Image(stored, np.eye(4))
    half.header.set_slope_inter(0.5, 0)
    nib.save(half, str(tmp_path / "half.nii.gz"))
    vol = read_nifti(tmp_path / "half.nii.gz", as_labels=False)
    assert vol.array.dtype == np.float32
    np.testing.assert_allclose(vol.array, stored.T * 0.5)


def test_orientation_is_known_only_when_the_file_states_it(hippo_dir: Path, samples_dir: Path,
                                                            tmp_path: Path) -> None:
    from napari_medseg.training.augment import left_right_axis

    hippo = read_nifti(hippo_dir / "imagesTr" / "hippocampus_001.nii.gz")
    assert hippo.has_orientation  # sform/qform code 1: the affine means RAS
    assert left_right_axis(hippo.affine) == 2  # NIfTI i = x = left-right = last array axis
    ct = read_nifti(samples_dir / "ct_abdomen_totalsegmentator" / "example_ct_sm.nii.gz")
    assert ct.has_orientation and left_right_axis(ct.affine) == 2
    assert not Volume(np.zeros((4, 5, 6), np.float32)).has_orientation  # placeholder affine
    img = nib.Nifti1Image(np.zeros((4, 5, 6), np.float32), None)  # no orientation codes
    nib.save(img, str(tmp_path / "nocode.nii.gz"))
    assert not read_nifti(tmp_path / "nocode.nii.gz").has_orientation


def test_volume_without_orientation_reopens_without_orientation(tmp_path: Path) -> None:
    """A plain array saved as NIfTI must not come back as patient RAS (it would be shown
    flipped and read as a sagittal acquisition); other programs still see its sform."""
    affine = np.diag([-2.0, 0.8, 0.7, 1.0])
    affine[:3, 3] = (10.0, 20.0, 30.0)
    plain = Volume(np.arange(60, dtype=np.uint8).reshape(3, 4, 5), (2.0, 0.8, 0.7), affine)
    back = read_nifti(write_nifti(plain, tmp_path / "plain.nii.gz", labels=True))
    assert not back.has_orientation and back.metadata["orientation_unknown"]
    assert np.array_equal(back.affine, affine) and np.array_equal(back.array, plain.array)
    assert back.napari_geometry()["scale"] == plain.napari_geometry()["scale"] == (-2.0, 0.8, 0.7)
    img = nib.load(str(tmp_path / "plain.nii.gz"))
    np.testing.assert_allclose(img.affine, plain.nifti_affine())
    # a file another program re-orients (new sform) is read as that program says
    moved = img.affine.copy()
    moved[:3, 3] += 5.0
    img.set_sform(moved, code=1)
    nib.save(img, str(tmp_path / "moved.nii.gz"))
    assert read_nifti(tmp_path / "moved.nii.gz").has_orientation
    # a file with a stated orientation keeps it through our round trip
    oriented = read_nifti(write_nifti(Volume(plain.array, plain.spacing, affine, "CT",
                                             {"format": "nifti", "sform_code": 1}),
                                      tmp_path / "oriented.nii.gz", labels=True))
    assert oriented.has_orientation and "orientation_unknown" not in oriented.metadata
