"""Display windows: CT presets in Hounsfield units and robust auto-contrast for MR and others.

A CT window is given as (level, width) in HU, as on a scanner console; napari wants
``contrast_limits = (lo, hi) = (level - width / 2, level + width / 2)``.
"""

from __future__ import annotations

import numpy as np

from napari_medseg.io.volume import Volume

#: CT window presets, name -> (level, width) in HU.
CT_WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "soft tissue": (40.0, 400.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}

#: Preset used when a CT volume is opened.
DEFAULT_CT_PRESET = "soft tissue"

#: Largest number of voxels looked at by :func:`auto_contrast_limits` (a strided subsample above).
_MAX_SAMPLES = 2_000_000


def window_to_contrast_limits(level: float, width: float) -> tuple[float, float]:
    """Convert a (level, width) window in HU to napari ``(lo, hi)`` contrast limits.

    Raises
    ------
    ValueError
        When ``width`` is not a positive finite number.
    """
    level, width = float(level), float(width)
    if not np.isfinite(level) or not np.isfinite(width) or width <= 0:
        raise ValueError(f"A window needs a finite level and a positive width, got {level}, {width}.")
    return level - width / 2.0, level + width / 2.0


def contrast_limits_to_window(lo: float, hi: float) -> tuple[float, float]:
    """Inverse of :func:`window_to_contrast_limits`: ``(level, width)``."""
    return (float(lo) + float(hi)) / 2.0, float(hi) - float(lo)


def preset_contrast_limits(name: str) -> tuple[float, float]:
    """Contrast limits of a named CT preset (case-insensitive, see :data:`CT_WINDOW_PRESETS`)."""
    key = name.strip().lower()
    if key not in CT_WINDOW_PRESETS:
        known = ", ".join(CT_WINDOW_PRESETS)
        raise ValueError(f"Unknown CT window '{name}'; choose one of: {known}.")
    return window_to_contrast_limits(*CT_WINDOW_PRESETS[key])


def auto_contrast_limits(
    array: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.5)
) -> tuple[float, float]:
    """Robust contrast limits from intensity percentiles, ignoring NaN/inf.

    Parameters
    ----------
    array : np.ndarray
        Image voxels, any shape; large arrays are subsampled (strided) for speed.
    percentiles : (float, float)
        Lower and upper percentile, 0-100.

    Returns
    -------
    (float, float)
        ``lo < hi`` always: a constant (or empty / all-NaN) image gets a unit-wide range.
    """
    a = np.asarray(array)
    if a.dtype.kind == "b":
        a = a.astype(np.uint8)
    flat = a.reshape(-1)
    if flat.size > _MAX_SAMPLES:
        flat = flat[:: int(np.ceil(flat.size / _MAX_SAMPLES))]
    if flat.dtype.kind == "f":
        flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(flat, percentiles))
    if not hi > lo:
        lo, hi = float(flat.min()), float(flat.max())
    if not hi > lo:
        return lo - 0.5, lo + 0.5
    return lo, hi


def default_contrast_limits(volume: Volume) -> tuple[float, float]:
    """Contrast limits to set when ``volume`` is opened.

    CT (``volume.modality == "CT"``) gets the soft-tissue window (level 40, width 400 HU);
    an image whose file states a display window (DICOM WindowCenter/WindowWidth, e.g. an
    X-ray or a mammogram: ``metadata["window_center"]``/``["window_width"]``) gets that window;
    every other image gets :func:`auto_contrast_limits`.
    """
    if volume.modality == "CT":
        return preset_contrast_limits(DEFAULT_CT_PRESET)
    meta = volume.metadata or {}
    try:
        centre, width = float(meta["window_center"]), float(meta["window_width"])
    except (KeyError, TypeError, ValueError):
        centre = width = float("nan")
    if np.isfinite(centre) and np.isfinite(width) and width > 0:
        return window_to_contrast_limits(centre, width)
    return auto_contrast_limits(volume.array)
