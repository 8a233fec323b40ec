"""DICOM Segmentation (SEG) and RT Structure Set (RTSTRUCT) objects in and out.

Both kinds describe labels *on another series*: the referenced image series (a CT or MR) gives
the voxel grid. A label map here is always the ``(Z, Y, X)`` integer array of that series as
:func:`napari_medseg.io.dicom.read_dicom_series` reads it (slices sorted along the plane normal,
rows, columns), with its RAS affine, so a SEG or RTSTRUCT overlays the image voxel for voxel.

* **SEG** is read and written with highdicom (BINARY segmentation, one segment per class; segment
  labels, colours and algorithm type from the class table; a coded category and type, SCT
  "Tissue" / "Organ" by default). highdicom copies from the source series exactly what the SEG
  standard requires (patient, study, frame of reference, references to each source image) and
  validates the object as it builds it.
* **RTSTRUCT** is written and read with pydicom and scikit-image (highdicom has no RTSTRUCT; the
  rt-utils package was tried and left out: it imports OpenCV, whose bundled Qt plugins break
  napari's Qt on import). Writing traces each class on each slice with marching squares at the
  0.5 iso-line (sub-voxel outlines, straight runs merged); reading fills every closed
  planar contour with :func:`skimage.draw.polygon` (voxel centres inside the polygon) and
  combines the contours of one ROI on a slice by XOR, so inner contours are holes. ROI numbers
  become label values, so a write/read round trip keeps values and names.

Every problem raises :class:`~napari_medseg.io.errors.MedsegIOError` with one line for the user;
nothing is written unless the whole object could be built (temporary file + rename).
"""

from __future__ import annotations

import datetime as _dt
import os
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_medseg.io.errors import MedsegIOError, MedsegIOWarning, check_readable, one_line
from napari_medseg.io.volume import Volume, spacing_from_affine

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_NON_IMAGE_MODALITIES = {"SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "SR", "PR", "KO", "REG", "RTRECORD"}
#: Files looked at when searching a folder for the series a SEG / RTSTRUCT refers to.
MAX_SEARCH_FILES = 20000

ReferenceLike = (str | os.PathLike[str] | Volume | Sequence[str | os.PathLike[str]]
                 | Sequence[Any])


# --------------------------------------------------------------------------------------------
# the referenced series: datasets sorted as the image reader sorts them, and its grid
# --------------------------------------------------------------------------------------------


@dataclass
class ReferenceSeries:
    """The image series a SEG or RTSTRUCT sits on, in array order.

    Attributes
    ----------
    datasets : list of pydicom.Dataset
        Headers (no pixel data) of the slices, sorted along the plane normal like
        :func:`~napari_medseg.io.dicom.read_dicom_series`.
    shape : tuple of int
        ``(Z, Y, X)`` (one slice: ``(1, Y, X)``).
    affine : np.ndarray
        4x4 array index -> RAS mm (the image Volume's affine).
    series_uid, frame_of_reference_uid : str
    """

    datasets: list[Any]
    shape: tuple[int, int, int]
    affine: np.ndarray
    series_uid: str
    frame_of_reference_uid: str
    warnings: list[str] = field(default_factory=list)

    @property
    def affine_lps(self) -> np.ndarray:
        """Array index -> LPS mm (DICOM's patient frame)."""
        return _LPS_TO_RAS @ self.affine

    @property
    def sop_instance_uids(self) -> list[str]:
        return [str(ds.SOPInstanceUID) for ds in self.datasets]

    def volume(self, labels: np.ndarray, metadata: dict[str, Any], name: str) -> Volume:
        """A label Volume on this grid (2D when the series is one slice)."""
        arr = labels[0] if self.shape[0] == 1 else labels
        spacing = spacing_from_affine(self.affine, arr.ndim)
        return Volume(arr, spacing, self.affine.copy(), "unknown", metadata, name)


def _dcmread(path: str | os.PathLike[str], **kwargs: Any):
    import pydicom

    return pydicom.dcmread(str(path), **kwargs)


def _files_under(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if not f.startswith("."):
                out.append(Path(dirpath) / f)
                if len(out) >= MAX_SEARCH_FILES:
                    return out
    return out


def _is_image_header(ds: Any) -> bool:
    return ("ImagePositionPatient" in ds and "ImageOrientationPatient" in ds
            and str(ds.get("Modality", "")) not in _NON_IMAGE_MODALITIES
            and int(ds.get("NumberOfFrames", 1) or 1) == 1)


def _headers(paths: Sequence[Path], series_uid: str | None) -> list[Any]:
    out = []
    for p in paths:
        try:
            ds = _dcmread(p, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - not DICOM (pydicom raises several kinds)
            continue
        if _is_image_header(ds) and (series_uid is None or ds.get("SeriesInstanceUID") == series_uid):
            out.append(ds)
    return out


def load_reference_series(reference: ReferenceLike, series_uid: str | None = None
                          ) -> ReferenceSeries:
    """Collect and sort the slices of the image series a SEG / RTSTRUCT refers to.

    Parameters
    ----------
    reference : path, list of paths, list of pydicom Datasets, or Volume
        A folder (searched recursively) or file of the series, its files, their datasets, or
        the image :class:`Volume` read from it (``metadata["path"]`` and ``["series_uid"]``).
    series_uid : str, optional
        Keep only this SeriesInstanceUID (needed when the folder holds several series).

    Raises
    ------
    MedsegIOError
        No image slices found, several series and none chosen, or slices of different
        orientation or size.
    """
    import pydicom

    where = "the given datasets"
    if isinstance(reference, Volume):
        meta = reference.metadata or {}
        if meta.get("format") != "dicom" or not meta.get("path"):
            raise MedsegIOError(
                f"'{reference.name}' was not read from DICOM, so a DICOM SEG / RTSTRUCT cannot "
                "reference it; open the DICOM series it came from."
            )
        series_uid = series_uid or meta.get("series_uid")
        reference = meta["path"]
    if series_uid and str(series_uid).startswith("no-uid-"):  # io.dicom's name for "none"
        series_uid = None
    if isinstance(reference, (str, os.PathLike)):
        root = check_readable(reference)
        where = str(root)
        datasets = _headers(_files_under(root), series_uid)
    else:
        items = list(reference)
        if items and all(isinstance(d, pydicom.Dataset) for d in items):
            datasets = [d for d in items if _is_image_header(d)
                        and (series_uid is None or d.get("SeriesInstanceUID") == series_uid)]
        else:
            datasets = _headers([Path(p) for p in items], series_uid)
    if not datasets:
        wanted = f" of series {series_uid}" if series_uid else ""
        raise MedsegIOError(f"No DICOM image slices{wanted} found in {where}.")
    uids = sorted({str(d.get("SeriesInstanceUID", "")) for d in datasets})
    if len(uids) > 1:
        raise MedsegIOError(
            f"{where} holds {len(uids)} image series; choose the one the segmentation belongs to."
        )
    return _sorted_series(datasets, where)


def _sorted_series(datasets: list[Any], where: str) -> ReferenceSeries:
    d0 = datasets[0]
    iop = np.asarray([float(v) for v in d0.ImageOrientationPatient])
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    normal /= np.linalg.norm(normal)
    for d in datasets[1:]:
        if (not np.allclose([float(v) for v in d.ImageOrientationPatient], iop, atol=1e-4)
                or (d.Rows, d.Columns) != (d0.Rows, d0.Columns)):
            raise MedsegIOError(
                f"The slices in {where} differ in orientation or size; they are not one volume."
            )
    positions = [float(np.dot([float(v) for v in d.ImagePositionPatient], normal))
                 for d in datasets]
    order = sorted(range(len(datasets)),
                   key=lambda i: (positions[i], int(datasets[i].get("InstanceNumber", 0) or 0)))
    kept, kept_pos, notes = [], [], []
    for i in order:
        if kept_pos and abs(positions[i] - kept_pos[-1]) < 1e-3:
            continue
        kept.append(datasets[i])
        kept_pos.append(positions[i])
    if len(kept) < len(datasets):
        notes.append(f"{len(datasets) - len(kept)} slice(s) share their position with another "
                     "and were left out.")
    pixel = d0.get("PixelSpacing") or [1.0, 1.0]
    row_spacing, col_spacing = float(pixel[0]), float(pixel[1])
    if len(kept) > 1:
        step = round(float(np.median(np.diff(kept_pos))), 6)
    else:
        step = float(d0.get("SpacingBetweenSlices") or d0.get("SliceThickness") or 1.0)
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = normal * step
    affine_lps[:3, 1] = col_dir * row_spacing
    affine_lps[:3, 2] = row_dir * col_spacing
    affine_lps[:3, 3] = [float(v) for v in kept[0].ImagePositionPatient]
    return ReferenceSeries(
        kept, (len(kept), int(d0.Rows), int(d0.Columns)), _LPS_TO_RAS @ affine_lps,
        str(d0.get("SeriesInstanceUID", "")), str(d0.get("FrameOfReferenceUID", "")), notes)


def referenced_series_uid(path: str | os.PathLike[str]) -> str | None:
    """SeriesInstanceUID of the image series a SEG or RTSTRUCT file refers to."""
    ds = _read_object(path)
    return _referenced_uid(ds)


def _referenced_uid(ds: Any) -> str | None:
    for item in ds.get("ReferencedSeriesSequence", []):  # SEG
        if "SeriesInstanceUID" in item:
            return str(item.SeriesInstanceUID)
    for frame in ds.get("ReferencedFrameOfReferenceSequence", []):  # RTSTRUCT
        for study in frame.get("RTReferencedStudySequence", []):
            for series in study.get("RTReferencedSeriesSequence", []):
                if "SeriesInstanceUID" in series:
                    return str(series.SeriesInstanceUID)
    return None


def find_reference_series(path: str | os.PathLike[str]) -> list[Path]:
    """Files of the image series a SEG / RTSTRUCT refers to, searched beside it, then in its parent.

    Raises
    ------
    MedsegIOError
        The object names no series, or the series is in neither folder (the message says which
        series, so the user can find it).
    """
    p = check_readable(path)
    ds = _read_object(p)
    uid = _referenced_uid(ds)
    kind = _kind_name(ds)
    if not uid:
        raise MedsegIOError(f"{p.name} ({kind}) does not say which image series it belongs to.")
    searched = []
    for folder in (p.parent, p.parent.parent):
        if folder in searched:
            continue
        searched.append(folder)
        found = [f for f in _files_under(folder) if f != p and _series_of(f) == uid]
        if found:
            return found
    raise MedsegIOError(
        f"The image series {kind} {p.name} refers to (SeriesInstanceUID {uid}) is not in "
        f"{p.parent} or its parent folder; put the series beside it or choose its folder."
    )


def _series_of(path: Path) -> str | None:
    try:
        ds = _dcmread(path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
    except Exception:  # noqa: BLE001 - not DICOM
        return None
    return str(ds.get("SeriesInstanceUID", "")) or None


def _read_object(path: str | os.PathLike[str]) -> Any:
    p = check_readable(path)
    try:
        return _dcmread(p, stop_before_pixels=True)
    except Exception as exc:  # noqa: BLE001 - pydicom raises several kinds
        raise MedsegIOError(f"{Path(p).name} is not a readable DICOM file: {one_line(exc)}") from exc


def _kind_name(ds: Any) -> str:
    sop = str(ds.get("SOPClassUID", ""))
    if sop == SEG_SOP_CLASS or ds.get("Modality") == "SEG":
        return "the DICOM SEG"
    if sop == RTSTRUCT_SOP_CLASS or ds.get("Modality") == "RTSTRUCT":
        return "the RTSTRUCT"
    return "the DICOM object"


def dicom_object_kind(path: str | os.PathLike[str]) -> str | None:
    """``"seg"`` for a DICOM SEG, ``"rtstruct"`` for an RT Structure Set, else ``None``."""
    try:
        ds = _dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID", "Modality"])
    except Exception:  # noqa: BLE001 - not DICOM
        return None
    sop, modality = str(ds.get("SOPClassUID", "")), str(ds.get("Modality", ""))
    if sop == SEG_SOP_CLASS or modality == "SEG":
        return "seg"
    if sop == RTSTRUCT_SOP_CLASS or modality == "RTSTRUCT":
        return "rtstruct"
    return None


def _atomic_save(ds: Any, out: Path) -> Path:
    if not out.parent.is_dir():
        raise MedsegIOError(f"Cannot save {out.name}: folder {out.parent} does not exist.")
    tmp = out.with_name(f".{out.name}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        ds.save_as(str(tmp), enforce_file_format=True)
        os.replace(tmp, out)
    except PermissionError as exc:
        raise MedsegIOError(f"Permission denied: cannot write {out}") from exc
    except OSError as exc:
        raise MedsegIOError(f"Cannot write {out}: {exc.strerror or exc}") from exc
    finally:
        if tmp.exists():
            tmp.unlink()
    return out


def _check_uids(ref: ReferenceSeries, what: str) -> None:
    d0 = ref.datasets[0]
    missing = [k for k in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID",
                           "SOPInstanceUID", "SOPClassUID") if not str(d0.get(k, "") or "").strip()]
    if missing:
        raise MedsegIOError(
            f"The DICOM series lacks {', '.join(missing)} (anonymised?), which {what} must "
            "reference; save the labels as NIfTI or NRRD instead."
        )


def _check_labels(labels: np.ndarray, ref: ReferenceSeries) -> np.ndarray:
    a = np.asarray(labels)
    if a.ndim == 2:
        a = a[None]
    if a.shape != ref.shape:
        raise MedsegIOError(
            f"The labels (shape {np.asarray(labels).shape}) do not match the DICOM series "
            f"(shape {ref.shape}); they must be drawn on that series."
        )
    if a.dtype.kind == "b":
        a = a.astype(np.uint8)
    if a.dtype.kind not in "ui" or (a.size and a.min() < 0):
        raise MedsegIOError("Labels must be whole numbers 0, 1, 2, ... to be saved as DICOM.")
    return a


def _classes(labels: np.ndarray, label_names: dict[int, str] | None) -> dict[int, str]:
    names = {int(k): str(v) for k, v in (label_names or {}).items() if int(k) != 0}
    for v in np.unique(labels):
        if int(v) != 0 and int(v) not in names:
            names[int(v)] = f"label {int(v)}"
    return dict(sorted(names.items()))


def _colours(names: dict[int, str], colours: dict[int, Sequence[float]] | None
             ) -> dict[int, tuple[int, int, int]]:
    from napari_medseg.labels import class_colour  # the package's one palette

    out = {v: class_colour(v) for v in names if v != 0}
    for k, rgb in (colours or {}).items():
        vals = [float(c) for c in list(rgb)[:3]]
        if max(vals) <= 1.0:
            vals = [c * 255.0 for c in vals]
        out[int(k)] = tuple(int(round(min(max(c, 0.0), 255.0))) for c in vals)  # type: ignore[assignment]
    return out


# --------------------------------------------------------------------------------------------
# DICOM SEG
# --------------------------------------------------------------------------------------------


def write_dicom_seg(
    labels: np.ndarray,
    reference: ReferenceLike,
    out_path: str | os.PathLike[str],
    label_names: dict[int, str] | None = None,
    colours: dict[int, Sequence[float]] | None = None,
    *,
    algorithm_type: str = "AUTOMATIC",
    algorithm_name: str = "napari-medseg",
    series_description: str = "Segmentation",
    category: Any = None,
    property_type: Any = None,
) -> Path:
    """Save a label map as a DICOM SEG that references its source series.

    Parameters
    ----------
    labels : np.ndarray
        ``(Z, Y, X)`` integer class indices on the reference series' grid (array order of
        :func:`~napari_medseg.io.dicom.read_dicom_series`); 0 is background.
    reference : path, list of paths or datasets, or Volume
        The source image series (see :func:`load_reference_series`).
    out_path : path-like
        Destination file (``.dcm``).
    label_names : dict, optional
        ``{value: name}`` class table; every class in it becomes a segment (even if empty), and
        values present but unnamed are called ``"label N"``.
    colours : dict, optional
        ``{value: (r, g, b)}`` (0-255 or 0-1); default: the package palette.
    algorithm_type : str
        ``"AUTOMATIC"`` (a model's prediction), ``"SEMIAUTOMATIC"`` or ``"MANUAL"``.
    algorithm_name : str
        Recorded for automatic / semi-automatic segments.
    series_description : str
    category, property_type : pydicom Code, optional
        Segmented property category and type for every segment (default SCT Tissue / Organ).

    Returns
    -------
    Path
        The file written.

    Notes
    -----
    DICOM numbers segments 1, 2, 3 ...: class values that already are 1..N are kept; other
    sets (e.g. {1, 4}) are numbered in increasing order and read back as 1..N.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from napari_medseg import __version__

    ref = load_reference_series(reference)
    _check_uids(ref, "a DICOM SEG")
    data = _check_labels(labels, ref)
    names = _classes(data, label_names)
    if not names:
        raise MedsegIOError("The label map is empty and has no classes: nothing to save.")
    rgb = _colours(names, colours)
    numbers = {value: i + 1 for i, value in enumerate(names)}
    if any(v != n for v, n in numbers.items()):
        lut = np.zeros(int(data.max()) + 1, dtype=np.uint16)
        for v, n in numbers.items():
            if v < lut.size:
                lut[v] = n
        data = lut[data]
    kind = algorithm_type.upper()
    try:
        algo_type = hd.seg.SegmentAlgorithmTypeValues[kind]
    except KeyError as exc:
        raise MedsegIOError(
            f"Unknown algorithm type {algorithm_type!r}; use AUTOMATIC, SEMIAUTOMATIC or MANUAL."
        ) from exc
    algorithm = None
    if kind != "MANUAL":
        algorithm = hd.AlgorithmIdentificationSequence(
            name=algorithm_name, family=codes.DCM.ArtificialIntelligence, version=__version__)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=numbers[value],
            segment_label=name[:64],
            segmented_property_category=category or codes.SCT.Tissue,
            segmented_property_type=property_type or codes.SCT.Organ,
            algorithm_type=algo_type,
            algorithm_identification=algorithm,
            display_color=hd.color.CIELabColor.from_rgb(*rgb[value]),
        )
        for value, name in names.items()
    ]
    try:
        seg = hd.seg.Segmentation(
            source_images=ref.datasets,
            pixel_array=data.astype(np.uint16 if data.max() > 255 else np.uint8),
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=hd.UID(),
            series_number=int(ref.datasets[0].get("SeriesNumber", 0) or 0) + 1000,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="napari-medseg",
            manufacturer_model_name="napari-medseg",
            software_versions=__version__,
            device_serial_number="none",
            series_description=series_description[:64],
            content_label="SEGMENTATION",
            content_description=f"{len(names)} classes"[:64],
        )
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise MedsegIOError(f"Cannot build a DICOM SEG from this series: {one_line(exc)}") from exc
    return _atomic_save(seg, Path(out_path).expanduser())


def _segment_table(seg: Any) -> tuple[dict[int, str], dict[int, list[int]], list[dict[str, Any]]]:
    import highdicom as hd

    names: dict[int, str] = {}
    colours: dict[int, list[int]] = {}
    rows = []
    for number in seg.get_segment_numbers():
        desc = seg.get_segment_description(number)
        names[int(number)] = str(desc.segment_label)
        entry: dict[str, Any] = {"number": int(number), "label": str(desc.segment_label),
                                 "algorithm_type": desc.algorithm_type.value}
        if "RecommendedDisplayCIELabValue" in desc:
            lab = hd.color.CIELabColor.from_dicom_value(desc.RecommendedDisplayCIELabValue)
            colours[int(number)] = [int(c) for c in lab.to_rgb()]
            entry["colour"] = colours[int(number)]
        for key, attr in (("category", "segmented_property_category"),
                          ("type", "segmented_property_type")):
            code = getattr(desc, attr, None)
            if code is not None:
                entry[key] = str(code.meaning)
        rows.append(entry)
    return names, colours, rows


def _segread(path: str | os.PathLike[str]) -> Any:
    import highdicom as hd

    p = check_readable(path)
    ds = _read_object(p)
    if str(ds.get("SOPClassUID", "")) != SEG_SOP_CLASS:
        raise MedsegIOError(f"{p.name} is not a DICOM Segmentation (SEG) object.")
    try:
        return hd.seg.segread(str(p))
    except Exception as exc:  # noqa: BLE001 - highdicom / pydicom raise several kinds
        raise MedsegIOError(f"{p.name} is a DICOM SEG that cannot be read: {one_line(exc)}") from exc


def describe_dicom_seg(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What ``napari-medseg info`` prints for a SEG: segments and the series it references."""
    seg = _segread(path)
    _, _, rows = _segment_table(seg)
    shape = spacing = affine = None
    try:  # the SEG's own frame grid, from its headers
        geometry = seg.get_volume_geometry()
        ras = _LPS_TO_RAS @ np.asarray(geometry.affine, dtype=float)
        shape, affine = list(geometry.spatial_shape), ras.tolist()
        spacing = list(spacing_from_affine(ras, 3))
    except Exception:  # noqa: BLE001 - frames that do not form a regular volume
        pass
    return {
        "path": str(path), "format": "dicom-seg", "modality": "SEG",
        "shape": shape, "spacing": spacing, "affine": affine, "dtype": "uint8",
        "segmentation_type": str(seg.SegmentationType),
        "segments": rows,
        "referenced_series_uid": _referenced_uid(seg),
        "frame_of_reference_uid": str(seg.get("FrameOfReferenceUID", "")),
        "frames": int(seg.get("NumberOfFrames", 0) or 0),
        "rows": int(seg.Rows), "columns": int(seg.Columns),
        "series": [], "warnings": [],
    }


def _seg_volume(seg: Any, warn: list[str]) -> Any:
    """The SEG as one highdicom Volume of segment numbers (overlaps: highest number wins)."""
    seg_type = str(seg.SegmentationType)
    try:
        if seg_type == "FRACTIONAL":
            vol = seg.get_volume(combine_segments=False, rescale_fractional=True)
            lab = np.zeros(vol.array.shape[:-1], np.uint16)
            for i, n in enumerate(seg.get_segment_numbers()):
                lab[vol.array[..., i] >= 0.5] = n  # a voxel belongs where it is at least half
            return vol.with_array(lab)
        try:
            return seg.get_volume(combine_segments=True)
        except RuntimeError as exc:
            if "overlap" not in str(exc).lower():
                raise
            vol = seg.get_volume(combine_segments=False)
            lab = np.zeros(vol.array.shape[:-1], np.uint16)
            for i, n in enumerate(seg.get_segment_numbers()):
                lab[vol.array[..., i] > 0] = n
            warn.append("Segments overlap; where they do, the higher segment number was kept.")
            return vol.with_array(lab)
    except (RuntimeError, ValueError) as exc:
        raise MedsegIOError(
            f"The frames of this DICOM SEG do not form a regular volume: {one_line(exc)}"
        ) from exc


def read_dicom_seg(path: str | os.PathLike[str], reference: ReferenceLike | None = None) -> Volume:
    """Read a DICOM SEG as an integer label map (segment numbers).

    Parameters
    ----------
    path : path-like
        The SEG file.
    reference : path, list of paths or datasets, or Volume, optional
        The referenced image series: the labels are then on its grid (same shape and affine as
        the image Volume). ``None``: on the SEG's own frame geometry. Use
        :func:`find_reference_series` to look for it beside the file.

    Returns
    -------
    Volume
        uint8/uint16 labels; ``metadata`` has ``format="dicom-seg"``, ``is_labels=True``,
        ``orientation_known=True``, ``label_names`` and ``label_colours`` (RGB 0-255) keyed by
        ``str(value)``, ``segments`` (descriptions), ``referenced_series_uid``.

    Raises
    ------
    MedsegIOError
        Not a SEG, unreadable, frames that do not form a volume, or a reference series on
        another frame of reference.
    """
    import highdicom as hd

    seg = _segread(path)
    names, colours, rows = _segment_table(seg)
    warn: list[str] = []
    hvol = _seg_volume(seg, warn)
    arr = np.asarray(hvol.array)
    arr = arr.astype(np.uint8 if arr.size == 0 or arr.max() <= 255 else np.uint16, copy=False)
    metadata: dict[str, Any] = {
        "path": str(path), "format": "dicom-seg", "is_labels": True, "orientation_known": True,
        "label_names": {str(k): v for k, v in names.items()},
        "label_colours": {str(k): v for k, v in colours.items()},
        "segments": rows, "referenced_series_uid": _referenced_uid(seg),
        "frame_of_reference_uid": str(seg.get("FrameOfReferenceUID", "")), "warnings": warn,
    }
    name = Path(path).stem
    if reference is None:
        affine = _LPS_TO_RAS @ np.asarray(hvol.affine, dtype=float)
        return Volume(arr, spacing_from_affine(affine, 3), affine, "unknown", metadata, name)
    ref = load_reference_series(reference, _referenced_uid(seg) if not isinstance(
        reference, Volume) else None)
    if (ref.frame_of_reference_uid and metadata["frame_of_reference_uid"]
            and ref.frame_of_reference_uid != metadata["frame_of_reference_uid"]):
        raise MedsegIOError(
            f"{Path(path).name} and the chosen series are in different frames of reference "
            "(different patient positioning); choose the series the SEG was made on."
        )
    geometry = hd.VolumeGeometry(ref.affine_lps, ref.shape, "PATIENT")
    try:
        on_grid = np.asarray(hvol.with_array(arr).match_geometry(geometry, tol=1e-3).array)
    except RuntimeError:
        on_grid = _resample_nearest(arr, np.asarray(hvol.affine, float), ref)
        warn.append("The SEG frames are not on the series' voxel grid; they were resampled "
                    "(nearest neighbour).")
    metadata["reference_series_uid"] = ref.series_uid
    for msg in warn:
        warnings.warn(msg, MedsegIOWarning, stacklevel=2)
    return ref.volume(on_grid.astype(arr.dtype, copy=False), metadata, name)


def _resample_nearest(arr: np.ndarray, src_affine_lps: np.ndarray, ref: ReferenceSeries
                      ) -> np.ndarray:
    from scipy.ndimage import affine_transform

    matrix = np.linalg.inv(src_affine_lps) @ ref.affine_lps
    return affine_transform(arr, matrix[:3, :3], matrix[:3, 3], output_shape=ref.shape,
                            order=0, mode="constant", cval=0)


# --------------------------------------------------------------------------------------------
# RTSTRUCT
# --------------------------------------------------------------------------------------------


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

    Returns
    -------
    Path
        The file written.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from napari_medseg import __version__

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
    ds.Manufacturer = "napari-medseg"
    ds.ManufacturerModelName = "napari-medseg"
    ds.SoftwareVersions = __version__
    ds.FrameOfReferenceUID = ref.frame_of_reference_uid
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
        roi.ROIGenerationAlgorithm = "AUTOMATIC"
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


# --------------------------------------------------------------------------------------------
# one door for io.read_volume / io.describe_path
# --------------------------------------------------------------------------------------------


def read_dicom_labels(path: str | os.PathLike[str], reference: ReferenceLike | None = None
                      ) -> Volume:
    """A SEG or RTSTRUCT file as a label Volume on its referenced series' grid.

    The series is searched beside the file and in its parent folder when ``reference`` is
    ``None`` (:func:`find_reference_series`); a clear error says which series is missing.
    """
    kind = dicom_object_kind(path)
    if kind == "seg":
        return read_dicom_seg(path, reference if reference is not None
                              else find_reference_series(path))
    if kind == "rtstruct":
        return read_rtstruct(path, reference)
    raise MedsegIOError(f"{Path(path).name} is neither a DICOM SEG nor an RTSTRUCT.")


def describe_dicom_labels(path: str | os.PathLike[str]) -> dict[str, Any]:
    """:func:`describe_dicom_seg` or :func:`describe_rtstruct`, whichever ``path`` is."""
    kind = dicom_object_kind(path)
    if kind == "seg":
        return describe_dicom_seg(path)
    if kind == "rtstruct":
        return describe_rtstruct(path)
    raise MedsegIOError(f"{Path(path).name} is neither a DICOM SEG nor an RTSTRUCT.")
