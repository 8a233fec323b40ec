"""DICOM SEG (highdicom) and RTSTRUCT (pydicom + scikit-image) in and out."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("highdicom")
import pydicom  # noqa: E402
from dicom_factory import write_ct_series as _write_ct_series  # noqa: E402

from napari_medseg.io import read_dicom_series  # noqa: E402
from napari_medseg.io.dicom_seg import (  # noqa: E402
    describe_dicom_labels,
    describe_dicom_seg,
    describe_rtstruct,
    dicom_object_kind,
    find_reference_series,
    load_reference_series,
    read_dicom_labels,
    read_dicom_seg,
    read_rtstruct,
    write_dicom_seg,
    write_rtstruct,
)
from napari_medseg.io.errors import MedsegIOError  # noqa: E402

SHAPE = (8, 32, 32)


def _spheres(shape=SHAPE, spacing=(2.5, 0.8, 0.7)):
    z, y, x = np.meshgrid(*(np.arange(n) * s for n, s in zip(shape, spacing, strict=True)),
                          indexing="ij")
    labels = np.zeros(shape, np.uint8)
    labels[(z - 9) ** 2 + (y - 10) ** 2 + (x - 9) ** 2 < 7.0**2] = 1
    labels[(z - 10) ** 2 + (y - 15) ** 2 + (x - 16) ** 2 < 5.5**2] = 2
    return labels


def _dice(a, b):
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.fixture
def ct_series(tmp_path):
    return _write_ct_series(tmp_path / "ct")


def test_reference_grid_matches_image_reader(ct_series):
    ref = load_reference_series(ct_series)
    image = read_dicom_series(ct_series)
    assert ref.shape == image.shape
    np.testing.assert_allclose(ref.affine, image.affine, atol=1e-9)


def test_seg_round_trip_identical(tmp_path, ct_series):
    labels = _spheres()
    assert set(np.unique(labels)) == {0, 1, 2}
    out = write_dicom_seg(labels, ct_series, tmp_path / "seg.dcm",
                          {0: "background", 1: "liver", 2: "spleen"}, {1: (255, 0, 0)})
    assert dicom_object_kind(out) == "seg"
    image = read_dicom_series(ct_series)
    back = read_dicom_seg(out, ct_series)
    np.testing.assert_array_equal(back.array, labels)
    np.testing.assert_allclose(back.affine, image.affine, atol=1e-6)
    assert back.metadata["label_names"] == {"1": "liver", "2": "spleen"}
    assert back.metadata["label_colours"]["1"] == pytest.approx([255, 0, 0], abs=2)
    assert back.metadata["orientation_known"] is True and back.metadata["format"] == "dicom-seg"
    # own frame geometry (no reference): same voxels at the same world positions
    own = read_dicom_seg(out)
    world = own.affine @ np.c_[np.argwhere(own.array == 2), np.ones((own.array == 2).sum())].T
    idx = np.linalg.inv(image.affine) @ world
    assert np.allclose(idx, np.round(idx), atol=1e-4)
    assert np.all(labels[tuple(np.round(idx[:3]).astype(int))] == 2)
    # references: study, series, every source SOP instance, frame of reference
    seg = pydicom.dcmread(out)
    src = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(ct_series.iterdir())]
    assert seg.StudyInstanceUID == src[0].StudyInstanceUID
    assert seg.FrameOfReferenceUID == src[0].FrameOfReferenceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == src[0].SeriesInstanceUID
    refd = {i.ReferencedSOPInstanceUID for i in seg.ReferencedSeriesSequence[0]
            .ReferencedInstanceSequence}
    assert refd <= {d.SOPInstanceUID for d in src}
    assert seg.SegmentSequence[0].SegmentAlgorithmType == "AUTOMATIC"
    assert seg.SegmentSequence[1].SegmentLabel == "spleen"
    info = describe_dicom_seg(out)
    assert [s["label"] for s in info["segments"]] == ["liver", "spleen"]
    assert info["referenced_series_uid"] == src[0].SeriesInstanceUID


def test_seg_of_a_series_lacking_type2_patient_attributes(tmp_path, ct_series):
    # anonymised series often drop the birth date or the accession number
    for f in sorted(ct_series.iterdir()):
        ds = pydicom.dcmread(f)
        for keyword in ("PatientBirthDate", "AccessionNumber", "ReferringPhysicianName"):
            if keyword in ds:
                delattr(ds, keyword)
        ds.save_as(f)
    labels = _spheres()
    out = write_dicom_seg(labels, ct_series, tmp_path / "seg.dcm", {1: "a", 2: "b"})
    seg = pydicom.dcmread(out)
    assert seg.PatientBirthDate == "" and seg.AccessionNumber == ""  # present, unknown
    np.testing.assert_array_equal(read_dicom_seg(out, ct_series).array, labels)


def test_seg_of_a_series_with_an_empty_character_set(tmp_path, ct_series, caplog):
    # GE scanners write SpecificCharacterSet present but empty (the default repertoire)
    for f in sorted(ct_series.iterdir()):
        ds = pydicom.dcmread(f)
        ds.SpecificCharacterSet = ""
        ds.save_as(f)
    labels = _spheres()
    out = write_dicom_seg(labels, ct_series, tmp_path / "seg.dcm", {1: "a", 2: "b"})
    seg = pydicom.dcmread(out)
    assert seg.ContentCreatorName == ""  # Type 2: present, unknown
    np.testing.assert_array_equal(read_dicom_seg(out, ct_series).array, labels)
    # an empty map keeps its frames without highdicom's warning on the console
    caplog.clear()
    empty = write_dicom_seg(np.zeros_like(labels), ct_series, tmp_path / "empty.dcm", {1: "a"})
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    assert int(pydicom.dcmread(empty).NumberOfFrames) == labels.shape[0]


def test_seg_found_beside_and_missing_series(tmp_path, ct_series):
    out = write_dicom_seg(_spheres(), ct_series, tmp_path / "seg.dcm", {1: "a", 2: "b"},
                          algorithm_type="MANUAL")
    assert len(find_reference_series(out)) == SHAPE[0]
    lonely = tmp_path / "alone" / "deeper"
    lonely.mkdir(parents=True)
    moved = lonely / "seg.dcm"
    moved.write_bytes(out.read_bytes())
    with pytest.raises(MedsegIOError, match="is not in") as err:
        find_reference_series(moved)
    assert "\n" not in str(err.value)


def test_seg_bad_input(tmp_path, ct_series):
    with pytest.raises(MedsegIOError, match="do not match"):
        write_dicom_seg(np.zeros((3, 32, 32), np.uint8), ct_series, tmp_path / "x.dcm")
    with pytest.raises(MedsegIOError, match="empty"):
        write_dicom_seg(np.zeros(SHAPE, np.uint8), ct_series, tmp_path / "x.dcm")
    with pytest.raises(MedsegIOError, match="algorithm type"):
        write_dicom_seg(_spheres(), ct_series, tmp_path / "x.dcm", algorithm_type="GUESS")
    assert not (tmp_path / "x.dcm").exists()
    with pytest.raises(MedsegIOError, match="not a DICOM Segmentation"):
        read_dicom_seg(next(ct_series.iterdir()))


def test_dcmqi_liver_seg_matches_nrrd(samples_dir):
    from napari_medseg.io.itk_formats import read_itk_image

    base = samples_dir / "ct_dicom_seg_dcmqi"
    seg = read_dicom_seg(base / "liver.dcm", find_reference_series(base / "liver.dcm"))
    nrrd = read_itk_image(base / "liver_seg.nrrd")
    image = read_dicom_series(base / "ct-3slice")
    assert int((seg.array > 0).sum()) == 107098
    np.testing.assert_array_equal(seg.array, nrrd.array)
    np.testing.assert_allclose(seg.affine, image.affine, atol=1e-6)
    assert seg.metadata["label_names"] == {"1": "Liver"}
    # the door read_volume uses: the series is found beside the SEG
    np.testing.assert_array_equal(read_dicom_labels(base / "liver.dcm").array, nrrd.array)
    assert describe_dicom_labels(base / "liver.dcm")["segments"][0]["label"] == "Liver"
    with pytest.raises(MedsegIOError, match="neither"):
        read_dicom_labels(base / "ct-3slice" / "01.dcm")


def test_rtstruct_round_trip_spheres(tmp_path, ct_series):
    labels = _spheres()
    names = {1: "Liver", 2: "Spleen"}
    out = write_rtstruct(labels, ct_series, tmp_path / "rt.dcm", names, {2: (0, 255, 0)})
    assert dicom_object_kind(out) == "rtstruct"
    back = read_rtstruct(out, ct_series)
    np.testing.assert_allclose(back.affine, read_dicom_series(ct_series).affine, atol=1e-6)
    for value in names:
        assert _dice(back.array == value, labels == value) >= 0.98
    assert back.metadata["label_names"] == {"1": "Liver", "2": "Spleen"}
    assert back.metadata["label_colours"]["2"] == [0, 255, 0]
    # found beside the file when no reference is given
    np.testing.assert_array_equal(read_rtstruct(out).array, back.array)
    rt = pydicom.dcmread(out)
    assert rt.Modality == "RTSTRUCT"
    assert "FrameOfReferenceUID" not in rt  # not in the RT Structure Set IOD: in the sequence
    assert rt.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID \
        == pydicom.dcmread(next(ct_series.iterdir())).FrameOfReferenceUID
    assert {r.ROIGenerationAlgorithm for r in rt.StructureSetROISequence} == {"AUTOMATIC"}
    manual = write_rtstruct(labels, ct_series, tmp_path / "manual.dcm", names,
                            algorithm_type="manual")
    assert {r.ROIGenerationAlgorithm for r in pydicom.dcmread(manual).StructureSetROISequence} \
        == {"MANUAL"}
    with pytest.raises(MedsegIOError, match="algorithm type"):
        write_rtstruct(labels, ct_series, tmp_path / "x.dcm", names, algorithm_type="GUESS")
    assert {c.ContourGeometricType for r in rt.ROIContourSequence for c in r.ContourSequence} \
        == {"CLOSED_PLANAR"}


def test_rtstruct_holes_and_islands(tmp_path, ct_series):
    labels = np.zeros(SHAPE, np.uint8)
    labels[2:6, 4:28, 4:28] = 3
    labels[2:6, 10:20, 10:20] = 0  # a hole
    labels[2:6, 13:16, 13:16] = 3  # an island inside it
    labels[4, 1, 30] = 3  # a single voxel
    back = read_rtstruct(write_rtstruct(labels, ct_series, tmp_path / "rt.dcm", {3: "ring"}),
                         ct_series)
    np.testing.assert_array_equal(back.array, labels)  # voxel for voxel on a label map


def test_rtstruct_samples(tmp_path, samples_dir):
    phantom = samples_dir / "rtstruct" / "rt-utils_phantom"
    vol = read_rtstruct(phantom / "rt.dcm")
    assert vol.metadata["label_names"] == {"1": "ROI-1"}
    assert vol.shape == (2, 512, 512) and 1000 < int((vol.array == 1).sum()) < 2000
    # real series: our write + read keeps the rasterised ROI voxel for voxel (Dice 1)
    out = write_rtstruct(vol.array, phantom, tmp_path / "again.dcm", {1: "ROI-1"})
    np.testing.assert_array_equal(read_rtstruct(out, phantom).array, vol.array)
    info = describe_rtstruct(samples_dir / "rtstruct" / "dicompyler_breast" / "rtss.dcm")
    assert len(info["rois"]) == 10 and "Heart" in [r["name"] for r in info["rois"]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        partial = read_rtstruct(samples_dir / "rtstruct" / "dicompyler_breast" / "rtss.dcm")
    assert partial.shape == (512, 512)  # one CT slice of 98
    assert any("do not lie on a slice" in str(w.message) for w in caught)


def test_rtstruct_open_contour_is_an_error(tmp_path, ct_series):
    out = write_rtstruct(_spheres(), ct_series, tmp_path / "rt.dcm", {1: "a", 2: "b"})
    ds = pydicom.dcmread(out)
    ds.ROIContourSequence[0].ContourSequence[0].ContourGeometricType = "OPEN_PLANAR"
    ds.save_as(tmp_path / "open.dcm")
    with pytest.raises(MedsegIOError, match="open contour") as err:
        read_rtstruct(tmp_path / "open.dcm", ct_series)
    assert "\n" not in str(err.value)
    with pytest.raises(MedsegIOError, match="not an RT Structure Set"):
        read_rtstruct(next(ct_series.iterdir()), ct_series)


def _missing_required(ds) -> list[str]:
    """Type 1/2 attributes missing from the mandatory modules of the object's IOD, checked with
    highdicom's copy of the DICOM standard's module tables."""
    from highdicom._standard_utils import (
        check_required_attributes,
        get_iod_module_map,
        get_sop_class_iod_map,
    )

    iod = get_sop_class_iod_map()[ds.SOPClassUID]
    missing = []
    for module in get_iod_module_map()[iod]:
        if module["usage"] != "M":
            continue
        try:
            check_required_attributes(ds, module["key"])
        except AttributeError as exc:
            missing.append(f"{module['key']}: {exc}")
    return missing


def test_seg_and_rtstruct_hold_every_attribute_their_iod_requires(tmp_path, ct_series):
    labels = _spheres()
    names = {0: "background", 1: "liver", 2: "spleen"}
    seg = pydicom.dcmread(write_dicom_seg(labels, ct_series, tmp_path / "seg.dcm", names))
    rt = pydicom.dcmread(write_rtstruct(labels, ct_series, tmp_path / "rt.dcm", names))
    # the functional-groups table lists the frames' source images under the shared groups;
    # the standard allows them per frame, where highdicom writes them (checked here)
    assert all("DerivationImageSequence" in frame for frame in seg.PerFrameFunctionalGroupsSequence)
    assert [m for m in _missing_required(seg) if "'DerivationImageSequence' at path "
            "['SharedFunctionalGroupsSequence']" not in m] == []
    assert _missing_required(rt) == []
    # the check sees a missing attribute
    del rt.StructureSetROISequence[0].ROIName
    assert _missing_required(rt)


def _with_character_set(series, value, name):
    """Every file of ``series`` with PatientName ``name`` written in the character set that
    ``value`` means, then labelled with ``value`` as it is (misspelt or unknown too)."""
    meant = {"ISO-IR 100": "ISO_IR 100", "ISO_IR 999": "ISO_IR 100",
             "ISO 2022 IR 100": "ISO_IR 100"}.get(value if isinstance(value, str) else "", value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's remarks while the files are made
        for f in sorted(series.iterdir()):
            ds = pydicom.dcmread(f)
            ds.SpecificCharacterSet = meant
            ds.PatientName = name
            ds.save_as(f)
            raw = pydicom.dcmread(f)  # the name's bytes stay; only the label changes
            raw.SpecificCharacterSet = value
            raw.save_as(f)
        return str(pydicom.dcmread(f).PatientName)  # as any DICOM reader decodes it


@pytest.mark.parametrize(("value", "written", "warned"), [
    ("ISO-IR 100", "ISO_IR 100", "not a valid DICOM value"),  # the usual misspelling
    ("ISO_IR 999", "ISO_IR 192", "cannot use; the SEG is written in UTF-8"),  # unknown
    ("ISO 2022 IR 100", "ISO_IR 100", "not a valid DICOM value"),  # extensions, one term
    (["", "ISO 2022 IR 87"], ["ISO 2022 IR 6", "ISO 2022 IR 87"], None),  # Japanese, valid
])
def test_seg_and_rtstruct_of_a_series_with_a_misspelt_character_set(tmp_path, ct_series,
                                                                     value, written, warned):
    import highdicom as hd

    name = "Yamada^Tarou=山田^太郎" if isinstance(value, list) else "Müller^Jörg"
    decoded = _with_character_set(ct_series, value, name)
    assert decoded == name  # pydicom reads the letters right (ISO_IR 999: as Latin-1)
    labels = _spheres()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = write_dicom_seg(labels, ct_series, tmp_path / "seg.dcm", {1: "a", 2: "b"})
    lines = [str(w.message) for w in caught]
    if warned:
        assert len(lines) == 1 and warned in lines[0] and repr(value)[1:-1] in lines[0]
    else:
        assert lines == []
    seg = hd.seg.segread(str(out))  # as another tool reads it
    assert seg.SpecificCharacterSet == written
    assert str(seg.PatientName) == decoded
    assert [d.SegmentLabel for d in seg.SegmentSequence] == ["a", "b"]
    np.testing.assert_array_equal(read_dicom_seg(out, ct_series).array, labels)
    # RTSTRUCT (written in UTF-8) keeps the name too
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rt = write_rtstruct(labels, ct_series, tmp_path / "rt.dcm", {1: "a", 2: "b"})
    ds = pydicom.dcmread(rt)
    assert ds.SpecificCharacterSet == "ISO_IR 192" and str(ds.PatientName) == decoded
