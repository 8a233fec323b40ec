"""RT Structure Set (RTSTRUCT) objects in and out: label maps as closed planar contours.

Written and read with pydicom and scikit-image (highdicom has no RTSTRUCT; the rt-utils
package was tried and left out: it imports OpenCV, whose bundled Qt plugins break napari's Qt
on import). Writing traces each class on each slice with marching squares at the 0.5 iso-line
(sub-voxel outlines, straight runs merged); reading fills every closed planar contour with
:func:`skimage.draw.polygon` (voxel centres inside the polygon) and combines the contours of
one ROI on a slice by XOR, so inner contours are holes. ROI numbers become label values, so a
write/read round trip keeps values and names. The grid is the referenced series'
(:mod:`napari_medseg.io.dicom_reference`).

Every problem raises :class:`~napari_medseg.io.errors.MedsegIOError` with one line for the user;
nothing is written unless the whole object could be built (temporary file + rename).
"""

from __future__ import annotations

import datetime as _dt
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_medseg.io.dicom_reference import (
    RTSTRUCT_SOP_CLASS,
    ReferenceLike,
    _atomic_save,
    _check_labels,
    _check_uids,
    _classes,
    _colours,
    _dcmread,
    _referenced_uid,
    find_reference_series,
    load_reference_series,
)
from napari_medseg.io.errors import MedsegIOError, MedsegIOWarning, check_readable, one_line
from napari_medseg.io.volume import Volume


def _ds_number(value: float) -> str:
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _drop_collinear(ring: np.ndarray) -> np.ndarray:
    """A closed polygon ``(N, 2)`` without its points that lie on a straight run (exact)."""
    prev, nxt = np.roll(ring, 1, axis=0), np.roll(ring, -1, axis=0)
    a, b = ring - prev, nxt - ring
    cross = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    return ring[np.abs(cross) > 1e-9]


def _slice_contours(mask: np.ndarray) -> list[np.ndarray]:
    """Closed outlines ``(N, 2)`` (row, col) of a 2D mask, holes included, at the 0.5 iso-line.

    Marching squares puts every vertex half-way between a voxel inside and one outside, so
    filling the polygons (voxel centres inside) gives the mask back exactly; points on straight
    runs are dropped without moving the outline.
    """
    from skimage.measure import find_contours

    padded = np.pad(mask.astype(np.float32), 1)
    out = []
    for c in find_contours(padded, 0.5):
        if np.allclose(c[0], c[-1]):
            c = c[:-1]
        c = _drop_collinear(c) - 1.0
        if len(c) >= 3:
            out.append(c)
    return out


def write_rtstruct(
    labels: np.ndarray,
    reference: ReferenceLike,
    out_path: str | os.PathLike[str],
    label_names: dict[int, str] | None = None,
    colours: dict[int, Sequence[float]] | None = None,
    *,
    structure_set_label: str = "napari-medseg",
    interpreted_type: str = "ORGAN",
    algorithm_type: str = "AUTOMATIC",
) -> Path:
    """Save a label map as an RT Structure Set: one ROI per class, closed planar contours.

    Parameters
    ----------
    labels : np.ndarray
        ``(Z, Y, X)`` integer class indices on the reference series' grid.
    reference : path, list of paths or datasets, or Volume
        The CT/MR series (see :func:`load_reference_series`).
    out_path : path-like
        Destination file.
    label_names : dict, optional
        ``{value: name}``; each class becomes the ROI with ROINumber = value.
    colours : dict, optional
        ``{value: (r, g, b)}`` (0-255 or 0-1) for ROIDisplayColor; default: package palette.
    structure_set_label : str
    interpreted_type : str
        RTROIInterpretedType of every ROI (``"ORGAN"``, ``"GTV"``, ``"PTV"`` ...).
    algorithm_type : str
        ROIGenerationAlgorithm of every ROI: ``"AUTOMATIC"`` (a model's prediction),
        ``"SEMIAUTOMATIC"`` or ``"MANUAL"`` (drawn by hand).

    Returns
    -------
    Path
        The file written.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from napari_medseg import __version__

    kind = algorithm_type.upper()
    if kind not in ("AUTOMATIC", "SEMIAUTOMATIC", "MANUAL"):
        raise MedsegIOError(
            f"Unknown algorithm type {algorithm_type!r}; use AUTOMATIC, SEMIAUTOMATIC or MANUAL.")
    ref = load_reference_series(reference)
    _check_uids(ref, "an RTSTRUCT")
    data = _check_labels(labels, ref)
    names = _classes(data, label_names)
    if not names:
        raise MedsegIOError("The label map is empty and has no classes: nothing to save.")
    rgb = _colours(names, colours)
    src = ref.datasets[0]
    lps = ref.affine_lps

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RTSTRUCT_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    now = _dt.datetime.now()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = RTSTRUCT_SOP_CLASS
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    # patient and study modules: what the standard requires to file the object with its study
    for key in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
                "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName"):
        setattr(ds, key, src.get(key, ""))
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = int(src.get("SeriesNumber", 0) or 0) + 2000
    ds.SeriesDescription = "RT Structure Set"
    ds.OperatorsName = ""  # RT Series module, type 2: present, empty (no person named)
    ds.Manufacturer = "napari-medseg"
    ds.ManufacturerModelName = "napari-medseg"
    ds.SoftwareVersions = __version__
    ds.InstanceNumber = 1
    ds.StructureSetLabel = structure_set_label[:16]
    ds.StructureSetDate = now.strftime("%Y%m%d")
    ds.StructureSetTime = now.strftime("%H%M%S")

    def image_ref(d: Any) -> Dataset:
        item = Dataset()
        item.ReferencedSOPClassUID = d.SOPClassUID
        item.ReferencedSOPInstanceUID = d.SOPInstanceUID
        return item

    series_item = Dataset()
    series_item.SeriesInstanceUID = ref.series_uid
    series_item.ContourImageSequence = DicomSequence([image_ref(d) for d in ref.datasets])
    study_item = Dataset()
    study_item.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management
    study_item.ReferencedSOPInstanceUID = src.get("StudyInstanceUID", "")
    study_item.RTReferencedSeriesSequence = DicomSequence([series_item])
    frame_item = Dataset()
    frame_item.FrameOfReferenceUID = ref.frame_of_reference_uid
    frame_item.RTReferencedStudySequence = DicomSequence([study_item])
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([frame_item])

    # outlines per (class, slice), each traced inside the class' bounding box on that slice
    from scipy.ndimage import find_objects

    outlines: dict[int, list[tuple[int, np.ndarray]]] = {v: [] for v in names}
    for k in range(data.shape[0]):
        plane = data[k]
        for index, box in enumerate(find_objects(plane), start=1):
            if box is None or index not in outlines:
                continue
            offset = np.array([box[0].start, box[1].start], dtype=float)
            for outline in _slice_contours(plane[box] == index):
                outlines[index].append((k, outline + offset))

    rois, contours, observations = [], [], []
    for i, (value, name) in enumerate(names.items()):
        roi = Dataset()
        roi.ROINumber = value
        roi.ReferencedFrameOfReferenceUID = ref.frame_of_reference_uid
        roi.ROIName = name[:64]
        roi.ROIGenerationAlgorithm = kind
        rois.append(roi)
        roi_contour = Dataset()
        roi_contour.ROIDisplayColor = list(rgb[value])
        roi_contour.ReferencedROINumber = value
        items = []
        for k, outline in outlines[value]:
            idx = np.column_stack([np.full(len(outline), float(k)), outline,
                                   np.ones(len(outline))])
            points = (lps @ idx.T)[:3].T
            c = Dataset()
            c.ContourImageSequence = DicomSequence([image_ref(ref.datasets[k])])
            c.ContourGeometricType = "CLOSED_PLANAR"
            c.NumberOfContourPoints = len(points)
            c.ContourData = [_ds_number(v) for v in points.ravel()]
            items.append(c)
        roi_contour.ContourSequence = DicomSequence(items)
        contours.append(roi_contour)
        obs = Dataset()
        obs.ObservationNumber = i + 1
        obs.ReferencedROINumber = value
        obs.RTROIInterpretedType = interpreted_type
        obs.ROIInterpreter = ""
        observations.append(obs)
    ds.StructureSetROISequence = DicomSequence(rois)
    ds.ROIContourSequence = DicomSequence(contours)
    ds.RTROIObservationsSequence = DicomSequence(observations)
    ds.ApprovalStatus = "UNAPPROVED"
    return _atomic_save(ds, Path(out_path).expanduser())


def _read_rt(path: str | os.PathLike[str]) -> Any:
    p = check_readable(path)
    try:
        ds = _dcmread(p)
    except Exception as exc:  # noqa: BLE001
        raise MedsegIOError(f"{p.name} is not a readable DICOM file: {one_line(exc)}") from exc
    if str(ds.get("SOPClassUID", "")) != RTSTRUCT_SOP_CLASS and ds.get("Modality") != "RTSTRUCT":
        raise MedsegIOError(f"{p.name} is not an RT Structure Set (RTSTRUCT).")
    return ds


def _roi_table(ds: Any) -> list[dict[str, Any]]:
    colours, counts, kinds = {}, {}, {}
    for rc in ds.get("ROIContourSequence", []):
        number = int(rc.ReferencedROINumber)
        if "ROIDisplayColor" in rc:
            colours[number] = [int(c) for c in rc.ROIDisplayColor]
        seq = rc.get("ContourSequence", [])
        counts[number] = len(seq)
        kinds[number] = sorted({str(c.get("ContourGeometricType", "")) for c in seq})
    types = {int(o.ReferencedROINumber): str(o.get("RTROIInterpretedType", ""))
             for o in ds.get("RTROIObservationsSequence", [])}
    rows = []
    for roi in ds.get("StructureSetROISequence", []):
        n = int(roi.ROINumber)
        rows.append({"number": n, "name": str(roi.get("ROIName", f"ROI {n}")),
                     "colour": colours.get(n), "contours": counts.get(n, 0),
                     "geometric_types": kinds.get(n, []), "interpreted_type": types.get(n, "")})
    return rows


def describe_rtstruct(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What ``napari-medseg info`` prints for an RTSTRUCT: ROIs and the series it references."""
    ds = _read_rt(path)
    return {
        "path": str(path), "format": "rtstruct", "modality": "RTSTRUCT",
        "shape": None, "spacing": None, "affine": None, "dtype": None,
        "structure_set_label": str(ds.get("StructureSetLabel", "")),
        "rois": _roi_table(ds),
        "referenced_series_uid": _referenced_uid(ds),
        "frame_of_reference_uid": str(ds.get("FrameOfReferenceUID", "") or next(
            (str(f.FrameOfReferenceUID) for f in ds.get("ReferencedFrameOfReferenceSequence", [])
             if "FrameOfReferenceUID" in f), "")),
        "series": [], "warnings": [],
    }


def read_rtstruct(path: str | os.PathLike[str], reference: ReferenceLike | None = None) -> Volume:
    """Rasterise an RT Structure Set onto its CT/MR series as an integer label map.

    Parameters
    ----------
    path : path-like
        The RTSTRUCT file.
    reference : path, list of paths or datasets, or Volume, optional
        The referenced image series; ``None`` looks for it beside the file and in its parent
        folder (:func:`find_reference_series`).

    Returns
    -------
    Volume
        Labels on the series grid, value = ROINumber (ROIs listed later overwrite earlier ones
        where they overlap). ``metadata``: ``format="rtstruct"``, ``label_names``,
        ``label_colours`` (keyed by ``str(value)``), ``rois``, ``warnings`` (contours that lie
        off the slices, overlaps).

    Raises
    ------
    MedsegIOError
        Not an RTSTRUCT, series not found, an open contour, or ROI numbers too large.
    """
    from skimage.draw import polygon

    ds = _read_rt(path)
    if reference is None:
        reference = find_reference_series(path)
    ref = load_reference_series(reference, _referenced_uid(ds) if not isinstance(
        reference, Volume) else None)
    rows = _roi_table(ds)
    names = {r["number"]: r["name"] for r in rows}
    if any(n < 0 or n > 65535 for n in names):
        raise MedsegIOError(f"{Path(path).name} has ROI numbers outside 0..65535.")
    dtype = np.uint8 if max(names, default=0) <= 255 else np.uint16
    labels = np.zeros(ref.shape, dtype=dtype)
    inverse = np.linalg.inv(ref.affine_lps)
    warn: list[str] = []
    off_grid, points_only, overlap = 0, 0, 0
    nz, ny, nx = ref.shape
    by_number = {int(rc.ReferencedROINumber): rc for rc in ds.get("ROIContourSequence", [])}
    for number in names:
        rc = by_number.get(number)
        if rc is None:
            continue
        roi_mask = np.zeros(ref.shape, dtype=bool)
        for c in rc.get("ContourSequence", []):
            kind = str(c.get("ContourGeometricType", "CLOSED_PLANAR"))
            if kind == "POINT":
                points_only += 1
                continue
            if kind == "OPEN_PLANAR" or kind == "OPEN_NONPLANAR":
                raise MedsegIOError(
                    f"ROI '{names[number]}' in {Path(path).name} has an open contour "
                    f"({kind}); only closed contours enclose a region that can become labels."
                )
            pts = np.asarray([float(v) for v in c.ContourData]).reshape(-1, 3)
            idx = (inverse @ np.column_stack([pts, np.ones(len(pts))]).T)[:3].T
            k = int(round(float(idx[:, 0].mean())))
            if np.ptp(idx[:, 0]) > 0.2 or abs(idx[0, 0] - k) > 0.2 or not 0 <= k < nz:
                off_grid += 1
                continue
            rr, cc = polygon(idx[:, 1], idx[:, 2], shape=(ny, nx))
            plane = np.zeros((ny, nx), dtype=bool)
            plane[rr, cc] = True
            roi_mask[k] ^= plane
        overlap += int(np.count_nonzero(labels[roi_mask]))
        labels[roi_mask] = number
    if off_grid:
        warn.append(f"{off_grid} contour(s) do not lie on a slice of the series and were left "
                    "out (the series is incomplete or is not the one the contours were drawn on).")
    if points_only:
        warn.append(f"{points_only} point marker(s) were left out (they enclose no region).")
    if overlap:
        warn.append(f"ROIs overlap on {overlap} voxels; the ROI listed later was kept there.")
    for msg in warn:
        warnings.warn(msg, MedsegIOWarning, stacklevel=2)
    metadata: dict[str, Any] = {
        "path": str(path), "format": "rtstruct", "is_labels": True, "orientation_known": True,
        "label_names": {str(k): v for k, v in names.items()},
        "label_colours": {str(r["number"]): r["colour"] for r in rows if r["colour"]},
        "rois": rows, "referenced_series_uid": _referenced_uid(ds),
        "reference_series_uid": ref.series_uid, "warnings": warn + ref.warnings,
    }
    return ref.volume(labels, metadata, Path(path).stem)

