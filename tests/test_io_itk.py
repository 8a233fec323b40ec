"""NRRD / MetaImage read and write with exact geometry (napari_medseg.io.itk_formats)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.io import read_nifti
from napari_medseg.io.errors import MedsegIOError
from napari_medseg.io.itk_formats import (
    describe_itk_image,
    is_itk_path,
    read_itk_image,
    save_labels_itk,
    write_itk_image,
)
from napari_medseg.io.volume import Volume

sitk = pytest.importorskip("SimpleITK")


@pytest.fixture(scope="module")
def hippo_pair(hippo_dir):
    image = sorted((hippo_dir / "imagesTr").glob("*.nii.gz"))[0]
    return read_nifti(image), read_nifti(hippo_dir / "labelsTr" / image.name, as_labels=True)


@pytest.mark.parametrize("suffix", [".nrrd", ".nhdr", ".mha", ".mhd"])
def test_nifti_round_trip_exact(tmp_path, hippo_pair, suffix):
    image, labels = hippo_pair
    out = write_itk_image(image, tmp_path / f"img{suffix}")
    back = read_itk_image(out)
    np.testing.assert_array_equal(back.array, image.array)
    assert back.array.dtype == image.array.dtype
    np.testing.assert_allclose(back.affine, image.affine, atol=1e-6)
    assert back.metadata["format"] == ("nrrd" if suffix in (".nrrd", ".nhdr") else "metaimage")
    assert back.metadata["orientation_known"] is True
    lab = read_itk_image(save_labels_itk(labels.array, image, tmp_path / f"lab{suffix}"))
    assert lab.array.dtype.kind == "u" and lab.metadata["is_labels"]
    np.testing.assert_array_equal(lab.array, labels.array)
    np.testing.assert_allclose(lab.affine, image.affine, atol=1e-6)


def test_ct_sample_round_trip(tmp_path, samples_dir):
    ct = read_nifti(samples_dir / "ct_abdomen_totalsegmentator" / "example_ct_sm.nii.gz")
    back = read_itk_image(write_itk_image(ct, tmp_path / "ct.mha"))
    np.testing.assert_array_equal(back.array, ct.array)
    assert back.array.dtype == ct.array.dtype and not back.metadata["is_labels"]
    np.testing.assert_allclose(back.affine, ct.affine, atol=1e-6)
    assert back.spacing == pytest.approx(ct.spacing)


def test_known_lps_directions_give_ras(tmp_path):
    # x runs to patient right... as an oblique LPS frame written by SimpleITK itself
    arr = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)  # (z, y, x)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.5, 0.75, 2.0))
    img.SetOrigin((10.0, -20.0, 30.0))
    c, s = np.cos(0.3), np.sin(0.3)
    d = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])  # columns = x, y, z axes in LPS
    img.SetDirection(tuple(d.ravel()))
    path = tmp_path / "oblique.nrrd"
    sitk.WriteImage(img, str(path))
    vol = read_itk_image(path)
    np.testing.assert_array_equal(vol.array, arr)
    # voxel (z, y, x) = (1, 2, 3) -> LPS = origin + D @ diag(sp) @ (3, 2, 1)
    lps = np.array([10.0, -20.0, 30.0]) + d @ (np.array([0.5, 0.75, 2.0]) * [3, 2, 1])
    ras = vol.affine @ [1, 2, 3, 1]
    np.testing.assert_allclose(ras[:3], [-lps[0], -lps[1], lps[2]], atol=1e-9)
    assert vol.spacing == pytest.approx((2.0, 0.75, 0.5))
    # SimpleITK's own physical point agrees
    assert np.allclose(img.TransformIndexToPhysicalPoint((3, 2, 1)), lps)
    info = describe_itk_image(path)
    assert info["shape"] == [4, 5, 6] and np.allclose(info["affine"], vol.affine)


def test_ras_space_nrrd_header(tmp_path):
    # a hand-written NRRD in RAS space: ITK converts it, we must land on the same RAS affine
    data = np.arange(2 * 3 * 4, dtype=np.uint8)
    path = tmp_path / "ras.nrrd"
    header = (
        "NRRD0004\ntype: uint8\ndimension: 3\nspace: right-anterior-superior\n"
        "sizes: 4 3 2\nspace directions: (1,0,0) (0,2,0) (0,0,3)\nkinds: domain domain domain\n"
        "endian: little\nencoding: raw\nspace origin: (5,6,7)\n\n"
    )
    path.write_bytes(header.encode() + data.tobytes())
    vol = read_itk_image(path, as_labels=False)
    expected = np.array([[0, 0, 1.0, 5], [0, 2.0, 0, 6], [3.0, 0, 0, 7], [0, 0, 0, 1]])
    np.testing.assert_allclose(vol.affine, expected, atol=1e-9)
    np.testing.assert_array_equal(vol.array, data.reshape(2, 3, 4))


def test_seg_nrrd_class_table_round_trip(tmp_path):
    labels = np.zeros((3, 8, 9), np.uint8)
    labels[1, 2:5, 2:6] = 1
    labels[2, 4:7, 1:3] = 3
    vol = Volume(labels, (2.0, 1.0, 1.0))
    out = write_itk_image(vol, tmp_path / "x.seg.nrrd", label_names={0: "background",
                          1: "liver", 3: "spleen"}, label_colours={1: (255, 0, 0)})
    back = read_itk_image(out)
    assert back.metadata["is_labels"] and back.name == "x"
    assert back.metadata["label_names"] == {"1": "liver", "3": "spleen"}
    assert back.metadata["label_colours"]["1"] == [255, 0, 0]
    assert "Segment0_Color" in back.metadata["header"]
    np.testing.assert_array_equal(back.array, labels)


def test_2d_and_rgb(tmp_path):
    grey = Volume(np.arange(12, dtype=np.float32).reshape(3, 4), (0.5, 0.25))
    back = read_itk_image(write_itk_image(grey, tmp_path / "g.mha"))
    assert back.shape == (3, 4)
    np.testing.assert_allclose(back.affine, grey.affine, atol=1e-9)
    rgb = Volume(np.random.default_rng(0).integers(0, 255, (5, 6, 3), dtype=np.uint8), (1.0, 1.0),
                 rgb=True)
    back = read_itk_image(write_itk_image(rgb, tmp_path / "c.nrrd"))
    assert back.rgb and back.shape == (5, 6)
    np.testing.assert_array_equal(back.array, rgb.array)


def test_bad_input(tmp_path):
    assert is_itk_path("a.NRRD") and is_itk_path("b.mhd") and not is_itk_path("c.nii.gz")
    bad = tmp_path / "corrupt.mha"
    bad.write_bytes(b"ObjectType = Image\nNDims = 3\nDimSize = 10 10 10\nElementType = MET_SHORT"
                    b"\nElementDataFile = LOCAL\n" + b"\0" * 20)
    with pytest.raises(MedsegIOError) as err:
        read_itk_image(bad)
    assert "\n" not in str(err.value) and "corrupt.mha" in str(err.value)
    img4 = sitk.GetImageFromArray(np.zeros((2, 3, 4, 5), np.uint8), isVector=False)
    sitk.WriteImage(img4, str(tmp_path / "four.nrrd"))
    with pytest.raises(MedsegIOError, match="4D"):
        read_itk_image(tmp_path / "four.nrrd")
    with pytest.raises(MedsegIOError, match="non-integer"):
        write_itk_image(Volume(np.full((2, 2, 2), 0.5)), tmp_path / "l.nrrd", labels=True)
    assert not (tmp_path / "l.nrrd").exists()
    with pytest.raises(MedsegIOError, match="end in"):
        write_itk_image(Volume(np.zeros((2, 2, 2))), tmp_path / "l.png")
    with pytest.raises(MedsegIOError, match="not found"):
        read_itk_image(tmp_path / "missing.nrrd")
