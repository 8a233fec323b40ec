"""The image series a DICOM SEG or RTSTRUCT refers to, and what both kinds share.

Both kinds describe labels *on another series*: the referenced image series (a CT or MR) gives
the voxel grid. A label map here is always the ``(Z, Y, X)`` integer array of that series as
:func:`napari_medseg.io.dicom.read_dicom_series` reads it (slices sorted along the plane normal,
rows, columns), with its RAS affine, so a SEG or RTSTRUCT overlays the image voxel for voxel.

Here: :class:`ReferenceSeries` (the series' headers in array order, its grid), loading it
(:func:`load_reference_series`) and finding it beside an object (:func:`find_reference_series`),
telling SEG from RTSTRUCT (:func:`dicom_object_kind`), and the checks and helpers both writers
use (UIDs the object must reference, labels on the series' grid, class table, colours, saving
through a temporary file + rename). Every problem raises
:class:`~napari_medseg.io.errors.MedsegIOError` with one line for the user.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_medseg.io.errors import MedsegIOError, check_readable, one_line
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


# --------------------------------------------------------------------------------------------
# what both writers share: checks against the series, class table, colours, saving
# --------------------------------------------------------------------------------------------


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
