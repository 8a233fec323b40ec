"""DICOM series discovery and reading (pydicom): geometry from positions, never from file names.

How a folder becomes volumes
----------------------------
1. **Scan** (headers only, ``stop_before_pixels``): every file under the path (recursively) that
   starts with the DICOM preamble (``DICM`` at byte 128), plus ``.dcm``/``.ima`` files without a
   preamble that pydicom can parse. Other files are skipped (counted in a warning); ``DICOMDIR``
   is ignored.
2. **Group** by SeriesInstanceUID. A series whose slices differ in orientation, size or pixel
   spacing is split into parts (``key = "<uid>#1"``, ``"<uid>#2"`` ...); slices at the same position
   that differ in EchoNumbers / TemporalPositionIdentifier are split the same way. Files without
   a SeriesInstanceUID (anonymised data) are grouped per folder, FrameOfReferenceUID, series number
   and description under a made-up key ``"no-uid-<hash>"``. SEG, RTSTRUCT, RTPLAN, RTDOSE, SR, ...
   are listed with ``is_image=False`` and never read as images. **2D pictures** (projection
   and ultrasound modalities CR, DX, MG, XA, RF, US ..., and secondary captures, photographs
   or colour images without a patient position) are never stacked: each file is its own
   image (several X-ray views of one series become ``"<uid>#1"``, ``"<uid>#2"`` ...).
3. **Sort** slices by ImagePositionPatient projected on the slice normal
   (``cross(row direction, column direction)`` from ImageOrientationPatient), not by file name
   or InstanceNumber. Slice spacing is the median distance between neighbouring positions.
   A distance that is a multiple of it means missing slices, any other deviation means uneven
   spacing: both are recorded in ``metadata["warnings"]`` and raised as :class:`MedsegIOWarning`,
   with the positions and files around the gap; the slices are stacked as they are (no made-up
   slices are inserted). Slices at identical positions are dropped (with a warning).
4. **Gantry tilt** (slices not stacked along their normal, e.g. tilted CT): each slice is shifted
   in-plane (linear interpolation, ``scipy.ndimage.shift``) onto an orthogonal grid and a warning
   gives the angle. An *oblique* acquisition (tilted slices stacked along their own normal) is not
   tilt: it loads unchanged with a rotated affine.
5. **Pixels**: RescaleSlope/Intercept are applied (CT in HU). The result is the stored integer
   dtype when there is no rescale, int16 when an integer rescale fits, float32 otherwise.
   MONOCHROME1 images (X-ray: low values bright) are inverted first, exactly
   (``2**BitsStored - 1 - v``; ``-1 - v`` when signed), so high values are bright; the VOI
   window (WindowCenter/Width) is kept in the metadata, moved with the inversion. Colour
   images become ``Volume(..., rgb=True)`` with RGB channels last: pydicom 3 converts
   YBR_FULL / YBR_FULL_422 (and JPEG 2000 colour) to RGB while decoding, PALETTE COLOR goes
   through its lookup table (``pydicom.pixels.apply_color_lut``).
   Compressed transfer syntaxes need a decoder (``pip install "napari-medseg[dicom-codecs]"``);
   without one a :class:`MissingDecoderError` names that extra.

Geometry: DICOM patient coordinates are LPS; ``Volume.affine`` is RAS (x and y negated), array
order ``(Z, Y, X)`` = (slice, row, column). A series of one slice (or a single file) is a 2D
``(Y, X)`` volume; a multi-frame file is 3D.

Pictures and frames (``metadata["layout"]``): a 2D picture, or one slice without
ImagePositionPatient/ImageOrientationPatient, has no patient orientation
(``metadata["orientation_unknown"]``, a positive placeholder affine: napari shows it as stored).
A multi-frame file without frame positions that is not CT/MR/PET/NM (an ultrasound or XA
cine loop, a multi-frame capture) is ``(frames, Y, X)`` with a frame step of 1
and ``metadata["frame_axis"]`` ``"time"`` (cine) or ``"unknown"``: its frames are not slices.
Pixel spacing comes from PixelSpacing, else ImagerPixelSpacing (X-ray and mammography:
measured at the detector, said in ``metadata["spacing_note"]``), else the calibrated
ultrasound region (SequenceOfUltrasoundRegions, PhysicalDeltaX/Y in cm -> mm), else 1 mm with
``metadata["spacing_known"] = False`` and a warning; ``metadata["spacing_source"]`` names it.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from napari_medseg.io.errors import (
    DICOM_CODECS_EXTRA,
    MedsegIOError,
    MedsegIOWarning,
    MissingDecoderError,
    MultipleSeriesError,
    check_readable,
)
from napari_medseg.io.volume import Volume

#: Modality values of DICOM objects that carry no image to segment.
NON_IMAGE_MODALITIES = {
    "SEG": "DICOM Segmentation (SEG) object",
    "RTSTRUCT": "RT Structure Set (contours)",
    "RTPLAN": "RT Plan",
    "RTDOSE": "RT Dose grid",
    "RTRECORD": "RT Treatment Record",
    "RTIMAGE": "RT Image",
    "SR": "Structured Report",
    "PR": "Presentation State",
    "KO": "Key Object Selection",
    "REG": "Spatial Registration",
    "DOC": "encapsulated document",
    "RWV": "Real World Value Mapping",
    "FID": "Fiducials",
    "PLAN": "plan",
}

_DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
_EXTENSIONS_WITHOUT_PREAMBLE = {".dcm", ".dicom", ".ima"}
_TILT_LIMIT_DEG = 0.5
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

#: Modalities whose images are projections, photographs or ultrasound: 2D pictures with no
#: patient 3D orientation, never slices of a volume (each file is its own image).
PICTURE_MODALITIES = frozenset(
    {"CR", "DX", "MG", "IO", "PX", "RF", "XA", "US", "ES", "XC", "OP", "GM", "SM", "DG", "BDUS"}
)
#: Modalities whose multi-frame files without frame positions are still stacked as slices
#: (as before 2D support; enhanced CT/MR files carry frame positions anyway).
_VOLUME_MODALITIES = frozenset({"CT", "MR", "PT", "NM"})
#: Modalities whose frames are a time series (cine loops).
_CINE_MODALITIES = frozenset({"US", "XA", "RF", "ES", "XC", "IVUS"})
_CINE_KEYWORDS = ("FrameTime", "FrameTimeVector", "CineRate", "RecommendedDisplayFrameRate")
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
_VISIBLE_LIGHT = "1.2.840.10008.5.1.4.1.1.77.1"
_US_UNITS_CM = 3


@dataclass
class DicomSeriesInfo:
    """What a header scan knows about one series (or one part of a split series).

    Attributes
    ----------
    series_uid : str
        SeriesInstanceUID (a made-up ``"no-uid-..."`` when the files have none).
    description : str
        SeriesDescription (may be empty).
    modality : str
        Modality tag (``"CT"``, ``"MR"``, ``"SEG"`` ...), ``"unknown"`` when absent.
    n_slices : int
        Number of slices (frames for a multi-frame file) after removing duplicates.
    spacing : tuple of float or None
        mm per voxel in array order ``(slice, row, column)``, ``None`` for non-images.
    files : list of str
        The files of this series.
    patient_id, study_description : str
        PatientID and StudyDescription (may be empty).
    is_image : bool
        ``False`` for SEG, RTSTRUCT, RTPLAN, RTDOSE, SR, ... (never read as an image).
    transfer_syntax : str
        Transfer syntax name (e.g. ``"JPEG 2000 Image Compression (Lossless Only)"``).
    warnings : list of str
        Problems found in the headers (gaps, uneven spacing, tilt, missing decoder ...).
    key : str
        Unique identifier to pass as ``series_uid=`` (``series_uid`` itself unless split).
    series_number : int or None
        SeriesNumber.
    shape : tuple of int or None
        Array shape the volume will have: ``(Z, Y, X)`` or ``(Y, X)`` for one slice.
    affine : list of list of float or None
        4x4 Volume affine (array index -> RAS mm).
    transfer_syntax_uid : str
        Transfer syntax UID.
    decoder_available : bool or None
        Whether pydicom can decode the pixel data (``None``: unknown).
    kind : str
        Human-readable kind: ``"image"`` or e.g. ``"DICOM Segmentation (SEG) object"``.
    photometric_interpretation : str
        PhotometricInterpretation of the first file (``"MONOCHROME2"``, ``"RGB"``,
        ``"YBR_FULL_422"``, ``"PALETTE COLOR"`` ...).
    rgb : bool
        ``True`` for colour images: they are read as RGB, array ``shape + (3,)``.
    colour : str
        In words: ``"greyscale"``, ``"greyscale (MONOCHROME1, inverted on reading)"``,
        ``"RGB"``, ``"RGB (stored as YBR_FULL_422)"``, ``"RGB (palette colour)"``.
    layout : str
        ``"volume"`` (slices in patient space, or one oriented slice), ``"picture"`` (a 2D
        image without patient orientation: X-ray, mammogram, ultrasound, capture) or
        ``"frames"`` (a multi-frame file whose frames are not slices: cine loop).
    frame_axis : str or None
        For ``"frames"``: ``"time"`` (cine) or ``"unknown"``; ``None`` otherwise.
    spacing_known : bool or None
        ``False`` when no pixel spacing was found (1 mm assumed); ``None`` for non-images.
    spacing_source : str or None
        ``"PixelSpacing"``, ``"ImagerPixelSpacing"`` (at the detector) or
        ``"SequenceOfUltrasoundRegions"``.
    has_orientation : bool
        Whether the affine states the patient orientation (``False`` for pictures and frames).
    """

    series_uid: str
    description: str
    modality: str
    n_slices: int
    spacing: tuple[float, ...] | None
    files: list[str]
    patient_id: str = ""
    study_description: str = ""
    is_image: bool = True
    transfer_syntax: str = ""
    warnings: list[str] = field(default_factory=list)
    key: str = ""
    series_number: int | None = None
    shape: tuple[int, ...] | None = None
    affine: list[list[float]] | None = None
    transfer_syntax_uid: str = ""
    decoder_available: bool | None = None
    kind: str = "image"
    photometric_interpretation: str = ""
    rgb: bool = False
    colour: str = ""
    layout: str = "volume"
    frame_axis: str | None = None
    spacing_known: bool | None = None
    spacing_source: str | None = None
    has_orientation: bool = True

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (``files`` replaced by ``n_files`` and ``first_file``)."""
        d = asdict(self)
        files = d.pop("files")
        d["n_files"] = len(files)
        d["first_file"] = files[0] if files else None
        d["uid"] = d["series_uid"]
        d["slices"] = d["n_slices"]
        for k in ("spacing", "shape"):
            if d[k] is not None:
                d[k] = list(d[k])
        return d


# --------------------------------------------------------------------------------------------
# header scan
# --------------------------------------------------------------------------------------------


@dataclass
class _Slice:
    """One 2D image: a single-frame file or one frame of a multi-frame file."""

    path: str
    frame: int | None
    ipp: np.ndarray | None
    instance: int


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


# --------------------------------------------------------------------------------------------
# grouping and geometry
# --------------------------------------------------------------------------------------------


def _kind(h: _Header) -> str:
    if h.modality in NON_IMAGE_MODALITIES:
        return NON_IMAGE_MODALITIES[h.modality]
    if h.rows is None or h.cols is None:
        return f"DICOM object without pixel data ({h.modality})"
    return "image"


def _is_colour(h: _Header) -> bool:
    """Colour picture: several samples per pixel, or palette colour."""
    return h.samples_per_pixel > 1 or h.photometric == "PALETTE COLOR"


def _is_picture(h: _Header) -> bool:
    """A 2D picture (X-ray, mammogram, ultrasound, photograph, secondary capture ...).

    Projection and ultrasound modalities always are; secondary captures, visible-light
    photographs and colour images are when they carry no patient position/orientation.
    """
    if h.modality in PICTURE_MODALITIES:
        return True
    no_plane = h.iop is None or h.ipp is None
    sop = h.sop_class_uid
    is_capture = sop == _SECONDARY_CAPTURE or sop.startswith(
        (_SECONDARY_CAPTURE + ".", _VISIBLE_LIGHT)
    )
    return no_plane and (is_capture or _is_colour(h))


def _layout(series: _Series) -> str:
    """How the series becomes an array: ``"volume"``, ``"picture"`` (2D) or ``"frames"``.

    ``"frames"``: one multi-frame file without frame positions, not CT/MR/PET/NM (those
    keep being stacked as slices): a cine loop, or frames whose spacing is unknown.
    ``"picture"``: one single-frame 2D picture, or one slice without position/orientation.
    """
    if len(series.headers) != 1:
        return "volume"
    h = series.headers[0]
    if h.n_frames > 1:
        flat = h.frame_ipps is None and h.modality not in _VOLUME_MODALITIES
        return "frames" if flat else "volume"
    return "picture" if _is_picture(h) or h.iop is None or h.ipp is None else "volume"


def _geometry_key(h: _Header) -> tuple[Any, ...]:
    iop = tuple(np.round(h.iop, 3)) if h.iop is not None else None
    ps = tuple(np.round(h.pixel_spacing, 4)) if h.pixel_spacing is not None else None
    return (iop, h.rows, h.cols, ps, h.samples_per_pixel)


def _pseudo_uid(h: _Header) -> str:
    text = "|".join(
        [str(Path(h.path).parent), h.frame_of_reference, str(h.series_number), h.description,
         h.modality]
    )
    return "no-uid-" + hashlib.sha1(text.encode()).hexdigest()[:12]


def _split_duplicates(headers: list[_Header]) -> list[list[_Header]]:
    """Split a same-geometry group by echo / temporal position when positions repeat."""
    positions = [tuple(np.round(h.ipp, 3)) for h in headers if h.ipp is not None]
    if len(positions) == len(set(positions)):
        return [headers]
    for attr in ("echo", "temporal"):
        values = {getattr(h, attr) for h in headers}
        if len(values) > 1:
            groups: dict[str, list[_Header]] = defaultdict(list)
            for h in headers:
                groups[getattr(h, attr)].append(h)
            return [groups[v] for v in sorted(groups)]
    return [headers]


@dataclass
class _Series:
    uid: str
    key: str
    headers: list[_Header]
    kind: str
    warnings: list[str] = field(default_factory=list)


def _group(headers: list[_Header]) -> list[_Series]:
    by_uid: dict[str, list[_Header]] = defaultdict(list)
    no_uid: set[str] = set()
    for h in headers:
        uid = h.series_uid
        if not uid:
            uid = _pseudo_uid(h)
            no_uid.add(uid)
        by_uid[uid].append(h)
    series: list[_Series] = []
    for uid, members in by_uid.items():
        members.sort(key=lambda h: (h.instance, h.path))
        note = (
            ["The files have no SeriesInstanceUID (anonymised?); they were grouped by folder "
             "and series description."] if uid in no_uid else []
        )
        non_image = [h for h in members if _kind(h) != "image"]
        images = [h for h in members if _kind(h) == "image"]
        parts: list[tuple[list[_Header], str]] = []
        kinds: dict[str, list[_Header]] = defaultdict(list)
        for h in non_image:
            kinds[_kind(h)].append(h)
        for kind, hs in kinds.items():
            parts.append((hs, kind))
        by_geometry: dict[tuple[Any, ...], list[_Header]] = defaultdict(list)
        for h in images:
            if h.n_frames > 1:
                by_geometry[("multiframe", h.path)].append(h)
            elif _is_picture(h):
                by_geometry[("picture", h.path)].append(h)  # each picture stands alone
            else:
                by_geometry[_geometry_key(h)].append(h)
        for hs in by_geometry.values():
            for sub in _split_duplicates(hs):
                parts.append((sub, "image"))
        n_pictures = sum(1 for hs, kind in parts if kind == "image" and _is_picture(hs[0]))
        for i, (hs, kind) in enumerate(parts):
            key = uid if len(parts) == 1 else f"{uid}#{i + 1}"
            extra = list(note)
            # several X-ray views or ultrasound images in one series are nothing odd
            if len(parts) > 1 and kind == "image" and n_pictures < len(parts):
                extra.append(
                    f"Series {uid} mixes slices of different orientation, size, echo or time "
                    f"point; this is part {i + 1} of {len(parts)}."
                )
            series.append(_Series(uid, key, hs, kind, extra))
    return series


@dataclass
class _Geometry:
    slices: list[_Slice]
    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    affine: np.ndarray
    warnings: list[str]
    shifts: list[tuple[float, float]] | None = None  # per-slice (row, col) pixel shift (tilt)
    tilt_deg: float = 0.0
    layout: str = "volume"  # "volume", "picture" (2D, no orientation) or "frames"
    oriented: bool = True  # the affine states the patient orientation
    frame_axis: str | None = None  # "frames" layout: "time" (cine) or "unknown"


def _slices_of(series: _Series) -> list[_Slice]:
    out: list[_Slice] = []
    for h in series.headers:
        if h.n_frames > 1:
            ipps = h.frame_ipps
            for f in range(h.n_frames):
                out.append(_Slice(h.path, f, ipps[f] if ipps else None, f))
        else:
            out.append(_Slice(h.path, None, h.ipp, h.instance))
    return out


def _fmt(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".")


_NO_SPACING = (
    "PixelSpacing is missing (and no ImagerPixelSpacing or calibrated ultrasound region); "
    "1 mm pixels assumed, so sizes are in pixels."
)


def _flat_geometry(series: _Series, layout: str) -> _Geometry:
    """Geometry of a 2D picture or a multi-frame file without frame positions.

    No patient orientation: a positive placeholder affine (spacing on the diagonal, origin 0),
    so napari shows the image as stored (first row at the top). Frames are 1 apart.
    """
    h0 = series.headers[0]
    warn = list(h0.spacing_warnings)
    if h0.pixel_spacing is None and not h0.spacing_rejected:
        warn.append(_NO_SPACING)
    row_spacing, col_spacing = h0.pixel_spacing or (1.0, 1.0)
    slices = _slices_of(series)
    rows, cols = h0.rows or 0, h0.cols or 0
    frame_axis = None
    if layout == "picture":
        slices = slices[:1]
        shape: tuple[int, ...] = (rows, cols)
        spacing: tuple[float, ...] = (row_spacing, col_spacing)
    else:
        slices.sort(key=lambda s: s.frame or 0)
        shape = (len(slices), rows, cols)
        spacing = (1.0, row_spacing, col_spacing)
        frame_axis = "time" if h0.cine or h0.modality in _CINE_MODALITIES else "unknown"
    affine = np.diag([*((1.0,) * (3 - len(spacing))), *spacing, 1.0])
    return _Geometry(slices, shape, spacing, affine, warn, layout=layout, oriented=False,
                     frame_axis=frame_axis)


def _geometry(series: _Series) -> _Geometry:
    layout = _layout(series)
    if layout != "volume":
        return _flat_geometry(series, layout)
    h0 = series.headers[0]
    warn: list[str] = list(h0.spacing_warnings)
    slices = _slices_of(series)
    row_spacing, col_spacing = h0.pixel_spacing or (1.0, 1.0)
    if h0.pixel_spacing is None and not h0.spacing_rejected:
        warn.append(_NO_SPACING)
    fallback_step = h0.spacing_between or h0.slice_thickness or 1.0
    has_geometry = h0.iop is not None and all(s.ipp is not None for s in slices)
    if has_geometry:
        row_dir, col_dir = h0.iop[:3], h0.iop[3:]
        normal = np.cross(row_dir, col_dir)
        norm = np.linalg.norm(normal)
        has_geometry = norm > 1e-6
    if not has_geometry:
        if len(slices) > 1:
            warn.append(
                "The files carry no ImagePositionPatient/ImageOrientationPatient: slices are "
                f"ordered by InstanceNumber and {_fmt(fallback_step)} mm apart is assumed."
            )
        slices.sort(key=lambda s: (s.instance, s.path, s.frame or 0))
        row_dir, col_dir = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
        normal = np.array([0, 0, 1.0])
        origin = h0.ipp if h0.ipp is not None else np.zeros(3)
        positions = np.arange(len(slices)) * fallback_step
    else:
        normal = normal / norm
        positions = np.array([float(np.dot(s.ipp, normal)) for s in slices])
        order = sorted(range(len(slices)), key=lambda i: (positions[i], slices[i].instance))
        slices = [slices[i] for i in order]
        positions = positions[order]
        keep = [0]
        dropped = 0
        for i in range(1, len(slices)):
            if abs(positions[i] - positions[keep[-1]]) < 1e-3:
                dropped += 1
            else:
                keep.append(i)
        if dropped:
            warn.append(
                f"{dropped} slice(s) share their position with another slice and were left out "
                "(duplicates, or several echoes/time points in one series)."
            )
            slices = [slices[i] for i in keep]
            positions = positions[keep]
        origin = slices[0].ipp

    n = len(slices)
    shifts: list[tuple[float, float]] | None = None
    tilt_deg = 0.0
    if n > 1:
        diffs = np.diff(positions)
        # positions come as decimal strings: drop float noise below a nanometre
        step = round(float(np.median(diffs)), 6)
        tol = max(1e-3, 0.02 * step)
        for i, d in enumerate(diffs):
            if abs(d - step) <= tol:
                continue
            k = round(d / step)
            where = (
                f"between slice {i + 1} (at {_fmt(positions[i])} mm, {Path(slices[i].path).name}) "
                f"and slice {i + 2} (at {_fmt(positions[i + 1])} mm, "
                f"{Path(slices[i + 1].path).name})"
            )
            if k >= 2 and abs(d - k * step) <= tol * k:
                warn.append(
                    f"{k - 1} slice(s) missing {where}: gap of {_fmt(d)} mm where slices are "
                    f"{_fmt(step)} mm apart. Slices were stacked without the missing ones, "
                    "so distances across the gap are wrong."
                )
            else:
                warn.append(
                    f"Uneven slice spacing {where}: {_fmt(d)} mm instead of {_fmt(step)} mm."
                )
        if has_geometry:
            offsets = np.array([s.ipp - origin for s in slices])
            along = offsets @ normal
            in_plane = offsets - np.outer(along, normal)
            lateral = float(np.linalg.norm(in_plane[-1]))
            tilt_deg = float(np.degrees(np.arctan2(lateral, abs(along[-1]))))
            if tilt_deg > _TILT_LIMIT_DEG:
                shifts = [
                    (float(v @ col_dir) / row_spacing, float(v @ row_dir) / col_spacing)
                    for v in in_plane
                ]
                warn.append(
                    f"Gantry tilt of {tilt_deg:.1f} degrees: the slices are not stacked "
                    "perpendicular to their plane, so each slice was shifted in-plane "
                    "(resampled) onto an orthogonal grid."
                )
            else:
                tilt_deg = 0.0
    else:
        step = fallback_step

    affine_lps = np.eye(4)
    affine_lps[:3, 0] = normal * step
    affine_lps[:3, 1] = col_dir * row_spacing
    affine_lps[:3, 2] = row_dir * col_spacing
    affine_lps[:3, 3] = origin
    affine = _LPS_TO_RAS @ affine_lps
    rows, cols = h0.rows or 0, h0.cols or 0
    if n == 1:
        shape: tuple[int, ...] = (rows, cols)
        spacing: tuple[float, ...] = (row_spacing, col_spacing)
    else:
        shape = (n, rows, cols)
        spacing = (step, row_spacing, col_spacing)
    return _Geometry(slices, shape, spacing, affine, warn, shifts, tilt_deg)


def _decoder_available(ts_uid: str) -> bool | None:
    """Whether pydicom can decode pixel data of this transfer syntax (``None``: cannot tell)."""
    if not ts_uid:
        return None
    try:
        from pydicom.pixels import get_decoder
    except ImportError:  # pydicom < 3
        return None
    try:
        return bool(get_decoder(ts_uid).is_available)
    except (NotImplementedError, ValueError):
        return False


def _ts_name(ts_uid: str) -> str:
    if not ts_uid:
        return ""
    return pydicom.uid.UID(ts_uid).name


def _missing_decoder_message(description: str, ts_uid: str) -> str:
    return (
        f"The DICOM images of '{description}' are compressed ({_ts_name(ts_uid)}) and no "
        f"decoder for that format is installed: install the optional decoders with "
        f"pip install \"{DICOM_CODECS_EXTRA}\"."
    )


def _colour_words(h: _Header) -> str:
    if h.photometric == "PALETTE COLOR":
        return "RGB (palette colour)"
    if h.samples_per_pixel > 1:
        return "RGB" if h.photometric == "RGB" else f"RGB (stored as {h.photometric})"
    if h.photometric == "MONOCHROME1":
        return "greyscale (MONOCHROME1, inverted on reading)"
    return "greyscale"


def _unsupported_colour_message(h: _Header) -> str:
    return (
        f"{Path(h.path).name} stores {h.samples_per_pixel} samples per pixel "
        f"({h.photometric or 'unknown colour model'}); only greyscale and RGB images can be "
        "opened."
    )


def _info(series: _Series, geometry: _Geometry | None) -> DicomSeriesInfo:
    h0 = series.headers[0]
    files = sorted({h.path for h in series.headers})
    is_image = series.kind == "image"
    warn = list(series.warnings)
    decoder = _decoder_available(h0.transfer_syntax_uid) if is_image else None
    if geometry is not None:
        warn.extend(geometry.warnings)
    if is_image and _is_colour(h0) and h0.samples_per_pixel not in (1, 3):
        warn.append(_unsupported_colour_message(h0))
    if decoder is False:
        warn.append(_missing_decoder_message(h0.description or series.key, h0.transfer_syntax_uid))
    if not is_image:
        warn.append(f"Not an image: {series.kind}; it cannot be opened as a volume.")
    return DicomSeriesInfo(
        series_uid=series.uid,
        description=h0.description,
        modality=h0.modality,
        n_slices=(
            len(geometry.slices) if geometry is not None
            else sum(h.n_frames for h in series.headers)
        ),
        spacing=tuple(float(s) for s in geometry.spacing) if geometry is not None else None,
        files=files,
        patient_id=h0.patient_id,
        study_description=h0.study_description,
        is_image=is_image,
        transfer_syntax=_ts_name(h0.transfer_syntax_uid),
        warnings=warn,
        key=series.key,
        series_number=h0.series_number,
        shape=tuple(int(s) for s in geometry.shape) if geometry is not None else None,
        affine=geometry.affine.tolist() if geometry is not None else None,
        transfer_syntax_uid=h0.transfer_syntax_uid,
        decoder_available=decoder,
        kind=series.kind,
        photometric_interpretation=h0.photometric,
        rgb=is_image and _is_colour(h0),
        colour=_colour_words(h0) if is_image else "",
        layout=geometry.layout if geometry is not None else "volume",
        frame_axis=geometry.frame_axis if geometry is not None else None,
        spacing_known=(h0.pixel_spacing is not None) if is_image else None,
        spacing_source=h0.spacing_source if is_image else None,
        has_orientation=bool(geometry.oriented) if geometry is not None else False,
    )


_Found = list[tuple[DicomSeriesInfo, _Series, _Geometry | None]]


def _damaged_files_as_io_errors(read):
    """Turn the errors pydicom and numpy raise on damaged files (unknown VRs, bad lengths,
    impossible sizes) into one-line :class:`MedsegIOError`; our own errors pass unchanged."""
    import functools

    @functools.wraps(read)
    def wrapper(path, *args, **kwargs):
        try:
            return read(path, *args, **kwargs)
        except MedsegIOError:
            raise
        except MemoryError as exc:
            raise MedsegIOError(f"{Path(path).name} is too large for the memory of this "
                                "computer (or its header is damaged).") from exc
        except (NotImplementedError, KeyError, AttributeError, TypeError, IndexError,
                ValueError, OverflowError, ZeroDivisionError, EOFError, OSError,
                RuntimeError) as exc:
            raise MedsegIOError(
                f"Cannot read {Path(path).name}: the DICOM data is damaged or unsupported "
                f"({type(exc).__name__}: {exc})."
            ) from exc

    return wrapper


def _discover(path: str | os.PathLike[str]) -> tuple[_Found, list[str], list[str], Path]:
    """Scan, group and compute geometry: ``(found, problems, notes, root)``."""
    headers, problems, notes, root = _scan(path)
    found = []
    for s in _group(headers):
        geometry = _geometry(s) if s.kind == "image" else None
        found.append((_info(s, geometry), s, geometry))
    found.sort(
        key=lambda t: (
            not t[0].is_image,
            t[0].series_number if t[0].series_number is not None else 1 << 30,
            t[0].description,
            t[0].key,
        )
    )
    return found, problems, notes, root


@_damaged_files_as_io_errors
def list_dicom_series(path: str | os.PathLike[str]) -> list[DicomSeriesInfo]:
    """Find the DICOM series in a file, a folder or a folder tree, reading headers only.

    Parameters
    ----------
    path : path-like
        A DICOM file, or a folder searched recursively (non-DICOM files are skipped).

    Returns
    -------
    list of DicomSeriesInfo
        Image series first (by SeriesNumber, then description), then non-image objects
        (SEG, RTSTRUCT, ...). Empty when the folder holds no DICOM file.

    Raises
    ------
    MedsegIOError
        Missing path, permission denied, or an explicitly given file that is not DICOM.
    """
    found, problems, _notes, _root = _discover(path)
    for msg in problems:
        warnings.warn(msg, MedsegIOWarning, stacklevel=2)
    return [info for info, _, _ in found]


# --------------------------------------------------------------------------------------------
# pixels
# --------------------------------------------------------------------------------------------


def _rescale(ds: Dataset, frame: int | None) -> tuple[float, float]:
    slope, intercept = _float(ds.get("RescaleSlope")), _float(ds.get("RescaleIntercept"))
    if slope is None and intercept is None:
        item = _functional(ds, frame, "PixelValueTransformationSequence")
        if item is not None:
            slope, intercept = _float(item.get("RescaleSlope")), _float(item.get("RescaleIntercept"))
    return (slope if slope else 1.0), (intercept or 0.0)


def _decode(path: str, description: str, ds: Dataset | None = None
            ) -> tuple[Dataset, np.ndarray]:
    """The file's dataset and decoded pixels; ``ds``: the file as the scan parsed it (pixel
    data deferred), else it is read here. The pixel data element is dropped from the dataset
    afterwards, so that only the returned array holds the pixels."""
    if ds is None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path, force=not has_dicom_preamble(path))
        except PermissionError as exc:
            raise MedsegIOError(f"Permission denied: cannot read {path}") from exc
        except Exception as exc:  # noqa: BLE001
            raise MedsegIOError(f"{Path(path).name} is damaged and cannot be read ({exc}).") \
                from exc
    ts = str(ds.file_meta.get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else ""
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise MedsegIOError(f"{Path(path).name} has no pixel data (it is not an image).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # uncompressed data: a read-only view of the file's bytes, not a copy (the planes
            # are stacked into a new array anyway)
            ds.pixel_array_options(view_only=True)
            pixels = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - decoders raise RuntimeError, ValueError, ...
        uid = pydicom.uid.UID(ts) if ts else None
        if uid is not None and uid.is_compressed and _decoder_available(ts) is not True:
            raise MissingDecoderError(_missing_decoder_message(description, ts)) from exc
        hint = (
            f" Installing the optional decoders (pip install \"{DICOM_CODECS_EXTRA}\") may help."
            if uid is not None and uid.is_compressed else ""
        )
        raise MedsegIOError(
            f"The pixel data of {Path(path).name} could not be decoded ({exc}).{hint}"
        ) from exc
    for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
        if keyword in ds:
            delattr(ds, keyword)  # also resets pydicom's cached array
    return ds, np.asarray(pixels)


def _invert_monochrome1(plane: np.ndarray, bits_stored: int | None) -> tuple[np.ndarray, float]:
    """MONOCHROME1 (low values bright) -> MONOCHROME2, exactly, in the stored dtype.

    The stored range is reversed: ``(2**BitsStored - 1) - v`` for unsigned data, ``-1 - v``
    for signed data (both map the range onto itself). Returns ``(plane, lo + hi)``, the sum
    of the range ends in stored units, which maps a window centre onto the inverted values.
    """
    if plane.dtype.kind == "i":
        return np.invert(plane), -1.0
    if plane.dtype.kind == "u":
        width = plane.dtype.itemsize * 8
        bits = bits_stored if bits_stored and 0 < bits_stored <= width else width
        top = (1 << bits) - 1
        return (plane.dtype.type(top) - np.minimum(plane, top)).astype(plane.dtype), float(top)
    lo, hi = float(np.min(plane)), float(np.max(plane))
    return (lo + hi) - plane, lo + hi


def _first_number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or (hasattr(value, "__len__") and not isinstance(value, str)):
        value = value[0] if len(value) else None
    return _float(value)


def _display_window(
    ds: Dataset, slope: float, intercept: float, inverted_sum: float | None
) -> dict[str, Any]:
    """The file's first VOI window (centre/width) in the units of the array we return."""
    center = _first_number(ds.get("WindowCenter"))
    width = _first_number(ds.get("WindowWidth"))
    if center is None or width is None or width <= 0:
        return {}
    if inverted_sum is not None:  # the window moves with the inverted values
        center = slope * inverted_sum + 2.0 * intercept - center
    out: dict[str, Any] = {"window_center": float(center), "window_width": float(width)}
    function = _text(ds, "VOILUTFunction")
    if function:
        out["voi_lut_function"] = function
    return out


def _plane_of(pixels: np.ndarray, frame: int | None, colour: bool) -> np.ndarray:
    """One frame of a decoded pixel array (frames first only when the file has several)."""
    frame_ndim = 3 if colour else 2
    if frame is not None and pixels.ndim == frame_ndim + 1:
        return pixels[frame]
    return pixels if pixels.ndim == frame_ndim else pixels[0]


def _palette_to_rgb(planes: list[np.ndarray], ds_of: list[Dataset]) -> np.ndarray:
    """PALETTE COLOR indices -> RGB with pydicom's ``apply_color_lut``.

    A 16-bit palette holding 8-bit colours (every entry ``c * 256`` or every entry
    ``c * 257``) gives uint8 ``c``, exactly; any other palette keeps its own dtype.
    """
    from pydicom.pixels import apply_color_lut

    rgb = np.stack([apply_color_lut(plane, ds) for plane, ds in zip(planes, ds_of, strict=True)])
    if rgb.dtype == np.uint16:
        for step in (256, 257):
            if not np.any(rgb % step):
                return (rgb // step).astype(np.uint8)
    return rgb


def _read_pixels(
    info: DicomSeriesInfo, series: _Series, geometry: _Geometry
) -> tuple[np.ndarray, bool, dict[str, Any]]:
    """Stack the slices in geometry order; returns ``(array, rescaled, display)``.

    Greyscale: rescaled (RescaleSlope/Intercept), MONOCHROME1 inverted first. Colour: RGB
    channels last (pydicom 3 converts YBR_FULL / YBR_FULL_422 / JPEG 2000 colour to RGB when
    decoding; palette colour goes through its lookup table). ``display`` holds the VOI window
    and notes for the metadata.
    """
    h0 = series.headers[0]
    label = info.description or Path(info.files[0]).parent.name
    colour = _is_colour(h0)
    palette = h0.photometric == "PALETTE COLOR"
    if colour and h0.samples_per_pixel not in (1, 3):
        raise MedsegIOError(_unsupported_colour_message(h0))
    if info.decoder_available is False:
        raise MissingDecoderError(_missing_decoder_message(label, h0.transfer_syntax_uid))
    cache: dict[str, tuple[Dataset, np.ndarray]] = {}
    parsed = {h.path: h.dataset for h in series.headers if h.dataset is not None}
    planes: list[np.ndarray] = []
    datasets: list[Dataset] = []
    scales: list[tuple[float, float]] = []
    inverted_sum: float | None = None
    stacked: np.ndarray | None = None  # greyscale planes go straight into the volume
    for i, s in enumerate(geometry.slices):
        if s.path not in cache:
            cache = {s.path: _decode(s.path, label, parsed.get(s.path))}
        ds, pixels = cache[s.path]
        plane = _plane_of(pixels, s.frame, colour and not palette)
        expected = (h0.rows, h0.cols) + ((3,) if colour and not palette else ())
        if plane.shape != expected:
            raise MedsegIOError(
                f"{Path(s.path).name} has an image of {plane.shape[0]}x{plane.shape[1]} pixels"
                f"{'' if plane.ndim == len(expected) else ' with another number of colours'}, "
                f"but its header says {h0.rows}x{h0.cols}."
            )
        if not colour and h0.photometric == "MONOCHROME1":
            plane, inverted_sum = _invert_monochrome1(plane, h0.bits_stored)
        if colour:
            planes.append(plane)
        else:
            if stacked is None:
                stacked = np.empty((len(geometry.slices), *plane.shape), plane.dtype)
            elif plane.dtype != stacked.dtype:  # slices stored differently: widen
                stacked = stacked.astype(np.result_type(stacked.dtype, plane.dtype))
            stacked[i] = plane
        datasets.append(ds)
        scales.append(_rescale(ds, s.frame))
    display: dict[str, Any] = {}
    if colour:
        array = _palette_to_rgb(planes, datasets) if palette else np.stack(planes)
        rescaled = False
    else:
        array, rescaled = _rescaled(stacked, scales)
        display = _display_window(datasets[0], *scales[0], inverted_sum)
        if inverted_sum is not None:
            display["inverted"] = True
    if geometry.shifts is not None and not colour:
        from scipy import ndimage

        fill = float(array.min())
        array = np.stack(
            [
                ndimage.shift(plane.astype(np.float32), shift, order=1, mode="constant", cval=fill)
                for plane, shift in zip(array, geometry.shifts, strict=True)
            ]
        )
    if len(geometry.shape) == 2:
        array = array[0]
    return np.ascontiguousarray(array), rescaled, display


def _rescaled(
    stacked: np.ndarray, scales: list[tuple[float, float]]
) -> tuple[np.ndarray, bool]:
    """Apply per-slice RescaleSlope/Intercept: stored dtype, int16/int32, or float32.

    Slice by slice, so that no whole-volume temporary is made (a 512x512x400 CT in int64
    would be 840 MB); ``stacked`` is our own freshly stacked array and is reused when the
    result has the same item size (uint16 stored values -> int16 Hounsfield units).
    """
    slopes = np.array([a for a, _ in scales])
    intercepts = np.array([b for _, b in scales])
    rescaled = bool(np.any(slopes != 1) or np.any(intercepts != 0))
    if not rescaled:
        return stacked, False
    axes = tuple(range(1, stacked.ndim))
    if np.all(slopes == 1) and np.all(intercepts == np.round(intercepts)):
        shifts = intercepts.astype(np.int64)
        lo = int((stacked.min(axis=axes).astype(np.int64) + shifts).min())
        hi = int((stacked.max(axis=axes).astype(np.int64) + shifts).max())
        dtype = np.dtype(np.int16 if -32768 <= lo and hi <= 32767 else np.int32)
        wide = np.int64 if stacked.dtype.itemsize >= 4 or dtype.itemsize >= 4 else np.int32
        if dtype.itemsize == stacked.dtype.itemsize and stacked.flags.writeable \
                and stacked.flags.c_contiguous:
            out = stacked.view(dtype)  # each slice is read before it is overwritten
        else:
            out = np.empty(stacked.shape, dtype)
        for k, shift in enumerate(shifts):
            out[k] = (stacked[k].astype(wide) + int(shift)).astype(dtype)
        return out, True
    out = np.empty(stacked.shape, np.float32)
    for k, (slope, intercept) in enumerate(zip(slopes, intercepts, strict=True)):
        out[k] = (stacked[k].astype(np.float64) * slope + intercept).astype(np.float32)
    return out, True


def _geometry_metadata(info: DicomSeriesInfo, series: _Series, geometry: _Geometry) -> dict[str, Any]:
    """Metadata saying how far the geometry can be trusted (spacing, orientation, frames)."""
    h0 = series.headers[0]
    meta: dict[str, Any] = {
        "layout": geometry.layout,
        "spacing_known": h0.pixel_spacing is not None,
        "spacing_source": h0.spacing_source,
    }
    if h0.spacing_source == "ImagerPixelSpacing":
        meta["spacing_note"] = (
            "Pixel spacing is ImagerPixelSpacing, measured at the detector: objects in the "
            "patient are smaller by the geometric magnification"
            + (f" (estimated factor {_fmt(h0.magnification)})." if h0.magnification else ".")
        )
        if h0.magnification:
            meta["magnification_factor"] = h0.magnification
    elif h0.spacing_source == "SequenceOfUltrasoundRegions":
        meta["spacing_note"] = "Pixel spacing from the calibrated ultrasound region (cm -> mm)."
    if not geometry.oriented:
        meta["orientation_unknown"] = True
    if geometry.layout == "frames":
        meta["frame_axis"] = geometry.frame_axis
        meta["frame_note"] = (
            "Axis 0 holds the frames of a cine loop (time), not slices: its spacing of 1 is a "
            "frame index, not millimetres." if geometry.frame_axis == "time" else
            "Axis 0 holds frames that are not known to be slices: its spacing of 1 is a frame "
            "index, not millimetres."
        )
        if h0.frame_time_ms:
            meta["frame_time_ms"] = h0.frame_time_ms
    return meta


def _volume(root: Path, info: DicomSeriesInfo, series: _Series, geometry: _Geometry) -> Volume:
    array, rescaled, display = _read_pixels(info, series, geometry)
    for msg in info.warnings:
        warnings.warn(msg, MedsegIOWarning, stacklevel=3)
    folder = Path(info.files[0]).parent.name if info.files else root.name
    if geometry.layout == "volume":
        name = info.description or folder or info.modality
    else:  # pictures: several in one folder or series, so the file tells them apart
        stem = Path(info.files[0]).stem if info.files else ""
        name = info.description or stem or folder or info.modality
    metadata: dict[str, Any] = {
        "path": str(root),
        "format": "dicom",
        "series_uid": info.series_uid,
        "series_key": info.key,
        "series_description": info.description,
        "series_number": info.series_number,
        "patient_id": info.patient_id,
        "study_description": info.study_description,
        "modality": info.modality,
        "n_files": len(info.files),
        "first_file": info.files[0] if info.files else None,
        "transfer_syntax": info.transfer_syntax,
        "rescaled": rescaled,
        "gantry_tilt_deg": geometry.tilt_deg,
        "is_labels": False,
        "warnings": list(info.warnings),
        "photometric_interpretation": info.photometric_interpretation,
        "colour": info.colour,
        "inverted": bool(display.pop("inverted", False)),
    }
    if metadata["inverted"]:
        metadata["inversion_note"] = (
            "MONOCHROME1 image (low values shown bright): pixel values were inverted on "
            "reading so that high values are bright, as in MONOCHROME2."
        )
    metadata.update(display)
    metadata.update(_geometry_metadata(info, series, geometry))
    return Volume(array, geometry.spacing, geometry.affine, info.modality, metadata, name,
                  rgb=info.rgb)


def _extent(info: DicomSeriesInfo) -> str:
    """``"40 slices"``, ``"2D image"``, ``"30 frames"`` (with colour when it is colour)."""
    if info.layout == "picture":
        text = "2D image"
    elif info.layout == "frames":
        text = f"{info.n_slices} frames"
    else:
        text = f"{info.n_slices} slices"
    return f"{text}, colour" if info.rgb else text


def _select(
    found: list[tuple[DicomSeriesInfo, _Series, _Geometry | None]],
    root: Path,
    series_uid: str | None,
) -> tuple[DicomSeriesInfo, _Series, _Geometry]:
    images = [t for t in found if t[0].is_image]
    if series_uid is not None:
        matches = [t for t in found if t[0].key == series_uid] or [
            t for t in found if t[0].series_uid == series_uid
        ]
        if not matches:
            known = ", ".join(f"{t[0].key} ({t[0].description or t[0].modality})" for t in images)
            raise MedsegIOError(
                f"No DICOM series with UID {series_uid} in {root}. Image series found: "
                f"{known or 'none'}."
            )
        image_matches = [t for t in matches if t[0].is_image]
        if not image_matches:
            raise MedsegIOError(
                f"Series {series_uid} in {root} is a {matches[0][0].kind}, not an image; "
                "it cannot be opened as a volume."
            )
        if len(image_matches) > 1:
            raise MultipleSeriesError(
                f"Series {series_uid} was split into {len(image_matches)} parts (different "
                "orientation, size, echo or time point); choose one by its key.",
                [t[0] for t in image_matches],
            )
        return image_matches[0]  # type: ignore[return-value]
    if not images:
        others = sorted({t[0].kind for t in found})
        if others:
            raise MedsegIOError(
                f"{root} contains no DICOM image, only: {', '.join(others)}. "
                "Open the image series it refers to instead."
            )
        raise MedsegIOError(f"No DICOM images found in {root}.")
    if len(images) > 1:
        listing = "; ".join(f"{t[0].description or t[0].modality} ({_extent(t[0])})" for t in images)
        raise MultipleSeriesError(
            f"{root} contains {len(images)} image series ({listing}); choose one.",
            [t[0] for t in images],
        )
    return images[0]  # type: ignore[return-value]


@_damaged_files_as_io_errors
def read_dicom_series(path: str | os.PathLike[str], series_uid: str | None = None) -> Volume:
    """Read one DICOM image series into a :class:`Volume` (HU for CT).

    Parameters
    ----------
    path : path-like
        A DICOM file, or a folder (searched recursively).
    series_uid : str, optional
        ``DicomSeriesInfo.key`` or ``series_uid`` of the series to read; required when the
        folder holds several image series.

    Returns
    -------
    Volume
        ``(Z, Y, X)`` array (``(Y, X)`` for one slice), spacing (mm, array order), RAS affine,
        ``modality`` from the Modality tag, ``metadata`` with ``path``, ``format="dicom"``,
        ``series_uid``, ``series_key``, ``series_description``, ``warnings`` (list of str) ...

    Raises
    ------
    MultipleSeriesError
        Several image series and no ``series_uid`` (``.series`` lists them).
    MissingDecoderError
        Compressed pixel data without an installed decoder (message names the extra).
    MedsegIOError
        Anything else that makes the series unreadable.
    """
    found, problems, _notes, root = _discover(path)
    for msg in problems:
        warnings.warn(msg, MedsegIOWarning, stacklevel=2)
    info, series, geometry = _select(found, root, series_uid)
    volume = _volume(root, info, series, geometry)
    volume.metadata["warnings"] = [*problems, *volume.metadata["warnings"]]
    return volume


@_damaged_files_as_io_errors
def read_dicom(path: str | os.PathLike[str]) -> list[Volume]:
    """Read every image series under ``path`` (non-image objects are skipped).

    Raises
    ------
    MedsegIOError
        When there is no image series at all, or one of them cannot be read.
    """
    found, problems, _notes, root = _discover(path)
    for msg in problems:
        warnings.warn(msg, MedsegIOWarning, stacklevel=2)
    images = [t for t in found if t[0].is_image]
    if not images:
        _select(found, root, None)  # raises the right message
    return [_volume(root, info, s, g) for info, s, g in images if g is not None]


def is_dicom_path(path: str | os.PathLike[str]) -> bool:
    """``True`` for a ``.dcm``/``.dicom``/``.ima`` file or any file starting with the DICOM preamble."""
    p = Path(path)
    return p.suffix.lower() in _EXTENSIONS_WITHOUT_PREAMBLE or (p.is_file() and has_dicom_preamble(p))


def folder_has_dicom(path: str | os.PathLike[str], max_files: int = 200) -> bool:
    """Quick check for the napari reader: does the folder tree hold a DICOM file?

    Looks at up to ``max_files`` files (preamble or ``.dcm`` extension), never parses them.
    """
    p = Path(path)
    if not p.is_dir():
        return False
    seen = 0
    for _dirpath, _dirs, files in os.walk(p):
        for name in sorted(files):
            f = Path(_dirpath) / name
            if f.suffix.lower() in _EXTENSIONS_WITHOUT_PREAMBLE or has_dicom_preamble(f):
                return True
            seen += 1
            if seen >= max_files:
                return False
    return False
