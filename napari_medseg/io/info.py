"""Path-level entry points: open whatever the user pointed at, describe it, find sample data.

:func:`read_volume` dispatches on what ``path`` is: ``.nii``/``.nii.gz`` -> NIfTI; a folder, a
``.dcm`` file or a file with the DICOM preamble (``DICM`` at byte 128) -> DICOM; ``.png``,
``.jpg``/``.jpeg``, ``.tif``/``.tiff``, ``.bmp``, ``.gif``, ``.ppm``/``.pgm``/``.pnm`` -> picture
(:mod:`.picture`).
:func:`describe_path` gives the JSON summary printed by ``napari-medseg info PATH``.
"""

from __future__ import annotations

import os
import site
import sys
import sysconfig
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from napari_medseg.io.dicom import (
    _discover,
    has_dicom_preamble,
    read_dicom,
    read_dicom_series,
)
from napari_medseg.io.dicom_seg import describe_dicom_labels, dicom_object_kind, read_dicom_labels
from napari_medseg.io.errors import MedsegIOError, check_readable
from napari_medseg.io.itk_formats import describe_itk_image, is_itk_path, read_itk_image
from napari_medseg.io.nifti import is_nifti_path, nifti_header_summary, read_nifti
from napari_medseg.io.picture import describe_picture, is_picture_path, read_picture
from napari_medseg.io.volume import Volume

_DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")


def _kind(p: Path) -> str:
    """``"nifti"``, ``"itk"``, ``"dicom"``, ``"dicom-labels"``, ``"picture"`` or a clear error."""
    if p.is_dir():
        return "dicom"
    if is_nifti_path(p):
        return "nifti"
    if is_itk_path(p):
        return "itk"
    if p.suffix.lower() in _DICOM_SUFFIXES or has_dicom_preamble(p):
        if p.is_file() and _object_kind(p) in ("seg", "rtstruct"):
            return "dicom-labels"
        return "dicom"
    if is_picture_path(p):
        return "picture"
    raise MedsegIOError(
        f"Unsupported file type: {p.name}. napari-medseg opens NIfTI (.nii, .nii.gz), NRRD "
        "(.nrrd, .nhdr) and MetaImage (.mha, .mhd) files, DICOM files and folders (images, "
        "SEG, RTSTRUCT), and PNG, JPEG, TIFF, BMP and GIF pictures."
    )


def _object_kind(p: Path) -> str | None:
    """:func:`dicom_object_kind`, or ``None`` for a header too damaged to tell (the image
    reader then explains what is wrong with the file)."""
    try:
        return dicom_object_kind(p)
    except Exception:  # noqa: BLE001 - pydicom raises NotImplementedError on unknown VRs ...
        return None


def _no_dicom_hint(p: Path, exc: MedsegIOError) -> MedsegIOError:
    if p.is_dir() and str(exc).startswith("No DICOM images found"):
        niftis = sorted(f.name for f in p.iterdir() if is_nifti_path(f))
        if niftis:
            return MedsegIOError(
                f"No DICOM images found in {p}; it holds NIfTI files "
                f"({', '.join(niftis[:3])}{' ...' if len(niftis) > 3 else ''}): open one of them."
            )
        if not any(p.iterdir()):
            return MedsegIOError(f"The folder {p} is empty.")
    return exc


def read_volume(
    path: str | os.PathLike[str], series_uid: str | None = None, channel: int | None = None
) -> Volume:
    """Read one image volume from a NIfTI file, a DICOM file or folder, or a picture.

    Parameters
    ----------
    path : path-like
        ``.nii``/``.nii.gz`` file, DICOM file, folder (tree) of DICOM files, or a PNG, JPEG,
        TIFF, BMP or GIF picture (:func:`~napari_medseg.io.picture.read_picture`: a colour
        picture gives ``Volume(..., rgb=True)``, a multi-page TIFF a 3D volume).
    series_uid : str, optional
        DICOM only: key or SeriesInstanceUID of the series to read
        (see :func:`~napari_medseg.io.dicom.list_dicom_series`).
    channel : int, optional
        NIfTI only: channel / time point of a 4D file.

    Raises
    ------
    MultipleSeriesError
        The folder holds several image series and ``series_uid`` is ``None``;
        ``exc.series`` lists them (:class:`DicomSeriesInfo`).
    MedsegIOError
        Any other reason the path cannot be read (message for the user).
    """
    p = check_readable(path)
    kind = _kind(p)
    if kind == "nifti":
        return read_nifti(p, channel=channel)
    if kind == "picture":
        return read_picture(p)
    if kind == "itk":
        return read_itk_image(p)
    if kind == "dicom-labels":
        return read_dicom_labels(p)
    try:
        return read_dicom_series(p, series_uid)
    except MedsegIOError as exc:
        better = _no_dicom_hint(p, exc)
        if better is exc:
            raise
        raise better from exc


def read_volumes(path: str | os.PathLike[str]) -> list[Volume]:
    """Read every image in ``path``: one volume for NIfTI or a picture, one per DICOM series."""
    p = check_readable(path)
    kind = _kind(p)
    if kind == "nifti":
        return [read_nifti(p)]
    if kind == "picture":
        return [read_picture(p)]
    if kind == "itk":
        return [read_itk_image(p)]
    if kind == "dicom-labels":
        return [read_dicom_labels(p)]
    try:
        return read_dicom(p)
    except MedsegIOError as exc:
        better = _no_dicom_hint(p, exc)
        if better is exc:
            raise
        raise better from exc


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


#: Series entries of :func:`describe_path` that identify the patient: left out unless asked.
PHI_KEYS = ("patient_id", "patient_name", "patient_birth_date")


def describe_path(path: str | os.PathLike[str], phi: bool = False,
                  check_voxels: bool = False) -> dict[str, Any]:
    """JSON-serialisable summary of a NIfTI file, DICOM file/folder or picture.

    NIfTI and DICOM are summarised from their headers only (unless ``check_voxels``); a
    picture is decoded (pictures are small, and this way a damaged one is reported).

    Parameters
    ----------
    path : path-like
        What to describe.
    phi : bool
        Include the DICOM patient identifiers (``patient_id`` of each series). Off by
        default: the summary is meant to be pasted into reports and bug trackers.
    check_voxels : bool
        NIfTI, NRRD and MetaImage: refuse a truncated file (raise, instead of the
        ``warnings`` entry saying it will not open) and, for floating-point voxels, read them
        and count those that are NaN or infinite: ``non_finite_voxels`` (their number) is
        added and a ``warnings`` entry says it when there are any. What
        ``napari-medseg info`` does.

    Returns
    -------
    dict
        ``path``, ``format`` (``"nifti"``/``"dicom"``), ``shape`` (array order ``(Z, Y, X)``),
        ``spacing`` (mm, array order), ``affine`` (4x4 nested list, array index -> RAS mm),
        ``modality``, ``dtype``, ``series`` and ``warnings`` (list of str). For NIfTI ``series``
        is ``[]``, ``modality`` is ``"unknown"`` (NIfTI has no modality tag), ``dtype`` the stored
        dtype and ``n_channels`` is added. For DICOM ``series`` has one dict per series (image or
        not) with ``uid``, ``key``, ``description``, ``modality``, ``slices``, ``shape``,
        ``spacing``, ``affine``, ``is_image``, ``kind``, ``transfer_syntax``, ``warnings`` ...;
        the top-level ``shape``/``spacing``/``affine``/``modality``/``dtype`` are those of the
        image series when there is exactly one, else ``None`` (see ``series``), and
        ``n_image_series`` is added. For a picture (``format`` ``"png"``, ``"jpeg"``,
        ``"tiff"``, ``"bmp"``, ``"gif"``) ``shape`` is spatial, ``series`` is ``[]`` and
        ``picture`` (True), ``channels`` (values per pixel: 1, 3 or 4), ``rgb``,
        ``n_channels`` (model input channels), ``spacing_known``, ``pages`` and
        ``value_range`` are added (:func:`~napari_medseg.io.picture.describe_picture`).

    Raises
    ------
    MedsegIOError
        Missing or unreadable path, unsupported file, damaged file.
    """
    p = check_readable(path)
    kind = _kind(p)
    if kind == "picture":
        return _jsonable(describe_picture(p))
    if kind == "itk":
        result = describe_itk_image(p)
        if check_voxels and "float" in str(result.get("dtype", "")).lower():
            _add_non_finite(result, p, _non_finite_itk,
                            "replace them before training or predicting on this image")
        return _jsonable(result)
    if kind == "dicom-labels":
        return _jsonable(describe_dicom_labels(p))
    if kind == "nifti":
        summary = nifti_header_summary(p)
        result: dict[str, Any] = {
            "path": str(p),
            "format": "nifti",
            "shape": summary["shape"],
            "spacing": summary["spacing"],
            "affine": summary["affine"],
            "modality": "unknown",
            "dtype": summary["dtype"],
            "n_channels": summary["n_channels"],
            "series": [],
            "warnings": [],
        }
        if summary["n_channels"] > 1:
            result["warnings"].append(
                f"{summary['n_channels']} channels or time points: choose one when opening."
            )
        if summary.get("truncated"):
            if check_voxels:
                raise MedsegIOError(f"{summary['truncated']}; it cannot be opened.")
            result["warnings"].append(f"{summary['truncated']}; it will not open.")
        elif check_voxels and np.dtype(summary["dtype"]).kind in "fc":
            _add_non_finite(result, p, _non_finite_nifti,
                            "they are read as the lowest valid value")
        return _jsonable(result)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found, problems, notes, root = _discover(p)
    infos = [info for info, _, _ in found]
    images = [t for t in found if t[0].is_image]
    if not infos:
        raise _no_dicom_hint(p, MedsegIOError(f"No DICOM images found in {p}."))
    result = {
        "path": str(root),
        "format": "dicom",
        "shape": None,
        "spacing": None,
        "affine": None,
        "modality": None,
        "dtype": None,
        "n_image_series": len(images),
        "series": [],
        "warnings": list(problems) + list(notes),
    }
    for info, series, _ in found:
        entry = info.to_dict()
        if not phi:
            for key in PHI_KEYS:
                entry.pop(key, None)
        entry["dtype"] = _predicted_dtype(series.headers[0].path) if info.is_image else None
        result["series"].append(entry)
    if len(images) == 1:
        only = next(e for e in result["series"] if e["is_image"])
        for key in ("shape", "spacing", "affine", "modality", "dtype"):
            result[key] = only[key]
        result["warnings"].extend(only["warnings"])
    return _jsonable(result)


def _add_non_finite(result: dict[str, Any], p: Path, count: Any, what_then: str) -> None:
    """Add ``non_finite_voxels`` (and a warning when there are any, ending with
    ``what_then``) to a summary."""
    bad, total = count(p)
    result["non_finite_voxels"] = bad
    if bad == total:
        result["warnings"].append(f"{p.name}: all {total:,} voxels are NaN or infinite; there "
                                  "is no image in it to show or segment.")
    elif bad:
        result["warnings"].append(f"{p.name}: {bad:,} of {total:,} voxels are NaN or infinite; "
                                  f"{what_then}.")


#: Bytes of voxels read at a time when counting non-finite voxels.
_CHUNK_BYTES = 64 << 20


def _non_finite_nifti(p: Path) -> tuple[int, int]:
    """(non-finite voxels, all voxels) of a NIfTI file, read a block of slices at a time.

    Raises
    ------
    MedsegIOError
        The voxels cannot be read (damaged compressed data ...), in one line.
    """
    import nibabel as nib

    try:
        img = nib.load(str(p))
        shape = tuple(int(n) for n in img.shape) or (1,)
        per_slice = max(1, int(np.prod(shape[:-1], dtype=np.int64))
                        * img.header.get_data_dtype().itemsize)
        step = max(1, _CHUNK_BYTES // per_slice)
        bad = 0
        for start in range(0, shape[-1], step):  # the last axis is the slowest in the file
            block = np.asarray(img.dataobj[..., start:start + step])
            bad += int(block.size - np.count_nonzero(np.isfinite(block)))
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - zlib, EOF, nibabel errors: one line for the user
        raise MedsegIOError(f"Cannot read the voxels of {p.name}: the file is truncated or "
                            f"damaged ({type(exc).__name__}).") from exc
    return bad, int(np.prod(shape, dtype=np.int64))


def _non_finite_itk(p: Path) -> tuple[int, int]:
    """(non-finite voxels, all voxels) of an NRRD / MetaImage file (read whole)."""
    array = np.asarray(read_itk_image(p, as_labels=False).array)
    return int(array.size - np.count_nonzero(np.isfinite(array))), int(array.size)


def _predicted_dtype(first_file: str) -> str | None:
    """dtype the series will have once read, from the first file's header."""
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(first_file, stop_before_pixels=True, force=True)
    except Exception:  # noqa: BLE001
        return None
    bits = int(ds.get("BitsAllocated", 16) or 16)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    stored = f"{'int' if signed else 'uint'}{bits if bits in (8, 16, 32) else 16}"
    try:
        slope = float(ds.get("RescaleSlope", 1) or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
    except (TypeError, ValueError):
        return stored
    if slope == 1 and intercept == 0:
        return stored
    if slope == 1 and intercept == round(intercept):
        return "int16"
    return "float32"


def sample_data_dir() -> Path:
    """Folder of the sample data shipped with the plugin (``hippocampus/``, ``ATTRIBUTION.md``).

    Looks in the source checkout (``<repo>/sample_data``) first, then in the installed data
    folder ``<prefix>/share/napari-medseg/sample_data`` (``data_files`` of the wheel).

    Raises
    ------
    MedsegIOError
        When no copy of the sample data can be found.
    """
    candidates = [Path(__file__).resolve().parents[2] / "sample_data"]
    for base in {sys.prefix, sysconfig.get_path("data"), getattr(site, "USER_BASE", None)}:
        if base:
            candidates.append(Path(base) / "share" / "napari-medseg" / "sample_data")
    for c in candidates:
        if (c / "hippocampus" / "dataset.json").is_file():
            return c
    raise MedsegIOError(
        "The napari-medseg sample data is not installed (looked in "
        + ", ".join(str(c) for c in candidates)
        + ")."
    )
