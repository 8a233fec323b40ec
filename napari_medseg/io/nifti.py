"""NIfTI-1/2 reading and writing (``.nii``, ``.nii.gz``) with exact geometry round trips.

Conventions
-----------
* nibabel arrays are ``(x, y, z)``; a :class:`Volume` array is ``(Z, Y, X)`` (the transpose).
  ``Volume.affine = affine_from_nifti(img.affine)``, a column permutation, so nothing is rounded.
* ``img.affine`` is the sform when its code is set, else the qform (nibabel's rule).
* NIfTI-1 stores the sform in float32. :func:`write_nifti` writes the sform (and the qform), and
  when the affine is not exactly representable in float32 (a DICOM-derived oblique affine, say)
  it also stores the float64 affine in a NIfTI ``comment`` extension. :func:`read_nifti` uses that
  extension only while it agrees with the sform to float32 precision, so another program that edits
  the header wins. Reading back what we wrote gives bit-identical voxels and affine.
* A volume whose orientation is unknown (:attr:`Volume.has_orientation` false: a plain array, a
  picture) is still written with its affine in the sform (other programs see the same voxel
  grid), plus the float64 affine and a "no orientation" comment extension. :func:`read_nifti`
  honours that mark (``metadata["orientation_unknown"]``) while the affine extension is valid, so
  the volume reopens with the same napari placement instead of being read as patient RAS.

Label maps
----------
``read_nifti(..., as_labels=None)`` (the default) detects label maps with
:func:`looks_like_label_map`: integer-valued (any dtype), non-negative, and at most 16 distinct values,
or at most 1024 distinct values when the file name says ``label``/``seg``/``mask``. A detected
label map stored as float (MSD ``hippocampus_003`` and ``_243``) is cast to the smallest unsigned
integer dtype and ``metadata["is_labels"]`` is ``True``. ``as_labels=True`` forces the cast
(and raises if the values are not integers); ``as_labels=False`` never casts.

Intensity scaling
-----------------
``scl_slope``/``scl_inter`` are applied. An integer file with slope 1 and an integer intercept
stays integer (int16 if the values fit); other scalings give float32 (not nibabel's float64).

Non-finite voxels
-----------------
NaN / inf voxels in an image are replaced by the lowest finite value of the image (0 when there
is none); their count is recorded in ``metadata["warnings"]`` and reported with
:func:`warnings.warn`. Downstream normalisation and training cannot handle NaNs.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from napari_medseg.io.atomic import atomic_output
from napari_medseg.io.errors import (
    MedsegIOError,
    MedsegIOWarning,
    MultipleChannelsError,
    check_allocation,
    check_readable,
)
from napari_medseg.io.volume import Volume, affine_from_nifti, spacing_from_affine

NIFTI_SUFFIXES = (".nii", ".nii.gz")
# nibabel logs header repairs ("sizeof_hdr should be 348 ...") straight to stderr, which breaks
# the one-line promise of the CLI; what matters comes back as our own warning or error instead.
logging.getLogger("nibabel.global").setLevel(logging.CRITICAL)

_AFFINE_EXTENSION_PREFIX = b"napari-medseg float64 affine "
_NO_ORIENTATION_MARK = b"napari-medseg orientation unknown"
_COMMENT_CODE = 6
_LABEL_NAME_HINTS = ("label", "seg", "mask", "annot", "truth")


def is_nifti_path(path: str | os.PathLike[str]) -> bool:
    """``True`` when the file name ends in ``.nii`` or ``.nii.gz`` (case-insensitive)."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def nifti_stem(path: str | os.PathLike[str]) -> str:
    """File name without ``.nii`` / ``.nii.gz``."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def looks_like_label_map(array: np.ndarray, name: str = "") -> bool:
    """Guess whether ``array`` is a label map (class indices) rather than intensities.

    Parameters
    ----------
    array : np.ndarray
        Voxels, any shape.
    name : str
        File name, used as a hint (``label``, ``seg``, ``mask`` ... raise the limit of
        distinct values from 16 to 1024).

    Returns
    -------
    bool
        ``True`` when all values are finite non-negative integers with few distinct values.
    """
    a = np.asarray(array)
    if a.size == 0 or a.dtype.kind not in "uifb":
        return False
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            return False
    if a.min() < 0:
        return False
    hinted = any(h in name.lower() for h in _LABEL_NAME_HINTS)
    limit = 1024 if hinted else 16
    if a.max() > 65535:
        return False
    return int(np.unique(a).size) <= limit


def label_dtype(array: np.ndarray) -> np.dtype:
    """Smallest integer dtype holding the (integral) values of ``array``: uint8, uint16, ..."""
    a = np.asarray(array)
    if a.size == 0:
        return np.dtype(np.uint8)
    lo, hi = float(a.min()), float(a.max())
    for dt in (np.uint8, np.uint16, np.uint32) if lo >= 0 else (np.int8, np.int16, np.int32):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dt)
    return np.dtype(np.int64)


def _to_labels(array: np.ndarray, where: str) -> np.ndarray:
    a = np.asarray(array)
    if a.dtype.kind == "b":
        return a.astype(np.uint8)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise MedsegIOError(
                f"{where} contains non-integer values, so it is not a label map "
                "(labels must be whole numbers 0, 1, 2, ...)."
            )
    elif a.dtype.kind not in "ui":
        raise MedsegIOError(f"{where} has data type {a.dtype}, which cannot hold labels.")
    return a.astype(label_dtype(a), copy=False)


def guess_modality(array: np.ndarray) -> str:
    """``"CT"`` when intensities look like Hounsfield units (values at or below -500), else ``"unknown"``.

    NIfTI files carry no modality; this only helps pick a sensible display window.
    """
    a = np.asarray(array)
    if a.size and a.dtype.kind in "if" and np.nanmin(a) <= -500 and np.nanmax(a) >= 0:
        return "CT"
    return "unknown"


def _affine_from_extension(img: Any) -> np.ndarray | None:
    """The float64 NIfTI affine we stored in a comment extension, if present and still valid."""
    for ext in getattr(img.header, "extensions", []):
        if ext.get_code() != _COMMENT_CODE:
            continue
        content = ext.get_content()
        if isinstance(content, str):
            content = content.encode()
        if not content.startswith(_AFFINE_EXTENSION_PREFIX):
            continue
        try:
            stored = np.array(json.loads(content[len(_AFFINE_EXTENSION_PREFIX) :]), dtype=float)
        except (ValueError, TypeError):
            return None
        if stored.shape == (4, 4) and np.allclose(stored, img.affine, rtol=1e-5, atol=1e-3):
            return stored
    return None


def _has_no_orientation_mark(img: Any) -> bool:
    """Whether we wrote ``img`` from a volume without patient orientation (see module docstring)."""
    for ext in getattr(img.header, "extensions", []):
        content = ext.get_content()
        if isinstance(content, str):
            content = content.encode()
        if ext.get_code() == _COMMENT_CODE and content == _NO_ORIENTATION_MARK:
            return True
    return False


def _load(path: Path) -> Any:
    try:
        return nib.load(str(path))
    except PermissionError as exc:
        raise MedsegIOError(f"Permission denied: cannot read {path}") from exc
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types on damaged headers
        raise MedsegIOError(
            f"Cannot read {path.name}: the file is damaged or is not a NIfTI image "
            f"({type(exc).__name__}: {exc})."
        ) from exc


def _scaled_voxels(dataobj: Any) -> np.ndarray:
    """Voxels with scl_slope/scl_inter applied, without nibabel's float64 promotion.

    An integer file with slope 1 and an integer intercept (CT stored with an offset) stays
    integer (int16 when the values fit, else int32); other scalings give float32.
    """
    slope = float(getattr(dataobj, "slope", 1.0))
    inter = float(getattr(dataobj, "inter", 0.0))
    if (slope, inter) == (1.0, 0.0) or not hasattr(dataobj, "get_unscaled"):
        return np.asanyarray(dataobj)
    raw = np.asanyarray(dataobj.get_unscaled())
    if raw.dtype.kind in "iu" and slope == 1.0 and inter == round(inter):
        wide = raw.astype(np.int64) + int(inter)
        lo, hi = (int(wide.min()), int(wide.max())) if wide.size else (0, 0)
        dtype = np.int16 if -32768 <= lo and hi <= 32767 else np.int32
        if not (np.iinfo(np.int32).min <= lo and hi <= np.iinfo(np.int32).max):
            dtype = np.int64
        return wide.astype(dtype)
    return (raw.astype(np.float32) * np.float32(slope) + np.float32(inter)).astype(np.float32)


def read_nifti(
    path: str | os.PathLike[str],
    channel: int | None = None,
    *,
    as_labels: bool | None = None,
) -> Volume:
    """Read a NIfTI-1/2 file into a :class:`Volume`.

    Parameters
    ----------
    path : path-like
        ``.nii`` or ``.nii.gz`` file, any orientation.
    channel : int, optional
        For 4D (or 5D) files: which channel / time point to load (0-based). Required when the
        file has more than one; a size-1 fourth axis is dropped silently.
    as_labels : bool, optional
        ``None`` detects label maps (see module docstring), ``True`` forces a cast to an integer
        dtype, ``False`` keeps the stored dtype.

    Returns
    -------
    Volume
        ``array`` ``(Z, Y, X)`` (or ``(Y, X)`` for a 2D file) = nibabel array transposed;
        ``spacing`` in mm (array order); ``affine = affine_from_nifti(img.affine)``;
        ``metadata`` with ``path``, ``format="nifti"``, ``warnings`` (list of str), ``is_labels``,
        ``nifti_dtype``, ``sform_code``, ``qform_code``, ``n_channels``, ``channel``, and
        ``orientation_unknown=True`` for a file we wrote from a volume without orientation.

    Raises
    ------
    MedsegIOError
        Missing/unreadable/damaged file, multi-channel file without ``channel``, bad channel,
        or ``as_labels=True`` on non-integer data.
    """
    p = check_readable(path)
    if p.is_dir():
        raise MedsegIOError(f"{p} is a folder, not a NIfTI file.")
    img = _load(p)
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise MedsegIOError(f"{p.name} is not a NIfTI image (nibabel read it as {type(img).__name__}).")
    _check_header_size(img, p)
    try:
        data = _scaled_voxels(img.dataobj)
    except PermissionError as exc:
        raise MedsegIOError(f"Permission denied: cannot read {p}") from exc
    except MemoryError as exc:
        raise MedsegIOError(f"{p.name} is too large for the memory of this computer.") from exc
    except Exception as exc:  # noqa: BLE001 - zlib/gzip/nibabel errors on damaged data
        raise MedsegIOError(
            f"Cannot read the voxels of {p.name}: the file is truncated or damaged "
            f"({type(exc).__name__}: {exc})."
        ) from exc
    rgb = False
    if data.dtype.names:  # RGB24 / RGBA32 NIfTI (structured voxels)
        if not set("RG") <= {n.upper()[:1] for n in data.dtype.names} or len(data.dtype.names) not in (3, 4):
            raise MedsegIOError(f"{p.name} holds voxels of an unsupported compound type "
                                f"{data.dtype}.")
        data = np.stack([data[n] for n in data.dtype.names[:3]], axis=-1).astype(np.uint8)
        rgb = True

    warn_list: list[str] = []
    n_channels = 1
    if rgb:
        spatial = data.shape[:-1]
        while len(spatial) > 2 and spatial[-1] == 1:
            spatial = spatial[:-1]
        if len(spatial) not in (2, 3):
            raise MedsegIOError(f"{p.name} is a colour image of shape {img.shape}; only 2D "
                                "and 3D colour images can be opened.")
        data = data.reshape(spatial + (3,))
        array = np.ascontiguousarray(np.moveaxis(data, -1, 0).T)  # (..., Y, X, 3) channels last
        return _finish_rgb(img, p, array)
    if data.ndim < 2:
        raise MedsegIOError(f"{p.name} has {data.ndim} dimension(s); an image needs 2 or 3.")
    if data.ndim > 3:
        spatial = data.shape[:3]
        n_channels = int(np.prod(data.shape[3:]))
        data = data.reshape(spatial + (n_channels,), order="F") if n_channels else data
        if n_channels == 1:
            data = data[..., 0]
        elif channel is None:
            raise MultipleChannelsError(
                f"{p.name} holds {n_channels} channels or time points (shape {img.shape}); "
                f"choose one with channel=0..{n_channels - 1}.", n_channels)
        else:
            if not 0 <= channel < n_channels:
                raise MedsegIOError(
                    f"channel {channel} does not exist in {p.name}, which has channels "
                    f"0..{n_channels - 1}."
                )
            data = data[..., channel]
    elif channel not in (None, 0):
        raise MedsegIOError(f"{p.name} has a single channel; channel={channel} does not exist.")

    array = np.ascontiguousarray(data.T)
    if array.dtype.kind == "f":
        finite = np.isfinite(array)
        n_bad = int(array.size - np.count_nonzero(finite))
        if n_bad and as_labels:
            raise MedsegIOError(f"{p.name}: {n_bad} label voxel(s) are NaN or infinite; a label "
                                "map must hold whole class values.")
        if n_bad == array.size:
            raise MedsegIOError(f"{p.name} holds no valid voxel: all {n_bad} are NaN or "
                                "infinite, so there is no image to show or segment.")
        if n_bad:
            fill = float(array[finite].min())
            array = np.where(finite, array, np.asarray(fill, dtype=array.dtype))
            msg = (
                f"{p.name}: {n_bad} voxel(s) were NaN or infinite and were replaced by {fill:g} "
                "(the lowest valid value)."
            )
            warn_list.append(msg)
            warnings.warn(msg, MedsegIOWarning, stacklevel=2)

    name = nifti_stem(p)
    is_labels = False
    if as_labels or (as_labels is None and looks_like_label_map(array, name)):
        array = _to_labels(array, p.name)
        is_labels = True

    affine, spacing, orientation_unknown = _geometry(img, p, array.ndim, warn_list)

    header = img.header
    metadata: dict[str, Any] = {
        "path": str(p),
        "format": "nifti",
        "nifti_version": 2 if isinstance(img, nib.Nifti2Image) else 1,
        "nifti_dtype": str(header.get_data_dtype()),
        "sform_code": int(header["sform_code"]),
        "qform_code": int(header["qform_code"]),
        "is_labels": is_labels,
        "n_channels": n_channels,
        "channel": channel if n_channels > 1 else None,
        "warnings": warn_list,
    }
    if orientation_unknown:
        metadata["orientation_unknown"] = True
    modality = "unknown" if is_labels else guess_modality(array)
    if modality != "unknown":
        metadata["modality_guessed"] = True
    return Volume(array, spacing, affine, modality, metadata, name)


def _check_header_size(img: Any, p: Path) -> None:
    """Refuse, from the header alone, a file whose voxels cannot fit in memory (gzip bombs,
    damaged dimensions) before nibabel allocates them."""
    shape = tuple(int(s) for s in img.shape)
    try:
        itemsize = max(int(img.header.get_data_dtype().itemsize), 4)  # float32 working copy
    except Exception:  # noqa: BLE001
        itemsize = 4
    if not p.name.lower().endswith(".gz"):
        needed = _bytes_needed(img)
        if p.stat().st_size < needed:
            raise MedsegIOError(
                f"{p.name} is truncated: its header describes {needed:,} bytes of image but the "
                f"file holds {p.stat().st_size:,}."
            )
    check_allocation(shape, itemsize, f"The image {p.name}", copies=2)


def _geometry(img: Any, p: Path, ndim: int, warn_list: list[str]
              ) -> tuple[np.ndarray, tuple[float, ...], bool]:
    """(Volume affine, spacing, orientation_unknown) from a NIfTI header, sane or repaired."""
    nifti_affine = _affine_from_extension(img)
    orientation_unknown = nifti_affine is not None and _has_no_orientation_mark(img)
    if nifti_affine is None:
        nifti_affine = np.asarray(img.affine, dtype=float)
    affine = affine_from_nifti(nifti_affine)
    spacing = spacing_from_affine(affine, ndim)
    broken = (not np.all(np.isfinite(affine))
              or abs(np.linalg.det(affine[:3, :3])) < 1e-12
              or any(s <= 0 or not np.isfinite(s) for s in spacing))
    if broken:
        zooms = tuple(float(z) for z in img.header.get_zooms()[:ndim])[::-1]
        spacing = tuple(z if np.isfinite(z) and z > 0 else 1.0 for z in zooms)
        spacing = spacing + (1.0,) * (ndim - len(spacing))
        affine = np.eye(4)
        affine[:3, :3] = np.diag((1.0,) * (3 - ndim) + spacing)
        orientation_unknown = True
        warn_list.append(f"{p.name}: the affine is degenerate (zero, NaN or singular); voxel "
                         "sizes taken from pixdim and the orientation is unknown.")
    if any(s > 100 or s < 1e-3 for s in spacing):
        raise MedsegIOError(
            f"{p.name} has implausible voxel sizes {tuple(round(s, 6) for s in spacing)} mm "
            "(expected 0.001-100 mm); the header is damaged."
        )
    return affine, spacing, orientation_unknown


def _finish_rgb(img: Any, p: Path, array: np.ndarray) -> Volume:
    warn_list: list[str] = []
    ndim = array.ndim - 1
    affine, spacing, orientation_unknown = _geometry(img, p, ndim, warn_list)
    header = img.header
    metadata: dict[str, Any] = {
        "path": str(p), "format": "nifti", "nifti_dtype": str(header.get_data_dtype()),
        "sform_code": int(header["sform_code"]), "qform_code": int(header["qform_code"]),
        "is_labels": False, "n_channels": 3, "channel": None, "warnings": warn_list,
    }
    if orientation_unknown:
        metadata["orientation_unknown"] = True
    return Volume(array, spacing, affine, "unknown", metadata, nifti_stem(p), rgb=True)


def nifti_header_summary(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Shape, spacing, affine and dtype of a NIfTI file from its header only (no voxels read).

    Returns
    -------
    dict
        ``shape`` (array order, spatial axes), ``n_channels``, ``spacing`` (mm, array order),
        ``affine`` (Volume affine, 4x4 nested list), ``dtype`` (stored dtype).
    """
    p = check_readable(path)
    img = _load(p)
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise MedsegIOError(f"{p.name} is not a NIfTI image.")
    shape = tuple(int(s) for s in img.shape)
    spatial = shape[:3]
    n_channels = int(np.prod(shape[3:])) if len(shape) > 3 else 1
    nifti_affine = _affine_from_extension(img)
    affine = affine_from_nifti(img.affine if nifti_affine is None else nifti_affine)
    ndim = len(spatial)
    return {
        "shape": list(spatial[::-1]),
        "n_channels": n_channels,
        "spacing": list(spacing_from_affine(affine, ndim)),
        "affine": affine.tolist(),
        "dtype": str(img.header.get_data_dtype()),
        "truncated": _looks_truncated(img, p),
    }


def _bytes_needed(img: Any) -> int:
    """Bytes of header and voxels the header describes (a file shorter is truncated)."""
    try:
        offset = max(int(img.header["vox_offset"]), 0)
    except Exception:  # noqa: BLE001 - a header without it: the voxels alone
        offset = 0
    return offset + int(np.prod(img.shape, dtype=np.int64)) * int(
        img.header.get_data_dtype().itemsize)


def _looks_truncated(img: Any, p: Path) -> str | None:
    """Why the file is shorter than its header says, else None, without keeping the voxels:
    the file size, or for gzip the uncompressed size its trailer records (streamed through
    when that differs, as after padding or damage)."""
    try:
        needed = _bytes_needed(img)
        size = p.stat().st_size
        if not p.name.lower().endswith(".gz"):
            held = size
        else:
            with open(p, "rb") as f:
                f.seek(max(size - 4, 0))
                if int.from_bytes(f.read(4), "little") == needed % 2**32:  # gzip ISIZE
                    return None
            import gzip
            import zlib

            held = 0
            try:
                with gzip.open(p, "rb") as f:
                    while chunk := f.read(1 << 20):
                        held += len(chunk)
            except (EOFError, gzip.BadGzipFile, zlib.error):
                return f"{p.name} is truncated or damaged: its compressed data ends early"
        if held < needed:
            return (f"{p.name} is truncated: its header describes {needed:,} bytes of header "
                    f"and image, the file holds {held:,}")
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return None


def _output_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path).expanduser()
    if not is_nifti_path(p):
        if p.suffix:
            raise MedsegIOError(
                f"Cannot save as {p.name}: NIfTI files must end in .nii or .nii.gz."
            )
        p = p.with_name(p.name + ".nii.gz")
    if not p.parent.is_dir():
        raise MedsegIOError(f"Cannot save {p.name}: folder {p.parent} does not exist.")
    return p


def _storable(array: np.ndarray) -> np.ndarray:
    a = np.asarray(array)
    if a.dtype.kind == "b":
        return a.astype(np.uint8)
    if a.dtype == np.float16:
        return a.astype(np.float32)
    if a.dtype.kind not in "uif":
        raise MedsegIOError(f"Cannot save voxels of type {a.dtype} to NIfTI.")
    return a


def write_nifti(volume: Volume, path: str | os.PathLike[str], *, labels: bool = False) -> Path:
    """Write ``volume`` to a NIfTI-1 file atomically, with its exact geometry.

    Parameters
    ----------
    volume : Volume
        ``(Z, Y, X)`` or ``(Y, X)`` voxels with spacing/affine.
    path : path-like
        Destination ending in ``.nii.gz`` or ``.nii`` (``.nii.gz`` is appended when the name has
        no suffix). The file is written to a temporary name in the same folder and then moved
        into place, so a crash never leaves half a file under ``path``.
    labels : bool
        Store as a label map: values must be integers; stored as uint8 (or uint16 ... if needed).

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    MedsegIOError
        Bad file name, missing folder, no permission, or non-integer labels.
    """
    out = _output_path(path)
    data = _to_labels(volume.array, volume.name) if labels else _storable(volume.array)
    nifti_affine = volume.nifti_affine()
    img = nib.Nifti1Image(np.asarray(data).T, nifti_affine)
    header = img.header
    header.set_data_dtype(data.dtype)
    meta = volume.metadata or {}
    default_code = 1 if meta.get("format") == "dicom" else 2
    sform_code = int(meta.get("sform_code") or default_code)
    qform_code = int(meta.get("qform_code") or sform_code)
    header.set_sform(nifti_affine, code=sform_code if 0 < sform_code <= 4 else default_code)
    try:
        header.set_qform(nifti_affine, code=qform_code if 0 < qform_code <= 4 else default_code)
    except Exception:  # noqa: BLE001 - a sheared affine has no quaternion form; sform rules
        header.set_qform(None, code=0)
    header.set_xyzt_units("mm", "sec")
    unknown = not volume.has_orientation
    if unknown or np.any(nifti_affine.astype(np.float32).astype(np.float64) != nifti_affine):
        content = _AFFINE_EXTENSION_PREFIX + json.dumps(nifti_affine.tolist()).encode()
        header.extensions.append(nib.nifti1.Nifti1Extension(_COMMENT_CODE, content))
    if unknown:
        header.extensions.append(nib.nifti1.Nifti1Extension(_COMMENT_CODE, _NO_ORIENTATION_MARK))

    try:
        with atomic_output(out) as tmp:
            nib.save(img, str(tmp))
    except PermissionError as exc:
        raise MedsegIOError(f"Permission denied: cannot write {out}") from exc
    except OSError as exc:
        raise MedsegIOError(f"Cannot write {out}: {exc.strerror or exc}") from exc
    return out


def save_labels(labels: np.ndarray, reference: Volume, path: str | os.PathLike[str]) -> Path:
    """Save a label array with the geometry (spacing, affine) of the image it was drawn on.

    Parameters
    ----------
    labels : np.ndarray
        Integer class indices, same shape as ``reference.array``.
    reference : Volume
        The image the labels belong to.
    path : path-like
        Destination ``.nii.gz`` / ``.nii``.

    Returns
    -------
    Path
        The file written (uint8, or uint16 when labels exceed 255).
    """
    labels = np.asarray(labels)
    if labels.shape != reference.shape:
        raise MedsegIOError(
            f"The labels (shape {labels.shape}) do not match the image "
            f"'{reference.name}' (shape {reference.shape}); they cannot share its geometry."
        )
    return write_nifti(reference.with_array(labels), path, labels=True)
