"""DICOM series geometry: slice order, spacing, gaps, gantry tilt and the affine.

Steps 3 and 4 of reading a folder (the overview is in :mod:`napari_medseg.io.dicom`), from
the headers alone: geometry comes from positions, never from file names.

* **Sort** slices by ImagePositionPatient projected on the slice normal
  (``cross(row direction, column direction)`` from ImageOrientationPatient), not by file name
  or InstanceNumber. Slice spacing is the median distance between neighbouring positions.
  A distance that is a multiple of it means missing slices, any other deviation means uneven
  spacing: both are recorded in ``metadata["warnings"]`` and raised as
  :class:`~napari_medseg.io.errors.MedsegIOWarning`, with the positions and files around the
  gap; the slices are stacked as they are (no made-up slices are inserted). Slices at identical
  positions are dropped (with a warning).
* **Gantry tilt** (slices not stacked along their normal, e.g. tilted CT): the per-slice
  in-plane shift is computed here (the pixels are shifted with linear interpolation,
  ``scipy.ndimage.shift``, in :mod:`napari_medseg.io.dicom_pixels`) onto an orthogonal grid and a
  warning gives the angle. An *oblique* acquisition (tilted slices stacked along their own
  normal) is not tilt: it loads unchanged with a rotated affine.

DICOM patient coordinates are LPS; ``Volume.affine`` is RAS (x and y negated), array order
``(Z, Y, X)`` = (slice, row, column). A series of one slice (or a single file) is a 2D
``(Y, X)`` volume; a multi-frame file is 3D.

Pictures and frames (``metadata["layout"]``): a 2D picture, or one slice without
ImagePositionPatient/ImageOrientationPatient, has no patient orientation
(``metadata["orientation_unknown"]``, a positive placeholder affine: napari shows it as stored).
A multi-frame file without frame positions that is not CT/MR/PET/NM (an ultrasound or XA
cine loop, a multi-frame capture) is ``(frames, Y, X)`` with a frame step of 1
and ``metadata["frame_axis"]`` ``"time"`` (cine) or ``"unknown"``: its frames are not slices.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_medseg.io.dicom_headers import _fmt
from napari_medseg.io.dicom_series import DicomSeriesInfo, _is_picture, _Series

_TILT_LIMIT_DEG = 0.5
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: Modalities whose multi-frame files without frame positions are still stacked as slices
#: (as before 2D support; enhanced CT/MR files carry frame positions anyway).
_VOLUME_MODALITIES = frozenset({"CT", "MR", "PT", "NM"})
#: Modalities whose frames are a time series (cine loops).
_CINE_MODALITIES = frozenset({"US", "XA", "RF", "ES", "XC", "IVUS"})


@dataclass
class _Slice:
    """One 2D image: a single-frame file or one frame of a multi-frame file."""

    path: str
    frame: int | None
    ipp: np.ndarray | None
    instance: int


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
