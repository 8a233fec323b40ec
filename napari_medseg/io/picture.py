"""Pictures (PNG, JPEG, TIFF, BMP, GIF) into :class:`Volume`, and 2D label maps back to PNG/TIFF.

Pure core: numpy, Pillow and tifffile (both napari dependencies); never napari or Qt.

Reading (:func:`read_picture`)
------------------------------
* Greyscale 8/16-bit pictures give a 2D ``(Y, X)`` Volume with the stored values (uint8 /
  uint16 kept exactly; 32-bit integer and float TIFFs as stored).
* RGB / RGBA pictures give ``Volume(array (Y, X, 3|4), rgb=True)``, channels last, in the
  file's channel order (8 or 16 bits per channel).
* 1-bit pictures (CHASE_DB1 masks) give uint8 arrays holding 0 and 1 (not rescaled to 255).
  Palette pictures with a grey palette (GIF masks, greyscale GIFs) give their grey levels;
  colour palettes with few entries in use (colour-coded label masks) give the palette
  *indices*; a colour palette using many entries (a GIF photograph) is converted to RGB(A).
* A multi-page TIFF of equally sized greyscale (or RGB) pages gives a 3D ``(Z, Y, X)`` Volume.
* Spacing (mm) comes from TIFF resolution tags (also ImageJ's unit and slice spacing) and from
  PNG pHYs / JPEG JFIF / BMP densities when they are physical and plausible; the screen
  defaults 72 and 96 dpi are not. ``metadata["spacing_known"]`` says which; unknown spacing
  is 1.0 per pixel.
* JPEG EXIF orientation is applied, so the array is the picture as a viewer shows it.
* Pictures carry no patient orientation (:attr:`Volume.has_orientation` is ``False``).

Writing (:func:`write_picture`, :func:`write_probability_png`)
-------------------------------------------------------------
Integer 2D label maps go to PNG (8-bit when the largest value is at most 255, else 16-bit) or
TIFF (any integer dtype), probabilities to a 16-bit PNG (0..1 -> 0..65535). Files are written
to a temporary file in the destination folder and moved into place, so a failure never leaves
a partial file.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from napari_medseg.io.atomic import atomic_write_bytes
from napari_medseg.io.errors import MedsegIOError, MedsegIOWarning, check_readable, one_line
from napari_medseg.io.volume import Volume

#: File suffixes read as pictures (compared case-insensitively); the one list every reader,
#: file dialog and output rule of the package takes its picture suffixes from. Netpbm
#: (``.ppm``/``.pgm``/``.pnm``) is how some fundus sets ship (STARE).
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".ppm", ".pgm",
                    ".pnm")
#: Suffixes :func:`write_picture` writes.
LABEL_PICTURE_SUFFIXES = (".png", ".tif", ".tiff")

_FORMAT_OF_SUFFIX = {
    ".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff", ".tiff": "tiff",
    ".bmp": "bmp", ".gif": "gif", ".ppm": "netpbm", ".pgm": "netpbm", ".pnm": "netpbm",
}
#: Densities that image software writes by default (screen resolutions): not a physical size.
_DEFAULT_DPI = (72.0, 96.0)
#: Plausible pixel sizes in mm (10 nm .. 10 mm); anything else is not a physical statement.
_PLAUSIBLE_MM = (1e-5, 10.0)
#: A palette picture using more entries than this is a picture, not a label mask.
_MAX_PALETTE_LABELS = 64
#: EXIF tag of the camera orientation (1 = upright).
_EXIF_ORIENTATION = 0x0112
_UNIT_MM = {
    "mm": 1.0, "millimeter": 1.0, "millimetre": 1.0, "cm": 10.0, "centimeter": 10.0,
    "m": 1000.0, "meter": 1000.0, "um": 1e-3, "µm": 1e-3, "\\u00b5m": 1e-3, "micron": 1e-3,
    "microns": 1e-3, "micrometer": 1e-3, "nm": 1e-6, "inch": 25.4, "in": 25.4,
}


def is_picture_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` ends in a picture suffix (.png .jpg .jpeg .tif .tiff .bmp .gif, any case).

    Examples
    --------
    >>> is_picture_path("fundus/Image_01L.JPG"), is_picture_path("ct.nii.gz")
    (True, False)
    """
    return Path(path).suffix.lower() in PICTURE_SUFFIXES


def picture_format(path: str | os.PathLike[str]) -> str:
    """``"png"``, ``"jpeg"``, ``"tiff"``, ``"bmp"``, ``"gif"`` or ``"netpbm"`` from the file
    suffix."""
    return _FORMAT_OF_SUFFIX.get(Path(path).suffix.lower(), Path(path).suffix.lower().lstrip("."))


def file_dialog_patterns(extra: tuple[str, ...] = ()) -> str:
    """Space-separated ``*.suffix`` patterns of ``extra`` and the picture suffixes, for a Qt
    file dialog's filter.

    Examples
    --------
    >>> file_dialog_patterns((".nii",)).split()[:3]
    ['*.nii', '*.png', '*.jpg']
    """
    return " ".join(f"*{s}" for s in (*extra, *PICTURE_SUFFIXES))


# --------------------------------------------------------------------------------- spacing


def _plausible(mm: float) -> bool:
    return bool(np.isfinite(mm)) and _PLAUSIBLE_MM[0] <= mm <= _PLAUSIBLE_MM[1]


def spacing_from_dpi(dpi: Any) -> tuple[float, float] | None:
    """Pixel spacing ``(y, x)`` in mm from a ``(x_dpi, y_dpi)`` density, if it is physical.

    ``None`` for a missing, zero, default (72 or 96 dpi) or implausible density.

    Examples
    --------
    >>> spacing_from_dpi((254.0, 254.0))
    (0.1, 0.1)
    >>> spacing_from_dpi((72, 72)) is None
    True
    """
    try:
        x_dpi, y_dpi = (float(v) for v in dpi)
    except (TypeError, ValueError):
        return None
    if not (x_dpi > 0 and y_dpi > 0):
        return None
    if any(abs(x_dpi - d) < 0.5 and abs(y_dpi - d) < 0.5 for d in _DEFAULT_DPI):
        return None
    y_mm, x_mm = 25.4 / y_dpi, 25.4 / x_dpi
    if not (_plausible(y_mm) and _plausible(x_mm)):
        return None
    return (round(y_mm, 9), round(x_mm, 9))


def _rational(tag: Any) -> float | None:
    if tag is None:
        return None
    value = tag.value
    try:
        if isinstance(value, tuple):
            return float(value[0]) / float(value[1]) if float(value[1]) else None
        return float(value)
    except (TypeError, ValueError, IndexError, ZeroDivisionError):
        return None


def _tiff_spacing(tf: Any, ndim: int) -> tuple[tuple[float, ...], bool, list[str]]:
    """Spacing (array order), whether it is known, and notes, from a TIFF's tags."""
    page = tf.pages[0]
    notes: list[str] = []
    x_res = _rational(page.tags.get("XResolution"))
    y_res = _rational(page.tags.get("YResolution"))
    unit_tag = page.tags.get("ResolutionUnit")
    unit = int(unit_tag.value) if unit_tag is not None else 2
    ij = tf.imagej_metadata or {}
    mm_per_unit = None
    if unit == 2:
        mm_per_unit = 25.4
    elif unit == 3:
        mm_per_unit = 10.0
    elif ij.get("unit"):
        mm_per_unit = _UNIT_MM.get(str(ij["unit"]).strip().lower())
    yx: tuple[float, float] | None = None
    if x_res and y_res and mm_per_unit:
        if unit == 2:
            yx = spacing_from_dpi((x_res, y_res))
        else:
            y_mm, x_mm = mm_per_unit / y_res, mm_per_unit / x_res
            if _plausible(y_mm) and _plausible(x_mm):
                yx = (round(y_mm, 9), round(x_mm, 9))
    if ndim == 2:
        return ((yx or (1.0, 1.0)), yx is not None, notes)
    z_mm = None
    if yx is not None and ij.get("spacing") and mm_per_unit and unit not in (2, 3):
        try:
            candidate = float(ij["spacing"]) * mm_per_unit
        except (TypeError, ValueError):
            candidate = float("nan")
        z_mm = round(candidate, 9) if _plausible(candidate) else None
    if yx is not None and z_mm is None:
        notes.append("The TIFF states the pixel size but not the slice spacing: 1 mm assumed.")
    return ((z_mm or 1.0,) + (yx or (1.0, 1.0)), yx is not None and z_mm is not None, notes)


# --------------------------------------------------------------------------------- reading


def _fail(p: Path, why: object) -> MedsegIOError:
    text = one_line(why).rstrip(".") or "the file is damaged"
    return MedsegIOError(f"Cannot read {p.name}: {text}.")


def _read_tiff(p: Path) -> tuple[np.ndarray, bool, tuple[float, ...], bool, dict[str, Any]]:
    """Array, rgb flag, spacing, spacing_known, extra metadata of a TIFF file."""
    import tifffile

    notes: list[str] = []
    with tifffile.TiffFile(p) as tf:
        if not tf.pages or not tf.series:
            raise _fail(p, "it holds no image")
        series = list(tf.series)
        first = series[0]
        page = tf.pages[0]
        photometric = int(page.photometric) if page.photometric is not None else 1
        axes = first.axes
        same = len(series) > 1 and all(
            s.shape == first.shape and s.dtype == first.dtype and s.axes == first.axes
            for s in series
        ) and not any(a in first.axes for a in "ZIQT")
        if same:
            data = np.stack([s.asarray() for s in series])
            axes = "Q" + axes
        else:
            if len(series) > 1:
                notes.append(
                    f"The TIFF holds {len(series)} images of different sizes or types; "
                    "only the first was read."
                )
            data = first.asarray()
        keep = [i for i, (a, n) in enumerate(zip(axes, data.shape, strict=True))
                if n > 1 or a in "YX"]
        data = data.reshape([data.shape[i] for i in keep])
        axes = "".join(axes[i] for i in keep)
        channel_axes = [i for i, a in enumerate(axes) if a in "SC"]
        stack_axes = [i for i, a in enumerate(axes) if a not in "YXSC"]
        if len(channel_axes) > 1 or len(stack_axes) > 1 or "Y" not in axes or "X" not in axes:
            raise _fail(p, f"its image has {data.ndim} dimensions ({axes}); napari-medseg reads "
                           "2D pictures and stacks of 2D pages")
        rgb = False
        if channel_axes:
            n = data.shape[channel_axes[0]]
            if n not in (3, 4) or photometric != tifffile.PHOTOMETRIC.RGB:
                raise _fail(p, f"it has {n} channels per pixel; napari-medseg reads greyscale, "
                               "RGB and RGBA pictures")
            data = np.moveaxis(data, channel_axes[0], -1)
            rgb = True
        if photometric == tifffile.PHOTOMETRIC.MINISWHITE and data.dtype.kind == "u" \
                and int(page.bitspersample) > 1:
            data = np.iinfo(data.dtype).max - data  # white-is-zero: invert so 0 is black
            notes.append("White-is-zero TIFF: values were inverted to black-is-zero.")
        spatial_ndim = data.ndim - (1 if rgb else 0)
        spacing, known, more = _tiff_spacing(tf, spatial_ndim)
        notes.extend(more)
        extra = {"pages": len(tf.pages), "bits": int(page.bitspersample)}
    if data.dtype.kind == "b":
        data = data.astype(np.uint8)
    if data.dtype.byteorder not in ("=", "|"):
        data = data.astype(data.dtype.newbyteorder("="))
    extra["warnings"] = notes
    return np.ascontiguousarray(data), rgb, spacing, known, extra


def _pillow_array(img: Any, notes: list[str]) -> tuple[np.ndarray, bool, bool]:
    """Array, rgb flag and palette-index flag of an opened (loaded) Pillow image.

    Arrays are writable copies (``np.asarray`` of a Pillow image is read-only, and a Labels
    layer must be paintable).
    """
    mode = img.mode
    if mode == "1":
        return np.asarray(img).astype(np.uint8), False, False
    if mode == "P":
        indices = np.array(img)
        used = np.unique(indices)
        palette = np.array(img.getpalette() or [], dtype=np.uint8).reshape(-1, 3)
        entries = palette[used.astype(np.intp) % len(palette)] if len(palette) else None
        grey = entries is not None and bool(np.all(entries == entries[:, :1]))
        transparent = "transparency" in img.info
        if grey and not transparent:
            # grey palette (GIF masks, greyscale GIFs): the grey levels, never bare indices,
            # whose order may put white first and invert a mask
            return np.array(img.convert("L")), False, False
        if used.size <= _MAX_PALETTE_LABELS:
            return indices, False, True  # a colour-coded label mask (VOC style): class indices
        img = img.convert("RGBA" if transparent else "RGB")
        return np.array(img), True, False
    if mode in ("L", "RGB", "RGBA"):
        return np.array(img), mode != "L", False
    if mode in ("LA", "La", "PA"):
        notes.append("The picture's transparency (alpha) channel was dropped.")
        if mode == "PA":
            return np.array(img.convert("RGB")), True, False
        return np.array(img.getchannel(0)), False, False
    if mode.startswith("I;16"):
        return np.asarray(img).astype(np.uint16), False, False
    if mode == "I":
        a = np.array(img)
        if a.size and a.min() >= 0 and a.max() <= 65535:
            a = a.astype(np.uint16)
        return a, False, False
    if mode == "F":
        return np.asarray(img).astype(np.float32), False, False
    if mode == "CMYK":
        notes.append("CMYK picture converted to RGB.")
    return np.array(img.convert("RGB")), True, False


def _read_pillow(p: Path) -> tuple[np.ndarray, bool, tuple[float, ...], bool, dict[str, Any]]:
    """Array, rgb flag, spacing, spacing_known, extra metadata via Pillow."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    notes: list[str] = []
    try:
        with Image.open(p) as img:
            fmt = (img.format or "").lower()
            frames = int(getattr(img, "n_frames", 1) or 1)
            img.load()
            if fmt == "jpeg" and img.getexif().get(_EXIF_ORIENTATION, 1) not in (0, 1):
                img = ImageOps.exif_transpose(img)
                notes.append("EXIF orientation applied (the picture is shown upright).")
            dpi = img.info.get("dpi")
            array, rgb, indices = _pillow_array(img, notes)
    except UnidentifiedImageError:
        raise _fail(p, "it is not a readable picture (damaged, or another kind of file "
                       "with a picture's name)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise _fail(p, f"the file is damaged or cut short ({one_line(exc).rstrip('.')})") \
            from exc
    if frames > 1:
        notes.append(f"The file holds {frames} frames; only the first was read.")
    yx = spacing_from_dpi(dpi) if dpi is not None else None
    extra: dict[str, Any] = {"pages": frames, "warnings": notes, "mode": img.mode,
                             "decoded_format": fmt}
    if indices:
        extra["palette_indices"] = True
    return np.ascontiguousarray(array), rgb, yx or (1.0, 1.0), yx is not None, extra


def read_picture(path: str | os.PathLike[str]) -> Volume:
    """Read a PNG, JPEG, TIFF, BMP or GIF picture into a :class:`Volume`.

    Parameters
    ----------
    path : path-like
        The picture file.

    Returns
    -------
    Volume
        2D ``(Y, X)`` greyscale / label array, colour ``(Y, X, 3|4)`` with ``rgb=True``, or
        3D ``(Z, Y, X)`` for a multi-page TIFF. ``spacing`` in mm (1.0 when the file does not
        state a physical pixel size), ``modality`` ``"unknown"``, ``name`` the file stem,
        ``metadata``: ``path``, ``format`` (``"png"``, ``"jpeg"``, ``"tiff"``, ``"bmp"``,
        ``"gif"``), ``picture`` (True), ``spacing_known``, ``pages``, ``warnings`` and,
        for palette masks, ``palette_indices``.

    Raises
    ------
    MedsegIOError
        Missing, empty, damaged or truncated file, not a picture, or an unsupported layout
        (2 or 5+ channels, more than one stack axis); the message names the file.

    Examples
    --------
    >>> import tempfile, PIL.Image
    >>> f = Path(tempfile.mkdtemp()) / "mask.png"
    >>> PIL.Image.fromarray(np.array([[0, 1], [2, 0]], np.uint8)).save(f)
    >>> v = read_picture(f)
    >>> v.shape, v.array.tolist(), v.metadata["format"]
    ((2, 2), [[0, 1], [2, 0]], 'png')
    """
    p = check_readable(path)
    if p.is_dir():
        raise MedsegIOError(f"{p} is a folder, not a picture file.")
    if p.stat().st_size == 0:
        raise MedsegIOError(f"Cannot read {p.name}: the file is empty.")
    fmt = picture_format(p)
    if fmt == "tiff":
        try:
            array, rgb, spacing, known, extra = _read_tiff(p)
        except MedsegIOError:
            raise
        except Exception as exc:  # noqa: BLE001 - tifffile raises many types; try Pillow
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # Pillow's own complaints about the file
                    array, rgb, spacing, known, extra = _read_pillow(p)
            except MedsegIOError:
                raise _fail(p, f"the TIFF file is damaged or cut short "
                               f"({one_line(exc).rstrip('.')})") from exc
    else:
        array, rgb, spacing, known, extra = _read_pillow(p)
    if array.size == 0:
        raise MedsegIOError(f"Cannot read {p.name}: it has no pixels.")
    notes = list(extra.pop("warnings", []))
    for note in notes:
        warnings.warn(f"{p.name}: {note}", MedsegIOWarning, stacklevel=2)
    metadata: dict[str, Any] = {
        "path": str(p),
        "format": fmt,
        "picture": True,
        "spacing_known": bool(known),
        "warnings": notes,
        **extra,
    }
    if not known:
        metadata["spacing_note"] = "The picture does not state its pixel size: 1 per pixel."
    return Volume(array, spacing=tuple(spacing), modality="unknown", metadata=metadata,
                  name=p.name[: -len(p.suffix)] if p.suffix else p.name, rgb=rgb)


def describe_picture(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Summary of a picture for ``napari-medseg info`` (decodes the picture: pictures are small).

    Returns
    -------
    dict
        ``path``, ``format``, ``shape`` (spatial, array order), ``channels`` (values per pixel:
        1, 3 or 4), ``rgb``, ``n_channels`` (model input channels: 3 for colour, else 1),
        ``dtype``, ``spacing`` (mm), ``spacing_known``, ``affine``, ``modality``
        (``"unknown"``), ``pages``, ``value_range`` ([min, max]), ``series`` ([]) and
        ``warnings``.

    Raises
    ------
    MedsegIOError
        As :func:`read_picture`.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MedsegIOWarning)
        v = read_picture(path)
    a = v.array
    notes = list(v.metadata.get("warnings", []))
    if not v.metadata["spacing_known"]:
        notes.append("Pixel size not stated in the file: spacing 1 per pixel.")
    return {
        "path": v.metadata["path"],
        "format": v.metadata["format"],
        "picture": True,
        "shape": list(v.shape),
        "channels": int(a.shape[-1]) if v.rgb else 1,
        "rgb": bool(v.rgb),
        "n_channels": v.n_channels,
        "dtype": str(a.dtype),
        "spacing": list(v.spacing),
        "spacing_known": bool(v.metadata["spacing_known"]),
        "affine": v.affine.tolist(),
        "modality": "unknown",
        "pages": int(v.metadata.get("pages", 1)),
        "value_range": [a.min().item(), a.max().item()],
        "series": [],
        "warnings": notes,
    }


# --------------------------------------------------------------------------------- writing


def _output_path(path: str | os.PathLike[str], allowed: tuple[str, ...]) -> Path:
    p = Path(path).expanduser()
    if p.suffix.lower() not in allowed:
        raise MedsegIOError(
            f"Cannot save as {p.name}: label pictures must end in "
            f"{', '.join(allowed)} (save 3D labels as .nii.gz)."
        )
    if not p.parent.is_dir():
        raise MedsegIOError(f"Cannot save {p.name}: folder {p.parent} does not exist.")
    return p


def _atomic_write(out: Path, data: bytes) -> Path:
    try:
        atomic_write_bytes(out, data)
    except PermissionError as exc:
        raise MedsegIOError(f"Permission denied: cannot write {out}") from exc
    except OSError as exc:
        raise MedsegIOError(f"Cannot write {out}: {exc.strerror or exc}") from exc
    return out


def _label_array(data: Any, name: str) -> np.ndarray:
    """Validated 2D non-negative integer array for a label picture."""
    if isinstance(data, Volume):
        if data.rgb:
            raise MedsegIOError(f"Cannot save '{name}' as a label picture: it is a colour image.")
        data = data.array
    a = np.asarray(data)
    if a.ndim != 2:
        raise MedsegIOError(
            f"Cannot save '{name}' as a picture: it has shape {a.shape}; PNG/TIFF labels must "
            "be 2D (save 3D labels as .nii.gz)."
        )
    if a.dtype.kind == "b":
        return a.astype(np.uint8)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise MedsegIOError(
                f"Cannot save '{name}' as labels: it holds non-integer values "
                "(save probabilities with write_probability_png)."
            )
        if a.size and a.max() > np.iinfo(np.uint32).max:
            raise MedsegIOError(f"Cannot save '{name}' as labels: values are too large.")
        a = a.astype(np.uint16 if a.size and a.max() > 255 else np.uint8) \
            if not a.size or a.max() <= 65535 else a.astype(np.uint32)
    if a.dtype.kind not in "ui":
        raise MedsegIOError(f"Cannot save '{name}' as labels: values of type {a.dtype}.")
    if a.size and a.min() < 0:
        raise MedsegIOError(
            f"Cannot save '{name}' as labels: it holds negative values (smallest {a.min()})."
        )
    return a


def _known_spacing(data: Any) -> tuple[float, float] | None:
    if not isinstance(data, Volume) or data.ndim != 2:
        return None
    meta = data.metadata or {}
    known = meta.get("spacing_known")
    if known is None:
        known = meta.get("format") in ("nifti", "dicom")
    return tuple(data.spacing) if known else None  # type: ignore[return-value]


def write_picture(data: np.ndarray | Volume, path: str | os.PathLike[str]) -> Path:
    """Write a 2D integer label map as PNG or TIFF, exactly and atomically.

    Parameters
    ----------
    data : np.ndarray or Volume
        ``(Y, X)`` label values (non-negative integers; bool and integer-valued floats are
        accepted). A Volume whose pixel size is known (``metadata["spacing_known"]``, or a
        NIfTI/DICOM source) also writes its spacing (PNG pHYs / TIFF resolution in cm).
    path : path-like
        ``.png`` (8-bit when the largest value is <= 255, else 16-bit; values up to 65535)
        or ``.tif`` / ``.tiff`` (the array's integer dtype, zlib-compressed).

    Returns
    -------
    Path
        The file written; :func:`read_picture` gives the same values and shape back.

    Raises
    ------
    MedsegIOError
        Not 2D, negative or non-integer values, values too large for PNG, bad suffix,
        missing folder or no permission. Nothing is written then.

    Examples
    --------
    >>> import tempfile
    >>> f = write_picture(np.array([[0, 3], [300, 0]]), Path(tempfile.mkdtemp()) / "l.png")
    >>> read_picture(f).array.tolist()
    [[0, 3], [300, 0]]
    """
    out = _output_path(path, LABEL_PICTURE_SUFFIXES)
    name = data.name if isinstance(data, Volume) else out.stem
    a = _label_array(data, name)
    spacing = _known_spacing(data)
    buf = io.BytesIO()
    if out.suffix.lower() == ".png":
        top = int(a.max()) if a.size else 0
        if top > 65535:
            raise MedsegIOError(
                f"Cannot save '{name}' as PNG: label values go up to {top} (PNG holds at most "
                "65535); save it as .tif."
            )
        _png_bytes(a.astype(np.uint8 if top <= 255 else np.uint16), buf, spacing)
    else:
        import tifffile

        kwargs: dict[str, Any] = {}
        if spacing is not None:
            kwargs = {"resolution": (10.0 / spacing[1], 10.0 / spacing[0]),
                      "resolutionunit": "CENTIMETER"}
        tifffile.imwrite(buf, a, photometric="minisblack", compression="zlib",
                         compressionargs={"level": 3}, **kwargs)
    return _atomic_write(out, buf.getvalue())


def _png_bytes(a: np.ndarray, buf: io.BytesIO, spacing: tuple[float, float] | None,
               level: int = 3) -> None:
    """PNG of ``a`` into ``buf``; zlib ``level`` 3 is 2x faster than 6 at a few % more bytes."""
    from PIL import Image

    img = Image.fromarray(a)
    kwargs: dict[str, Any] = {"compress_level": level}
    if spacing is not None:
        kwargs["dpi"] = (25.4 / spacing[1], 25.4 / spacing[0])
    img.save(buf, format="PNG", **kwargs)


def write_probability_png(probability: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write a 2D probability map (0..1) as a 16-bit greyscale PNG (0..65535), atomically.

    Parameters
    ----------
    probability : np.ndarray
        ``(Y, X)`` floats in [0, 1] (values within 1e-6 outside are clipped).
    path : path-like
        Destination ``.png``.

    Returns
    -------
    Path
        The file written; ``read_picture(path).array / 65535`` gives the probabilities back
        to within 1 / 131070.

    Raises
    ------
    MedsegIOError
        Not 2D, NaN or values outside [0, 1], bad suffix or folder.
    """
    out = _output_path(path, (".png",))
    p = np.asarray(probability, dtype=np.float64)
    if p.ndim != 2:
        raise MedsegIOError(
            f"Cannot save {out.name}: a probability picture must be 2D, got shape {p.shape}."
        )
    if p.size and (not np.all(np.isfinite(p)) or p.min() < -1e-6 or p.max() > 1 + 1e-6):
        raise MedsegIOError(
            f"Cannot save {out.name}: probabilities must lie between 0 and 1 (found "
            f"{np.min(p):.3g} .. {np.max(p):.3g})."
        )
    q = np.rint(np.clip(p, 0.0, 1.0) * 65535.0).astype(np.uint16)
    buf = io.BytesIO()
    _png_bytes(q, buf, None, level=1)  # noisy 16-bit data: compression barely pays
    return _atomic_write(out, buf.getvalue())
