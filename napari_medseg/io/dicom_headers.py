"""DICOM header scan: which files under a path are DICOM, and what their headers say.

Step 1 of reading a folder (the overview is in :mod:`napari_medseg.io.dicom`): every file under
the path (recursively) that starts with the DICOM preamble (``DICM`` at byte 128), plus
``.dcm``/``.ima`` files without a preamble that pydicom can parse. Other files are skipped
(counted in a warning); ``DICOMDIR`` is ignored. Headers only: elements larger than
``_DEFER_SIZE`` (the pixel data) are deferred, and the parsed file is kept in
``_Header.dataset`` so that decoding does not parse it a second time.

Pixel spacing comes from PixelSpacing, else ImagerPixelSpacing (X-ray and mammography:
measured at the detector, said in ``metadata["spacing_note"]``), else the calibrated
ultrasound region (SequenceOfUltrasoundRegions, PhysicalDeltaX/Y in cm -> mm), else 1 mm with
``metadata["spacing_known"] = False`` and a warning; ``metadata["spacing_source"]`` names it.
A value outside :data:`PLAUSIBLE_PIXEL_SPACING_MM` counts as missing (with a warning).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from napari_medseg.io.errors import MedsegIOError, check_readable

_DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
_EXTENSIONS_WITHOUT_PREAMBLE = {".dcm", ".dicom", ".ima"}
_CINE_KEYWORDS = ("FrameTime", "FrameTimeVector", "CineRate", "RecommendedDisplayFrameRate")
_US_UNITS_CM = 3


@dataclass
class _Header:
    path: str
    series_uid: str
    sop_class_uid: str
    modality: str
    rows: int | None
    cols: int | None
    n_frames: int
    iop: np.ndarray | None
    ipp: np.ndarray | None
    frame_ipps: list[np.ndarray] | None
    pixel_spacing: tuple[float, float] | None
    slice_thickness: float | None
    spacing_between: float | None
    instance: int
    description: str
    patient_id: str
    study_description: str
    series_number: int | None
    frame_of_reference: str
    transfer_syntax_uid: str
    samples_per_pixel: int
    echo: str
    temporal: str
    photometric: str = "MONOCHROME2"
    bits_stored: int | None = None
    spacing_source: str | None = None
    spacing_warnings: list[str] = field(default_factory=list)
    spacing_rejected: bool = False
    magnification: float | None = None
    cine: bool = False
    frame_time_ms: float | None = None
    #: The parsed file with its pixel data deferred (read on decoding, then dropped): each
    #: file's header is parsed once, not once to list the series and again to read it.
    dataset: Any = field(default=None, repr=False, compare=False)


def _floats(value: Any, n: int) -> np.ndarray | None:
    try:
        arr = np.array([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        return None
    return arr if arr.shape == (n,) and np.all(np.isfinite(arr)) else None


def _float(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def _int(value: Any, default: int | None = None) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value).strip()


def _first_item(ds: Dataset, *path: str) -> Dataset | None:
    """Follow a chain of sequences, taking item 0 each time."""
    cur: Any = ds
    for keyword in path:
        seq = cur.get(keyword) if cur is not None else None
        if not seq:
            return None
        cur = seq[0]
    return cur


def _functional(ds: Dataset, frame: int | None, *path: str) -> Dataset | None:
    """An item from the per-frame functional groups, falling back to the shared ones."""
    if frame is not None:
        per_frame = ds.get("PerFrameFunctionalGroupsSequence")
        if per_frame and frame < len(per_frame):
            item = _first_item(per_frame[frame], *path)
            if item is not None:
                return item
    return _first_item(ds, "SharedFunctionalGroupsSequence", *path)


def _ultrasound_spacing(ds: Dataset) -> tuple[np.ndarray | None, list[str]]:
    """Pixel size (row, column) in mm from the calibrated ultrasound regions, if any.

    Only regions whose physical units are centimetres in both directions
    (PhysicalUnitsX/YDirection = 3) count; 2D tissue regions (RegionSpatialFormat = 1) are
    preferred. Returns ``(spacing or None, warnings)``.
    """
    found: list[tuple[int, float, float]] = []
    for region in ds.get("SequenceOfUltrasoundRegions") or []:
        if (_int(region.get("PhysicalUnitsXDirection")) != _US_UNITS_CM
                or _int(region.get("PhysicalUnitsYDirection")) != _US_UNITS_CM):
            continue
        dx, dy = _float(region.get("PhysicalDeltaX")), _float(region.get("PhysicalDeltaY"))
        if dx and dy:
            spatial = _int(region.get("RegionSpatialFormat"), 0) == 1
            found.append((0 if spatial else 1, abs(dy) * 10.0, abs(dx) * 10.0))
    if not found:
        return None, []
    found.sort(key=lambda t: t[0])  # stable: 2D regions first, then file order
    _, row_mm, col_mm = found[0]
    warn = []
    if any(not np.isclose(r, row_mm) or not np.isclose(c, col_mm) for _, r, c in found[1:]):
        warn.append(
            "The ultrasound regions of this image have different pixel sizes; the first 2D "
            f"region's ({_fmt(row_mm)} x {_fmt(col_mm)} mm) is used for the whole image."
        )
    return np.array([row_mm, col_mm]), warn


#: Plausible pixel size (mm): 0.1 micrometre (microscopy) to 10 cm. Outside it the tag is
#: damaged (0 divides by zero; 1e6 mm asks resampling for absurd memory) and is ignored.
PLAUSIBLE_PIXEL_SPACING_MM = (1e-4, 100.0)


def _plausible(spacing: np.ndarray | None, tag: str, warn: list[str]) -> np.ndarray | None:
    """``spacing`` when every value lies in :data:`PLAUSIBLE_PIXEL_SPACING_MM`, else ``None``
    with a warning naming ``tag``."""
    if spacing is None:
        return None
    lo, hi = PLAUSIBLE_PIXEL_SPACING_MM
    if np.all((spacing >= lo) & (spacing <= hi)):
        return spacing
    shown = "\\".join(_fmt(float(v)) for v in spacing)
    warn.append(
        f"{tag} {shown} mm is not a plausible pixel size ({lo:g} to {hi:g} mm) and was "
        "ignored: 1 mm pixels assumed, so sizes are in pixels."
    )
    return None


def _header_from_dataset(path: str, ds: Dataset) -> _Header:
    meta = getattr(ds, "file_meta", None)
    ts = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    n_frames = _int(ds.get("NumberOfFrames"), 1) or 1
    iop = _floats(ds.get("ImageOrientationPatient"), 6)
    ipp = _floats(ds.get("ImagePositionPatient"), 3)
    spacing = _floats(ds.get("PixelSpacing"), 2)
    thickness = _float(ds.get("SliceThickness"))
    between = _float(ds.get("SpacingBetweenSlices"))
    frame_ipps: list[np.ndarray] | None = None
    spacing_source = "PixelSpacing" if spacing is not None else None
    spacing_warnings: list[str] = []
    if n_frames > 1:
        orient = _functional(ds, 0, "PlaneOrientationSequence")
        if iop is None and orient is not None:
            iop = _floats(orient.get("ImageOrientationPatient"), 6)
        measures = _functional(ds, 0, "PixelMeasuresSequence")
        if measures is not None:
            if spacing is None:
                spacing = _floats(measures.get("PixelSpacing"), 2)
                spacing_source = "PixelSpacing" if spacing is not None else None
            thickness = thickness or _float(measures.get("SliceThickness"))
            between = between or _float(measures.get("SpacingBetweenSlices"))
        positions = []
        for i in range(n_frames):
            item = _functional(ds, i, "PlanePositionSequence")
            pos = _floats(item.get("ImagePositionPatient"), 3) if item is not None else None
            if pos is None:
                positions = []
                break
            positions.append(pos)
        if positions:
            frame_ipps = positions
        elif ipp is not None and iop is not None and ds.get("GridFrameOffsetVector"):
            offsets = _floats(ds.get("GridFrameOffsetVector"), n_frames)
            if offsets is not None:
                normal = np.cross(iop[:3], iop[3:])
                frame_ipps = [ipp + o * normal for o in offsets]
    rejected: list[str] = []
    spacing = _plausible(spacing, "PixelSpacing", rejected)
    if spacing is None:
        imager = _plausible(_floats(ds.get("ImagerPixelSpacing"), 2), "ImagerPixelSpacing",
                            rejected)
        if imager is not None:
            spacing, spacing_source = imager, "ImagerPixelSpacing"
    if spacing is None:
        spacing, spacing_warnings = _ultrasound_spacing(ds)
        spacing = _plausible(spacing, "The ultrasound region's pixel size", rejected)
        spacing_source = "SequenceOfUltrasoundRegions" if spacing is not None else None
    if spacing is None and rejected:
        spacing_warnings = [*spacing_warnings, *rejected]
    return _Header(
        path=path,
        series_uid=_text(ds, "SeriesInstanceUID"),
        sop_class_uid=_text(ds, "SOPClassUID") or (
            str(meta.get("MediaStorageSOPClassUID", "")) if meta is not None else ""
        ),
        modality=_text(ds, "Modality").upper() or "unknown",
        rows=_int(ds.get("Rows")),
        cols=_int(ds.get("Columns")),
        n_frames=n_frames,
        iop=iop,
        ipp=ipp,
        frame_ipps=frame_ipps,
        pixel_spacing=(float(spacing[0]), float(spacing[1])) if spacing is not None else None,
        slice_thickness=thickness if thickness and thickness > 0 else None,
        spacing_between=abs(between) if between else None,
        instance=_int(ds.get("InstanceNumber"), 0) or 0,
        description=_text(ds, "SeriesDescription"),
        patient_id=_text(ds, "PatientID"),
        study_description=_text(ds, "StudyDescription"),
        series_number=_int(ds.get("SeriesNumber")),
        frame_of_reference=_text(ds, "FrameOfReferenceUID"),
        transfer_syntax_uid=ts,
        samples_per_pixel=_int(ds.get("SamplesPerPixel"), 1) or 1,
        echo=_text(ds, "EchoNumbers"),
        temporal=_text(ds, "TemporalPositionIdentifier"),
        photometric=_text(ds, "PhotometricInterpretation").upper() or "MONOCHROME2",
        bits_stored=_int(ds.get("BitsStored")),
        spacing_source=spacing_source,
        spacing_warnings=spacing_warnings,
        spacing_rejected=spacing is None and bool(rejected),
        magnification=_float(ds.get("EstimatedRadiographicMagnificationFactor")),
        cine=any(k in ds for k in _CINE_KEYWORDS),
        frame_time_ms=_float(ds.get("FrameTime")),
    )


def has_dicom_preamble(path: str | os.PathLike[str]) -> bool:
    """``True`` when the file has the DICOM magic ``DICM`` at byte 128."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


class _DamagedDicomFile(Exception):
    """A file that claims to be DICOM (preamble or ``.dcm`` name) whose header cannot be read."""


#: Elements larger than this (the pixel data) are not read while scanning headers.
_DEFER_SIZE = "64 KB"


def _read_header(path: Path, explicit: bool) -> _Header | None:
    """Parse one file's header; ``None`` when it is not DICOM (raise when ``explicit``).

    Not ``explicit`` (a file found in a folder): a file that claims to be DICOM (DICOM
    preamble, or a ``.dcm``/``.dicom``/``.ima`` name) but cannot be parsed raises
    :class:`_DamagedDicomFile`, so the caller can warn that a slice was left out.
    """
    preamble = has_dicom_preamble(path)
    claims = preamble or path.suffix.lower() in _EXTENSIONS_WITHOUT_PREAMBLE
    if not claims and not explicit:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(str(path), defer_size=_DEFER_SIZE, force=not preamble)
    except PermissionError as exc:
        if explicit:
            raise MedsegIOError(f"Permission denied: cannot read {path}") from exc
        return None
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on garbage input
        if explicit:
            raise MedsegIOError(
                f"{path.name} is not a readable DICOM file (damaged or another format)."
            ) from exc
        raise _DamagedDicomFile(path.name) from exc
    plausible = preamble or (
        "SOPClassUID" in ds and ("Modality" in ds or "Rows" in ds)
    )
    if not plausible:
        if explicit:
            raise MedsegIOError(f"{path.name} is not a DICOM file (no DICOM header found).")
        raise _DamagedDicomFile(path.name)
    if not explicit and "Rows" not in ds and not (
            "SeriesInstanceUID" in ds and "Modality" in ds):
        raise _DamagedDicomFile(path.name)  # a header that stops early: a cut-off file
    header = _header_from_dataset(str(path), ds)
    if "Rows" in ds:
        header.dataset = ds
    return header


def _list_files(root: Path, problems: list[str]) -> list[Path]:
    """All files under ``root`` (sorted, recursive); unreadable sub-folders are reported."""
    out: list[Path] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except PermissionError as exc:
            if folder == root:
                raise MedsegIOError(f"Permission denied: cannot list the folder {folder}") from exc
            problems.append(f"Sub-folder {folder} could not be read (permission denied); skipped.")
            continue
        except OSError as exc:
            if folder == root:
                raise MedsegIOError(f"Cannot list the folder {folder}: {exc}") from exc
            problems.append(f"Sub-folder {folder} could not be read; skipped.")
            continue
        subdirs = []
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    subdirs.append(Path(entry.path))
                elif entry.is_file():
                    out.append(Path(entry.path))
            except OSError:
                continue
        stack.extend(reversed(subdirs))
    return out


def _scan(path: str | os.PathLike[str]) -> tuple[list[_Header], list[str], list[str], Path]:
    """Headers of the DICOM files under ``path``, problems (to warn about), notes, root."""
    p = check_readable(path)
    problems: list[str] = []
    notes: list[str] = []
    if p.is_file() and p.name.upper() == "DICOMDIR":
        p = p.parent  # a DICOM CD/DVD index: read the folder it describes
    if p.is_file():
        header = _read_header(p, explicit=True)
        if header is None:  # pragma: no cover - explicit files raise instead
            raise MedsegIOError(f"{p.name} is not a DICOM file.")
        return [header], problems, notes, p
    files = _list_files(p, problems)
    headers: list[_Header] = []
    skipped = 0
    damaged: list[str] = []
    for f in files:
        if f.name.upper() == "DICOMDIR":
            continue
        try:
            h = _read_header(f, explicit=False)
        except _DamagedDicomFile:
            damaged.append(f.name)
            continue
        if h is None:
            skipped += 1
        elif h.sop_class_uid != _DICOMDIR_SOP_CLASS:
            headers.append(h)
    if damaged:
        listed = ", ".join(damaged[:5]) + (f" and {len(damaged) - 5} more" if len(damaged) > 5
                                           else "")
        problems.append(
            f"{len(damaged)} DICOM file(s) in {p} are damaged and were left out ({listed}): "
            "the series may be missing slices."
        )
    if skipped:
        notes.append(f"{skipped} file(s) in {p} are not DICOM (or are damaged) and were skipped.")
    return headers, problems, notes, p


def _fmt(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".")
