"""DICOM pixel data: decoders, decoding, MONOCHROME1, colour and rescale into one array.

Step 5 of reading a folder (the overview is in :mod:`napari_medseg.io.dicom`), once the
geometry has fixed the slice order: RescaleSlope/Intercept are applied (CT in HU). The result
is the stored integer dtype when there is no rescale, int16 when an integer rescale fits,
float32 otherwise. MONOCHROME1 images (X-ray: low values bright) are inverted first, exactly
(``2**BitsStored - 1 - v``; ``-1 - v`` when signed), so high values are bright; the VOI
window (WindowCenter/Width) is kept in the metadata, moved with the inversion. Colour
images become ``Volume(..., rgb=True)`` with RGB channels last: pydicom 3 converts
YBR_FULL / YBR_FULL_422 (and JPEG 2000 colour) to RGB while decoding, PALETTE COLOR goes
through its lookup table (``pydicom.pixels.apply_color_lut``). Tilted series are shifted
in-plane here by the amounts :mod:`napari_medseg.io.dicom_geometry` computed.

Compressed transfer syntaxes need a decoder (``pip install "napari-medseg[dicom-codecs]"``);
without one a :class:`~napari_medseg.io.errors.MissingDecoderError` names that extra.

Speed: each file's dataset comes from the header scan (pixel data deferred, no second parse);
uncompressed pixel data is decoded as a read-only view and copied once, plane by plane, into
the preallocated volume; the rescale runs slice by slice, in place where the item size allows.
JPEG 2000 greyscale slices are decoded by imagecodecs (OpenJPEG; it releases the GIL) on a few
threads at once when it is installed (part of the ``dicom-codecs`` extra), and by pydicom's
decoders otherwise or when a codestream does not match its header (pydicom then applies its
corrections).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from napari_medseg.io.dicom_geometry import _Geometry
from napari_medseg.io.dicom_headers import _float, _functional, _Header, _text, has_dicom_preamble
from napari_medseg.io.dicom_series import DicomSeriesInfo, _is_colour, _Series
from napari_medseg.io.errors import DICOM_CODECS_EXTRA, MedsegIOError, MissingDecoderError


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


#: JPEG 2000 transfer syntaxes (lossless, lossy, and the multi-component "Part 2" variants)
#: decoded on threads by imagecodecs when it is installed.
_J2K_SYNTAXES = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
                 "1.2.840.10008.1.2.4.92", "1.2.840.10008.1.2.4.93")


def _imagecodecs_j2k() -> Any | None:
    """imagecodecs' ``jpeg2k_decode`` when imagecodecs is installed with JPEG 2000, else None."""
    try:
        import imagecodecs
    except ImportError:
        return None
    return imagecodecs.jpeg2k_decode if getattr(imagecodecs.JPEG2K, "available", False) else None


def _decode_j2k(path: str, description: str, ds: Dataset | None, jpeg2k_decode: Any
                ) -> tuple[Dataset, np.ndarray]:
    """:func:`_decode` of one single-frame greyscale JPEG 2000 file with imagecodecs (thread
    safe, GIL released); pydicom's decoders whenever the codestream and the header disagree
    (size, signedness, bit depth), so the values are always those pydicom would give."""
    from pydicom.encaps import generate_frames

    if ds is None:
        return _decode(path, description, ds)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frame = next(generate_frames(ds.PixelData, number_of_frames=1))
        pixels = np.asarray(jpeg2k_decode(frame))
    except Exception:  # noqa: BLE001 - pydicom's decoders report what is wrong
        return _decode(path, description, ds)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    bits = int(ds.get("BitsAllocated", 16) or 16)
    if (pixels.shape != (int(ds.Rows), int(ds.Columns)) or pixels.dtype.kind != "ui"[signed]
            or pixels.dtype.itemsize * 8 > bits or bits not in (8, 16, 32)):
        return _decode(path, description, ds)
    del ds.PixelData
    return ds, pixels.astype(f"{'ui'[signed]}{bits // 8}", copy=False)


def _decoded_slices(paths: Sequence[str], description: str, parsed: dict[str, Dataset],
                    threaded_j2k: bool) -> Iterator[tuple[Dataset, np.ndarray]]:
    """``(dataset, pixels)`` of each path in order: one after another, or JPEG 2000 on threads
    (a few slices ahead, so that memory stays that of a few planes)."""
    jpeg2k_decode = _imagecodecs_j2k() if threaded_j2k and len(paths) > 1 else None
    if jpeg2k_decode is None:
        for path in paths:
            yield _decode(path, description, parsed.get(path))
        return
    try:
        workers = min(len(os.sched_getaffinity(0)), 8)
    except AttributeError:  # not Linux
        workers = min(os.cpu_count() or 1, 8)
    with ThreadPoolExecutor(max(workers, 1), thread_name_prefix="medseg-j2k") as pool:
        ahead = 2 * max(workers, 1)
        pending = [pool.submit(_decode_j2k, p, description, parsed.get(p), jpeg2k_decode)
                   for p in paths[:ahead]]
        for i in range(len(paths)):
            done = pending.pop(0).result()
            if i + ahead < len(paths):
                p = paths[i + ahead]
                pending.append(pool.submit(_decode_j2k, p, description, parsed.get(p),
                                           jpeg2k_decode))
            yield done


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
    # single-frame files in slice order (the usual series): decoded ahead, on threads for JPEG 2000
    decoded = _decoded_slices([s.path for s in geometry.slices], label, parsed, threaded_j2k=(
        not colour and all(h.transfer_syntax_uid in _J2K_SYNTAXES for h in series.headers))) \
        if all(s.frame is None for s in geometry.slices) else None
    for i, s in enumerate(geometry.slices):
        if s.path not in cache:
            cache = {s.path: next(decoded) if decoded is not None
                     else _decode(s.path, label, parsed.get(s.path))}
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
