"""DICOM series discovery and reading (pydicom): geometry from positions, never from file names.

How a folder becomes volumes (each step lives in its own module, imported in this order):

1. **Scan** the headers of every DICOM file under the path, pixel data deferred; pixel
   spacing and its source (:mod:`napari_medseg.io.dicom_headers`).
2. **Group** them by SeriesInstanceUID, split a series where its slices differ, keep non-image
   objects and 2D pictures apart (:mod:`napari_medseg.io.dicom_series`, which also holds
   :class:`DicomSeriesInfo`).
3. **Sort** slices along the plane normal, report gaps and uneven spacing, build the RAS
   affine and the layout of pictures and cine frames (:mod:`napari_medseg.io.dicom_geometry`).
4. Measure **gantry tilt**: the in-plane shift of each slice onto an orthogonal grid (same
   module).
5. Decode the **pixels** into the preallocated volume: MONOCHROME1 inverted, colour as RGB,
   RescaleSlope/Intercept applied, tilt shifted out (:mod:`napari_medseg.io.dicom_pixels`).

This module puts them together: the public :func:`list_dicom_series`,
:func:`read_dicom_series`, :func:`read_dicom`, :func:`is_dicom_path` and
:func:`folder_has_dicom`, the choice of a series and the Volume's metadata; it re-exports the
names other modules import from here. ``Volume.affine`` is RAS (DICOM's LPS with x and y
negated), array order ``(Z, Y, X)``; one slice (or a single file) is a 2D ``(Y, X)`` volume.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from napari_medseg.io.dicom_geometry import _Geometry, _geometry, _geometry_metadata
from napari_medseg.io.dicom_headers import (
    _EXTENSIONS_WITHOUT_PREAMBLE,
    PLAUSIBLE_PIXEL_SPACING_MM,  # noqa: F401 - re-exported
    _scan,
    has_dicom_preamble,
)
from napari_medseg.io.dicom_pixels import (
    _colour_words,
    _decoder_available,
    _missing_decoder_message,
    _read_pixels,
    _rescaled,  # noqa: F401 - re-exported
    _ts_name,
    _unsupported_colour_message,
)
from napari_medseg.io.dicom_series import (
    NON_IMAGE_MODALITIES,  # noqa: F401 - re-exported
    PICTURE_MODALITIES,  # noqa: F401 - re-exported
    DicomSeriesInfo,
    _group,
    _is_colour,
    _Series,
)
from napari_medseg.io.errors import (
    MedsegIOError,
    MedsegIOWarning,
    MultipleSeriesError,
)
from napari_medseg.io.volume import Volume


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
