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
   are listed with ``is_image=False`` and never read as images.
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
   Compressed transfer syntaxes need a decoder (``pip install "napari-medseg[dicom-codecs]"``);
   without one a :class:`MissingDecoderError` names that extra.

Geometry: DICOM patient coordinates are LPS; ``Volume.affine`` is RAS (x and y negated), array
order ``(Z, Y, X)`` = (slice, row, column). A series of one slice (or a single file) is a 2D
``(Y, X)`` volume; a multi-frame file is 3D.
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
    if n_frames > 1:
        orient = _functional(ds, 0, "PlaneOrientationSequence")
        if iop is None and orient is not None:
            iop = _floats(orient.get("ImageOrientationPatient"), 6)
        measures = _functional(ds, 0, "PixelMeasuresSequence")
        if measures is not None:
            spacing = spacing if spacing is not None else _floats(measures.get("PixelSpacing"), 2)
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
    )


def has_dicom_preamble(path: str | os.PathLike[str]) -> bool:
    """``True`` when the file has the DICOM magic ``DICM`` at byte 128."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _read_header(path: Path, explicit: bool) -> _Header | None:
    """Parse one file's header; ``None`` when it is not DICOM (raise when ``explicit``)."""
    preamble = has_dicom_preamble(path)
    if not preamble and not explicit and path.suffix.lower() not in _EXTENSIONS_WITHOUT_PREAMBLE:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(str(path), stop_before_pixels=True, force=not preamble)
    except PermissionError as exc:
        if explicit:
            raise MedsegIOError(f"Permission denied: cannot read {path}") from exc
        return None
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on garbage input
        if explicit:
            raise MedsegIOError(
                f"{path.name} is not a readable DICOM file (damaged or another format)."
            ) from exc
        return None
    plausible = preamble or (
        "SOPClassUID" in ds and ("Modality" in ds or "Rows" in ds)
    )
    if not plausible:
        if explicit:
            raise MedsegIOError(f"{path.name} is not a DICOM file (no DICOM header found).")
        return None
    return _header_from_dataset(str(path), ds)


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
    for f in files:
        if f.name.upper() == "DICOMDIR":
            continue
        h = _read_header(f, explicit=False)
        if h is None:
            skipped += 1
        elif h.sop_class_uid != _DICOMDIR_SOP_CLASS:
            headers.append(h)
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
            else:
                by_geometry[_geometry_key(h)].append(h)
        for hs in by_geometry.values():
            for sub in _split_duplicates(hs):
                parts.append((sub, "image"))
        for i, (hs, kind) in enumerate(parts):
            key = uid if len(parts) == 1 else f"{uid}#{i + 1}"
            extra = list(note)
            if len(parts) > 1 and kind == "image":
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


def _geometry(series: _Series) -> _Geometry:
    h0 = series.headers[0]
    warn: list[str] = []
    slices = _slices_of(series)
    row_spacing, col_spacing = h0.pixel_spacing or (1.0, 1.0)
    if h0.pixel_spacing is None:
        warn.append("PixelSpacing is missing; 1 mm pixels assumed.")
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


def _info(series: _Series, geometry: _Geometry | None) -> DicomSeriesInfo:
    h0 = series.headers[0]
    files = sorted({h.path for h in series.headers})
    is_image = series.kind == "image"
    warn = list(series.warnings)
    decoder = _decoder_available(h0.transfer_syntax_uid) if is_image else None
    if geometry is not None:
        warn.extend(geometry.warnings)
    if is_image and h0.samples_per_pixel > 1:
        warn.append("Colour (RGB) images: only greyscale images can be segmented.")
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
    )


_Found = list[tuple[DicomSeriesInfo, _Series, _Geometry | None]]


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


def _decode(path: str, description: str) -> tuple[Dataset, np.ndarray]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=not has_dicom_preamble(path))
    except PermissionError as exc:
        raise MedsegIOError(f"Permission denied: cannot read {path}") from exc
    except Exception as exc:  # noqa: BLE001
        raise MedsegIOError(f"{Path(path).name} is damaged and cannot be read ({exc}).") from exc
    ts = str(ds.file_meta.get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else ""
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise MedsegIOError(f"{Path(path).name} has no pixel data (it is not an image).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
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
    return ds, np.asarray(pixels)


def _read_pixels(info: DicomSeriesInfo, series: _Series, geometry: _Geometry) -> tuple[np.ndarray, bool]:
    """Stack the slices in geometry order, rescaled; returns ``(array, rescaled)``."""
    h0 = series.headers[0]
    label = info.description or Path(info.files[0]).parent.name
    if h0.samples_per_pixel > 1:
        raise MedsegIOError(
            f"'{label}' holds colour (RGB) images; only greyscale medical images can be opened."
        )
    if info.decoder_available is False:
        raise MissingDecoderError(_missing_decoder_message(label, h0.transfer_syntax_uid))
    cache: dict[str, tuple[Dataset, np.ndarray]] = {}
    planes: list[np.ndarray] = []
    scales: list[tuple[float, float]] = []
    for s in geometry.slices:
        if s.path not in cache:
            cache = {s.path: _decode(s.path, label)}
        ds, pixels = cache[s.path]
        if s.frame is not None:
            plane = pixels[s.frame] if pixels.ndim == 3 else pixels
        else:
            plane = pixels if pixels.ndim == 2 else pixels[0]
        if plane.shape != (h0.rows, h0.cols):
            raise MedsegIOError(
                f"{Path(s.path).name} has an image of {plane.shape[0]}x{plane.shape[1]} pixels, "
                f"but its header says {h0.rows}x{h0.cols}."
            )
        planes.append(plane)
        scales.append(_rescale(ds, s.frame))
    stacked = np.stack(planes)
    slopes = np.array([a for a, _ in scales])
    intercepts = np.array([b for _, b in scales])
    rescaled = bool(np.any(slopes != 1) or np.any(intercepts != 0))
    if not rescaled:
        array = stacked
    elif np.all(slopes == 1) and np.all(intercepts == np.round(intercepts)):
        wide = stacked.astype(np.int64) + intercepts.astype(np.int64)[:, None, None]
        lo, hi = int(wide.min()), int(wide.max())
        dtype = np.int16 if -32768 <= lo and hi <= 32767 else np.int32
        array = wide.astype(dtype)
    else:
        array = (stacked.astype(np.float64) * slopes[:, None, None] + intercepts[:, None, None])
        array = array.astype(np.float32)
    if geometry.shifts is not None:
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
    return np.ascontiguousarray(array), rescaled


def _volume(root: Path, info: DicomSeriesInfo, series: _Series, geometry: _Geometry) -> Volume:
    array, rescaled = _read_pixels(info, series, geometry)
    for msg in info.warnings:
        warnings.warn(msg, MedsegIOWarning, stacklevel=3)
    folder = Path(info.files[0]).parent.name if info.files else root.name
    name = info.description or folder or info.modality
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
    }
    return Volume(array, geometry.spacing, geometry.affine, info.modality, metadata, name)


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
        listing = "; ".join(
            f"{t[0].description or t[0].modality} ({t[0].n_slices} slices)" for t in images
        )
        raise MultipleSeriesError(
            f"{root} contains {len(images)} image series ({listing}); choose one.",
            [t[0] for t in images],
        )
    return images[0]  # type: ignore[return-value]


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
    return _volume(root, info, series, geometry)


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
