"""Binary morphology with a physical (mm) ellipsoid structuring element, fast and exact.

The structuring element ("footprint") of radius ``r`` mm for voxel spacing ``s`` (mm, array axis
order) is the set of integer voxel offsets ``d`` with::

    sum_i (d_i * s_i) ** 2 <= r ** 2 * (1 + BALL_TOLERANCE)

so a voxel exactly at distance ``r`` belongs to it (``BALL_TOLERANCE`` = 1e-6 absorbs float rounding
consistently in every method). Border semantics are those of scikit-image's ``binary_*`` functions
with ``mode="ignore"`` (and ``scipy.ndimage`` with the matching ``border_value``): outside the array
counts as background for dilation and as foreground for erosion, so an object touching the image
border does not erode from that border.

Three methods give identical results:

``"rows"``
    Decomposition of the ellipsoid into runs along the axis where it is longest. One 1D run
    dilation per distinct run length, then one shifted OR per run, the ORs done on bit-packed
    arrays (8 voxels per byte). Cost grows with the number of runs (~ r^2), not with r^3.
``"edt"``
    Distance-transform formulation: dilation = voxels whose squared distance (mm^2, anisotropic)
    to the mask is within the threshold, erosion = mask voxels farther than the threshold from the
    background. Uses the multi-threaded ``edt`` package; cost independent of the radius.
``"reference"``
    ``scipy.ndimage.binary_dilation/erosion`` with the explicit footprint (what scikit-image does),
    cost ~ r^3 per voxel. For tests and benchmarks.

``"auto"`` (default) works on the mask's bounding box plus the footprint margin (exact: nothing
outside can change) and picks ``"rows"`` or ``"edt"`` from a cost estimate.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from napari_medseg.editing._validation import (
    EditingError,
    bbox,
    check_radius,
    check_spacing,
    expand_bbox,
)

#: Relative tolerance on the squared radius: offsets with sum((d*s)^2) <= r^2 (1 + tol) are inside.
BALL_TOLERANCE = 1e-6

#: Threads used by the ``edt`` package (distance transforms).
EDT_THREADS = max(1, min(8, os.cpu_count() or 1))

METHODS = ("auto", "rows", "edt", "reference")

# Cost model per voxel of the cropped volume, in units of one pass over an unpacked boolean array:
# a packed shifted OR ~ 1/8, a run-dilation step ~ 2, an ``edt`` closing ~ 600 (calibrated on
# 120x256x256 at 2.5x0.8x0.8 mm and 1 mm isotropic, 2 cores: the run decomposition wins up to
# radii of ~40 mm, the distance transform beyond).
_EDT_COST = 600.0


def _threshold(radius_mm: float) -> float:
    return radius_mm * radius_mm * (1.0 + BALL_TOLERANCE)


def ellipsoid_footprint(radius_mm: float, spacing: Sequence[float]) -> np.ndarray:
    """Boolean footprint of all voxel offsets within ``radius_mm`` mm (ellipsoid in voxels).

    Parameters
    ----------
    radius_mm : float
        Radius in mm (>= 0). 0 gives a single voxel.
    spacing : sequence of float
        Voxel size in mm per array axis; its length sets the dimensionality.

    Returns
    -------
    np.ndarray of bool
        Shape ``(2*m_0+1, ..., 2*m_n+1)`` with ``m_i = floor(r / s_i)`` (up to the tolerance);
        the centre voxel is offset 0. Symmetric in every axis.
    """
    r = check_radius(radius_mm)
    sp = tuple(float(s) for s in spacing)
    if not sp or not all(np.isfinite(s) and s > 0 for s in sp):
        raise EditingError(f"Voxel spacing must be positive finite mm values, got {tuple(spacing)}.")
    thr = _threshold(r)
    half = [int(np.floor(np.sqrt(thr) / s)) + 1 for s in sp]
    grids = np.meshgrid(*[np.arange(-m, m + 1) for m in half], indexing="ij", sparse=True)
    q = np.zeros([2 * m + 1 for m in half])
    for g, s in zip(grids, sp, strict=False):
        q = q + (g * s) ** 2
    fp = q <= thr
    box = bbox(fp)
    assert box is not None  # the centre (q = 0) is always inside
    return np.ascontiguousarray(fp[box])


def footprint_margin(footprint: np.ndarray) -> tuple[int, ...]:
    """Half-extent of a symmetric footprint in voxels per axis."""
    return tuple(k // 2 for k in footprint.shape)


def _run_axis(footprint: np.ndarray) -> int:
    """Axis along which the footprint is longest (runs go along it); ties -> last axis."""
    ext = np.asarray(footprint.shape)
    return int(len(ext) - 1 - np.argmax(ext[::-1]))


def _rows(footprint: np.ndarray) -> dict[tuple[int, ...], int]:
    """Map each row offset (all axes but the last) to the half-width of its run on the last axis."""
    counts = footprint.sum(axis=-1)
    if footprint.ndim == 1:
        return {(): int(counts - 1) // 2}
    centre = [k // 2 for k in footprint.shape[:-1]]
    rows = {}
    for idx in zip(*np.nonzero(counts), strict=False):
        off = tuple(int(i) - c for i, c in zip(idx, centre, strict=False))
        rows[off] = (int(counts[idx]) - 1) // 2
    return rows


def estimate_cost(footprint: np.ndarray) -> dict[str, float]:
    """Relative cost per voxel of the ``rows`` and ``edt`` methods for this footprint."""
    fp = np.moveaxis(footprint, _run_axis(footprint), -1)
    rows = _rows(fp)
    widths = set(rows.values())
    w_max = max(widths)
    rows_cost = len(rows) / 8.0 + 2.0 * w_max + 2.0 * len(widths) + 2.0
    return {"rows": rows_cost, "edt": _EDT_COST}


def _shift_slices(n: int, d: int) -> tuple[slice, slice]:
    """(destination, source) slices so that ``dst[x] = src[x - d]`` along an axis of length n."""
    if d >= 0:
        return slice(d, n), slice(0, max(0, n - d))
    return slice(0, max(0, n + d)), slice(-d, n)


def _dilate_rows(mask: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Dilation by run decomposition on bit-packed arrays (zero border)."""
    ax = _run_axis(footprint)
    m = np.ascontiguousarray(np.moveaxis(mask, ax, -1))
    fp = np.moveaxis(footprint, ax, -1)
    rows = _rows(fp)
    needed = set(rows.values())
    w_max = max(needed)
    n_last = m.shape[-1]
    packed: dict[int, np.ndarray] = {}
    run = m.copy()
    if 0 in needed:
        packed[0] = np.packbits(run, axis=-1)
    for w in range(1, w_max + 1):
        if w < n_last:
            run[..., w:] |= m[..., :-w]
            run[..., :-w] |= m[..., w:]
        if w in needed:
            packed[w] = np.packbits(run, axis=-1)
    out = np.zeros_like(packed[w_max])
    shape = m.shape[:-1]
    for off, w in rows.items():
        dst, src = [], []
        for n, d in zip(shape, off, strict=False):
            a, b = _shift_slices(n, d)
            dst.append(a)
            src.append(b)
        if any(s.stop is not None and s.stop <= s.start for s in src):
            continue
        out[tuple(dst)] |= packed[w][tuple(src)]
    res = np.unpackbits(out, axis=-1, count=n_last).view(bool)
    return np.moveaxis(res, -1, ax)


def _sqdist_edt(mask_zero_is_target: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Squared anisotropic distance (mm^2) of every voxel to the nearest False voxel."""
    import edt  # local import: optional speed path, loaded only when used

    arr = np.ascontiguousarray(mask_zero_is_target)
    return edt.edtsq(arr, anisotropy=spacing, black_border=False, parallel=EDT_THREADS)


def _pick(method: str, footprint: np.ndarray, ndim: int) -> str:
    if method not in METHODS:
        raise EditingError(f"Unknown morphology method {method!r}; choose one of {METHODS}.")
    if method == "edt" and ndim > 3:
        return "rows"
    if method != "auto":
        return method
    if footprint.size == 1:
        return "rows"
    cost = estimate_cost(footprint)
    if ndim <= 3 and cost["edt"] < cost["rows"]:
        return "edt"
    return "rows"


def _dilate(mask: np.ndarray, radius: float, spacing: tuple[float, ...], fp: np.ndarray,
            method: str) -> np.ndarray:
    """Dilation of a (cropped) mask, full array semantics of the chosen method."""
    if fp.size == 1:
        return mask.copy()
    if method == "reference":
        return ndi.binary_dilation(mask, structure=fp, border_value=0)
    if method == "edt":
        return _sqdist_edt(~mask, spacing) <= _threshold(radius)
    return _dilate_rows(mask, fp)


def _erode(mask: np.ndarray, radius: float, spacing: tuple[float, ...], fp: np.ndarray,
           method: str) -> np.ndarray:
    """Erosion of a (cropped) mask; outside the array counts as foreground."""
    if fp.size == 1:
        return mask.copy()
    if method == "reference":
        return ndi.binary_erosion(mask, structure=fp, border_value=1)
    if method == "edt":
        if mask.all():
            return mask.copy()
        return _sqdist_edt(mask, spacing) > _threshold(radius)
    return ~_dilate_rows(~mask, fp)


def _prepare(mask: np.ndarray, radius_mm: float, spacing: Sequence[float] | None, method: str):
    m = np.asarray(mask)
    if m.dtype != bool:
        m = m.astype(bool)
    if m.ndim < 1:
        raise EditingError("The mask must have at least one dimension.")
    r = check_radius(radius_mm)
    sp = check_spacing(spacing, m.ndim)
    fp = ellipsoid_footprint(r, sp)
    return m, r, sp, fp, _pick(method, fp, m.ndim)


def _apply(kind: str, mask, radius_mm, spacing, method) -> np.ndarray:
    m, r, sp, fp, meth = _prepare(mask, radius_mm, spacing, method)
    if meth == "reference":
        if kind == "dilate":
            return _dilate(m, r, sp, fp, meth)
        if kind == "erode":
            return _erode(m, r, sp, fp, meth)
        if kind == "open":
            return _dilate(_erode(m, r, sp, fp, meth), r, sp, fp, meth)
        return _erode(_dilate(m, r, sp, fp, meth), r, sp, fp, meth)
    out = np.zeros(m.shape, dtype=bool)
    box = bbox(m)
    if box is None:
        return out if kind != "erode" else out
    margin = footprint_margin(fp)
    if kind == "dilate":
        crop = expand_bbox(box, margin, m.shape)
        out[crop] = _dilate(m[crop], r, sp, fp, meth)
    elif kind == "erode":
        crop = expand_bbox(box, [1] * m.ndim, m.shape)
        out[crop] = _erode(m[crop], r, sp, fp, meth)
    elif kind == "open":
        crop = expand_bbox(box, [1] * m.ndim, m.shape)
        eroded = _erode(m[crop], r, sp, fp, meth)
        out[crop] = _dilate(eroded, r, sp, fp, meth) if eroded.any() else eroded
    else:  # close
        crop = expand_bbox(box, [k + 1 for k in margin], m.shape)
        out[crop] = _erode(_dilate(m[crop], r, sp, fp, meth), r, sp, fp, meth)
    return out


def dilate_mask(mask: np.ndarray, radius_mm: float, spacing: Sequence[float] | None = None, *,
                method: str = "auto") -> np.ndarray:
    """Binary dilation by the ellipsoid of ``radius_mm`` mm.

    Parameters
    ----------
    mask : np.ndarray
        Boolean (or 0/1) array, any dimensionality (``"edt"`` needs 1-3D).
    radius_mm : float
        Radius in mm.
    spacing : sequence of float, optional
        mm per voxel in array axis order (default 1 mm).
    method : {"auto", "rows", "edt", "reference"}
        Algorithm; all give the identical result (see module docstring).

    Returns
    -------
    np.ndarray of bool
        New array, same shape.
    """
    return _apply("dilate", mask, radius_mm, spacing, method)


def erode_mask(mask: np.ndarray, radius_mm: float, spacing: Sequence[float] | None = None, *,
               method: str = "auto") -> np.ndarray:
    """Binary erosion by the ellipsoid of ``radius_mm`` mm (outside the array = foreground).

    Same parameters as :func:`dilate_mask`.
    """
    return _apply("erode", mask, radius_mm, spacing, method)


def open_mask(mask: np.ndarray, radius_mm: float, spacing: Sequence[float] | None = None, *,
              method: str = "auto") -> np.ndarray:
    """Binary opening (erosion then dilation) by the ellipsoid of ``radius_mm`` mm.

    Same parameters as :func:`dilate_mask`.
    """
    return _apply("open", mask, radius_mm, spacing, method)


def close_mask(mask: np.ndarray, radius_mm: float, spacing: Sequence[float] | None = None, *,
               method: str = "auto") -> np.ndarray:
    """Binary closing (dilation then erosion) by the ellipsoid of ``radius_mm`` mm.

    Same parameters as :func:`dilate_mask`. Matches ``skimage.morphology.binary_closing`` with
    the footprint :func:`ellipsoid_footprint` (``mode="ignore"``).
    """
    return _apply("close", mask, radius_mm, spacing, method)
