"""`napari-medseg convert`: a label map made elsewhere goes out as DICOM SEG, RTSTRUCT, NRRD ...
on the voxels of the series it belongs to, even when it stores them in another order."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pydicom
import pytest
from dicom_factory import write_ct_series, write_nifti_flipped

from napari_medseg.io import read_dicom_series, read_volume, write_nifti
from napari_medseg.io.convert import convert_labels
from napari_medseg.io.dicom_seg import read_dicom_seg, read_rtstruct
from napari_medseg.io.errors import MedsegIOError
from napari_medseg.io.volume import Volume

pytest.importorskip("highdicom")


def _labels(shape):
    labels = np.zeros(shape, np.uint8)
    labels[2:6, 4:14, 6:20] = 1  # off-centre, so a flip would show
    labels[3:5, 20:28, 22:30] = 2
    return labels


@pytest.fixture
def series_and_flipped_nifti(tmp_path):
    """A CT series and its label map saved by "another tool": rows stored the other way
    (the affine says so), with a class table in dataset.json style."""
    series = write_ct_series(tmp_path / "ct")
    volume = read_dicom_series(series)
    labels = _labels(volume.shape)
    nifti = write_nifti_flipped(volume, labels, tmp_path / "case_seg.nii.gz")
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps({"labels": {"0": "background", "1": "liver", "2": "kidney"}}))
    return series, nifti, classes, labels


def test_flipped_nifti_becomes_seg_and_rtstruct_on_the_series_voxels(tmp_path,
                                                                     series_and_flipped_nifti):
    series, nifti, classes, labels = series_and_flipped_nifti
    assert not np.array_equal(read_volume(nifti).array, labels)  # stored another way
    (seg,) = convert_labels(nifti, tmp_path / "out.seg.dcm", series, classes=classes)
    back = read_dicom_seg(seg, series)
    np.testing.assert_array_equal(back.array, labels)
    assert back.metadata["label_names"] == {"1": "liver", "2": "kidney"}
    ds = pydicom.dcmread(seg)
    assert {s.SegmentAlgorithmType for s in ds.SegmentSequence} == {"AUTOMATIC"}
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == \
        pydicom.dcmread(next(series.iterdir())).SeriesInstanceUID

    (rt,) = convert_labels(nifti, tmp_path / "out.rtstruct.dcm", series, classes=classes,
                           algorithm_type="manual")
    np.testing.assert_array_equal(read_rtstruct(rt, series).array, labels)
    assert {r.ROIGenerationAlgorithm for r in pydicom.dcmread(rt).StructureSetROISequence} \
        == {"MANUAL"}


def test_seg_back_to_nrrd_and_nifti_with_names(tmp_path, series_and_flipped_nifti):
    series, nifti, classes, labels = series_and_flipped_nifti
    (seg,) = convert_labels(nifti, tmp_path / "out.seg.dcm", series, classes=classes)
    (nrrd,) = convert_labels(seg, tmp_path / "out.seg.nrrd", series)  # names from the SEG
    back = read_volume(nrrd)
    np.testing.assert_array_equal(back.array, labels)
    np.testing.assert_allclose(back.affine, read_dicom_series(series).affine, atol=1e-4)
    assert set(back.metadata["label_names"].values()) == {"liver", "kidney"}
    written = convert_labels(nrrd, tmp_path / "out.nii.gz")  # no reference: its own grid
    assert [p.name for p in written] == ["out.nii.gz", "out.classes.json"]
    np.testing.assert_array_equal(read_volume(written[0]).array, labels)
    table = json.loads(written[1].read_text())["labels"]
    assert {v["name"] for v in table.values()} == {"liver", "kidney"}


def test_convert_refuses_in_one_line_and_writes_nothing(tmp_path, series_and_flipped_nifti):
    series, nifti, classes, labels = series_and_flipped_nifti
    out = tmp_path / "out"
    out.mkdir()
    image = write_nifti(read_dicom_series(series), tmp_path / "ct.nii.gz")
    other_grid = write_nifti(Volume(labels[:, :, :30].copy(), (2.5, 0.8, 0.7)),
                             tmp_path / "small.nii.gz", labels=True)
    cases = [
        ((nifti, out / "a.seg.dcm"), {}, "give it with --reference"),
        ((nifti, out / "a.seg.dcm", image), {}, "not a DICOM series"),
        ((other_grid, out / "a.seg.dcm", series), {}, "do not match the reference"),
        ((image, out / "a.nrrd"), {}, "not a label map"),
        ((nifti, out / "a.txt"), {}, "Cannot tell the output format"),
        ((nifti, out / "a.seg.dcm", series), {"algorithm_type": "guess"}, "algorithm type"),
        ((nifti, tmp_path / "missing" / "a.nrrd"), {}, "does not exist"),
    ]
    for args, kwargs, message in cases:
        with pytest.raises(MedsegIOError, match=message) as info:
            convert_labels(*args, **kwargs)
        assert "\n" not in str(info.value)
    assert not list(out.iterdir())


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "napari_medseg.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_cli_convert(tmp_path, series_and_flipped_nifti):
    series, nifti, classes, labels = series_and_flipped_nifti
    out = tmp_path / "case.seg.dcm"
    run = _cli("convert", nifti, out, "--reference", series, "--classes", classes)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == str(out)
    np.testing.assert_array_equal(read_dicom_seg(out, series).array, labels)
    run = _cli("convert", nifti, tmp_path / "x.seg.dcm")
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1
    assert "--reference" in run.stderr and "Traceback" not in run.stderr


def test_an_image_given_as_the_label_map_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    scan = Volume(rng.integers(0, 140, (6, 20, 18)).astype(np.uint8), (1.0, 1.0, 1.0))
    write_nifti(scan, tmp_path / "scan.nii.gz")
    out = tmp_path / "out.nii.gz"
    with pytest.raises(MedsegIOError, match=r"scan.nii.gz holds \d+ different values .*looks "
                                            "like an image, not a label map"):
        convert_labels(tmp_path / "scan.nii.gz", out)
    assert not out.exists()
    many = {v: f"structure {v}" for v in range(1, 140)}  # named: it is a label map after all
    assert convert_labels(tmp_path / "scan.nii.gz", out, classes=many)
    organs = np.zeros((6, 20, 18), np.uint8)
    organs.reshape(-1)[:30] = np.arange(1, 31)  # 30 structures: more than 16, named *_seg
    write_nifti(Volume(organs, (1.0, 1.0, 1.0)), tmp_path / "organs_seg.nii.gz", labels=True)
    assert convert_labels(tmp_path / "organs_seg.nii.gz", tmp_path / "o.nrrd")  # name says so
