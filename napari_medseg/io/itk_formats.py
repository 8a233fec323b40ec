"""NRRD (``.nrrd``, ``.nhdr``, Slicer's ``.seg.nrrd``) and MetaImage (``.mha``, ``.mhd``) in and out.

Library choice: SimpleITK. One well-kept wheel reads and writes both families (detached headers
and raw/gzip payloads included), converts any NRRD ``space`` (RAS, LPS, ...) into ITK's LPS frame,
keeps free-form header fields (Slicer's ``Segment0_Name`` ...) as metadata, and is the reference
the DICOM benchmarks compare against, so it is installed anyway. pynrrd would cover NRRD only.

Geometry. ITK stores origin, spacing and a direction matrix in LPS with index order ``(x, y, z)``:
``lps = origin + D @ diag(spacing) @ (i, j, k)``. A :class:`Volume` affine maps array order
``(z, y, x)`` to RAS (see :mod:`napari_medseg.io.volume`), so the conversion is a column reversal
and a sign flip of the first two rows, both exact: a write/read round trip keeps the affine to
floating-point precision (ITK writes 17 significant digits).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from napari_medseg.io.errors import MedsegIOError, check_readable, one_line
from napari_medseg.io.nifti import label_dtype, looks_like_label_map
from napari_medseg.io.volume import Volume, spacing_from_affine

#: File name endings of the formats this module handles (lower case).
ITK_SUFFIXES = (".seg.nrrd", ".nrrd", ".nhdr", ".mha", ".mhd")
_LPS = np.diag([-1.0, -1.0, 1.0])
_LABEL_HINTS = ("label", "seg", "mask", "annot", "truth")
#: Header field this module writes into label maps, so they read back as labels.
CONTENT_FIELD = "napari_medseg_content"


def is_itk_path(path: str | os.PathLike[str]) -> bool:
    """``True`` when the name ends in ``.nrrd``, ``.nhdr``, ``.mha`` or ``.mhd`` (any case)."""
    return str(path).lower().endswith(ITK_SUFFIXES)


def itk_format(path: str | os.PathLike[str]) -> str:
    """``"nrrd"`` for ``.nrrd``/``.nhdr``, ``"metaimage"`` for ``.mha``/``.mhd``."""
    return "metaimage" if str(path).lower().endswith((".mha", ".mhd")) else "nrrd"


def _stem(path: Path) -> str:
    name = path.name
    for suffix in ITK_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _sitk():
    import SimpleITK as sitk

    return sitk


def _header_keys(obj: Any) -> dict[str, str]:
    out = {}
    for key in obj.GetMetaDataKeys():
        try:
            out[key] = str(obj.GetMetaData(key))
        except RuntimeError:  # pragma: no cover - binary metadata
            continue
    return out


def _affine_from_itk(origin, spacing, direction, dim: int) -> np.ndarray:
    """Volume affine (array order) from ITK origin/spacing/direction (index order, LPS).

    3D: to RAS. 2D: an ITK picture's physical plane has no patient frame, so its ``(x, y)``
    world is kept as the Volume's in-plane world, axes reversed to array order ``(y, x)``
    (padded index ``(0, y, x)``; a plain picture gets the placeholder ``diag(1, sy, sx)``).
    """
    d = np.asarray(direction, dtype=float).reshape(dim, dim)
    m = d * np.asarray(spacing, dtype=float)[None, :]
    affine = np.eye(4)
    if dim == 2:
        affine[1:3, 1:3] = m[::-1, ::-1]
        affine[1:3, 3] = np.asarray(origin, dtype=float)[::-1]
        return affine
    affine[:3, :3] = _LPS @ m[:, ::-1]
    affine[:3, 3] = _LPS @ np.asarray(origin, dtype=float)
    return affine


def _itk_geometry(volume: Volume) -> tuple[tuple, tuple, tuple, int]:
    """(origin, spacing, direction, dim) in ITK's LPS, index order, for ``volume``."""
    affine = np.asarray(volume.affine, dtype=float)
    dim = volume.ndim
    if dim == 2:  # inverse of _affine_from_itk's 2D rule
        cols = affine[1:3, 1:3][::-1, ::-1]
        origin = affine[1:3, 3][::-1]
    else:
        cols = (_LPS @ affine[:3, :3])[:, ::-1]  # columns (x, y, z)
        origin = _LPS @ affine[:3, 3]
    spacing = np.linalg.norm(cols, axis=0)
    if np.any(spacing <= 0) or not np.all(np.isfinite(spacing)):
        raise MedsegIOError(f"Cannot save '{volume.name}': its affine is degenerate.")
    direction = cols / spacing[None, :]
    return (tuple(float(v) for v in origin), tuple(float(s) for s in spacing),
            tuple(float(v) for v in direction.ravel()), dim)


def _slicer_segments(header: dict[str, str]) -> tuple[dict[int, str], dict[int, list[int]]]:
    """Class names and colours (RGB 0-255) of a Slicer ``.seg.nrrd`` header, by label value."""
    names: dict[int, str] = {}
    colours: dict[int, list[int]] = {}
    i = 0
    while f"Segment{i}_Name" in header or f"Segment{i}_ID" in header:
        name = header.get(f"Segment{i}_Name") or header.get(f"Segment{i}_ID") or f"segment {i}"
        try:
            value = int(header.get(f"Segment{i}_LabelValue", i + 1))
        except ValueError:
            value = i + 1
        names[value] = name
        try:
            rgb = [float(v) for v in header.get(f"Segment{i}_Color", "").split()]
            if len(rgb) == 3:  # Slicer stores 0..1
                colours[value] = [int(round(min(max(c, 0.0), 1.0) * 255)) for c in rgb]
        except ValueError:
            pass
        i += 1
    return names, colours


def _describe_reader(p: Path):
    sitk = _sitk()
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise MedsegIOError(
            f"{p.name} is not a readable {itk_format(p).upper()} file (corrupt or truncated "
            f"header): {one_line(exc).split('Description:')[-1].strip()[:160]}"
        ) from exc
    return reader


def _check_dims(p: Path, dim: int, components: int, size: tuple[int, ...]) -> None:
    if dim not in (2, 3):
        raise MedsegIOError(
            f"{p.name} is a {dim}D image (size {'x'.join(map(str, size))}); napari-medseg reads "
            "2D and 3D images only (a Slicer segmentation with overlapping segments is 4D: "
            "export it from Slicer as a labelmap)."
        )
    if components not in (1, 3, 4):
        raise MedsegIOError(
            f"{p.name} has {components} values per voxel; napari-medseg reads greyscale, RGB "
            "or RGBA images."
        )


def describe_itk_image(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Header-only summary of an NRRD/MetaImage file, as ``napari-medseg info`` prints it.

    Returns
    -------
    dict
        ``path``, ``format`` (``"nrrd"``/``"metaimage"``), ``shape`` (array order ``(Z, Y, X)``),
        ``spacing`` (mm, array order), ``affine`` (4x4 nested list, array index -> RAS mm),
        ``dtype``, ``n_components``, ``label_names`` and ``warnings``.
    """
    p = check_readable(path)
    reader = _describe_reader(p)
    dim = reader.GetDimension()
    size = tuple(int(s) for s in reader.GetSize())
    comps = int(reader.GetNumberOfComponents())
    _check_dims(p, dim, comps, size)
    affine = _affine_from_itk(reader.GetOrigin(), reader.GetSpacing(), reader.GetDirection(), dim)
    names, _ = _slicer_segments(_header_keys(reader))
    sitk = _sitk()
    return {
        "path": str(p),
        "format": itk_format(p),
        "shape": list(size[::-1]),
        "spacing": [float(s) for s in reader.GetSpacing()][::-1],
        "affine": affine.tolist(),
        "modality": "unknown",
        "dtype": sitk.GetPixelIDValueAsString(reader.GetPixelID()),
        "n_components": comps,
        "label_names": {str(k): v for k, v in names.items()},
        "series": [],
        "warnings": [],
    }


def read_itk_image(path: str | os.PathLike[str], *, as_labels: bool | None = None) -> Volume:
    """Read an NRRD (``.nrrd``, ``.nhdr``, ``.seg.nrrd``) or MetaImage (``.mha``, ``.mhd``) file.

    Parameters
    ----------
    path : path-like
        The file (a detached header names its data file, which must sit beside it).
    as_labels : bool, optional
        ``True`` forces a label map (integer voxels), ``False`` an image; ``None`` guesses from
        the voxels, the file name and Slicer segment fields.

    Returns
    -------
    Volume
        ``(Z, Y, X)`` (or ``(Y, X)``) array, spacing in mm (array order), RAS affine. ``metadata``
        has ``path``, ``format`` (``"nrrd"`` or ``"metaimage"``), ``orientation_known`` (True
        for 3D: these formats state the patient frame; False for 2D pictures), ``is_labels``, ``header`` (free-form
        fields) and, for a Slicer segmentation, ``label_names`` ``{value: name}`` and
        ``label_colours`` ``{value: [r, g, b]}`` (0-255), keys ``str(value)``.

    Raises
    ------
    MedsegIOError
        Missing, unreadable or corrupt file, a 4D image, or more than 4 values per voxel.
    """
    p = check_readable(path)
    reader = _describe_reader(p)
    dim = reader.GetDimension()
    size = tuple(int(s) for s in reader.GetSize())
    comps = int(reader.GetNumberOfComponents())
    _check_dims(p, dim, comps, size)
    sitk = _sitk()
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise MedsegIOError(
            f"The voxels of {p.name} cannot be read (corrupt, truncated or missing data file): "
            f"{one_line(exc).split('Description:')[-1].strip()[:160]}"
        ) from exc
    array = sitk.GetArrayFromImage(image)  # (z, y, x[, c])
    header = _header_keys(reader)
    names, colours = _slicer_segments(header)
    affine = _affine_from_itk(image.GetOrigin(), image.GetSpacing(), image.GetDirection(), dim)
    rgb = comps in (3, 4)
    if as_labels is None:
        marked = header.get(CONTENT_FIELD) == "labels"
        as_labels = (marked or bool(names)) or (
            not rgb and looks_like_label_map(array, p.name)
            and any(h in p.name.lower() for h in _LABEL_HINTS))
    if as_labels:
        if rgb:
            raise MedsegIOError(f"{p.name} is a colour image, not a label map.")
        array = _integer_labels(array, p.name)
    metadata: dict[str, Any] = {
        "path": str(p),
        "format": itk_format(p),
        "orientation_known": dim == 3,
        "is_labels": bool(as_labels),
        "itk_pixel_type": sitk.GetPixelIDValueAsString(image.GetPixelID()),
        "header": {k: v for k, v in header.items() if len(v) < 512 and k != CONTENT_FIELD},
        "warnings": [],
    }
    if names:
        metadata["label_names"] = {str(k): v for k, v in names.items()}
        metadata["label_colours"] = {str(k): v for k, v in colours.items()}
    spacing = spacing_from_affine(affine, dim)
    return Volume(np.ascontiguousarray(array), spacing, affine, "unknown", metadata, _stem(p),
                  rgb=rgb)


def _integer_labels(array: np.ndarray, where: str) -> np.ndarray:
    a = np.asarray(array)
    if a.dtype.kind == "b":
        return a.astype(np.uint8)
    if a.dtype.kind == "f" and (not np.all(np.isfinite(a)) or not np.all(a == np.round(a))):
        raise MedsegIOError(
            f"{where} contains non-integer values, so it is not a label map "
            "(labels must be whole numbers 0, 1, 2, ...)."
        )
    if a.dtype.kind not in "uifb":
        raise MedsegIOError(f"{where} has data type {a.dtype}, which cannot hold labels.")
    return a.astype(label_dtype(a), copy=False)


def _output_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path).expanduser()
    if not is_itk_path(p):
        raise MedsegIOError(
            f"Cannot save as {p.name}: NRRD files end in .nrrd/.nhdr, MetaImage files in .mha/.mhd."
        )
    if not p.parent.is_dir():
        raise MedsegIOError(f"Cannot save {p.name}: folder {p.parent} does not exist.")
    return p


def write_itk_image(
    volume: Volume,
    path: str | os.PathLike[str],
    *,
    labels: bool | None = None,
    label_names: dict[int, str] | None = None,
    label_colours: dict[int, tuple[float, float, float]] | None = None,
    compress: bool = True,
) -> Path:
    """Write ``volume`` as NRRD or MetaImage (chosen by the suffix) with its exact geometry.

    Parameters
    ----------
    volume : Volume
        ``(Z, Y, X)`` or ``(Y, X)`` voxels (RGB/RGBA pictures as vector voxels).
    path : path-like
        ``.nrrd``/``.seg.nrrd``/``.nhdr`` (NRRD) or ``.mha``/``.mhd`` (MetaImage; ``.mhd`` and
        ``.nhdr`` also write a data file beside the header). A single file is written under a
        temporary name and moved into place, so a crash never leaves half a file.
    labels : bool, optional
        Store as a label map (integers, smallest unsigned type that fits, marked so it reads
        back as labels). ``None``: when ``volume.metadata["is_labels"]`` says so or
        ``label_names`` is given.
    label_names, label_colours : dict, optional
        Class table ``{value: name}`` / ``{value: (r, g, b)}`` (0..1 or 0..255); an NRRD label
        map then carries Slicer's segmentation fields, so 3D Slicer shows named segments.
    compress : bool
        gzip the voxels (NRRD ``encoding: gzip``, MetaImage ``CompressedData``).

    Returns
    -------
    Path
        The header file written.

    Raises
    ------
    MedsegIOError
        Bad name or folder, non-integer labels, a non-axial 2D plane, or a write failure.
    """
    out = _output_path(path)
    sitk = _sitk()
    meta = volume.metadata or {}
    if labels is None:
        labels = (bool(meta.get("is_labels")) or bool(label_names)) and not volume.rgb
    data = np.asarray(volume.array)
    if labels:
        data = _integer_labels(data, volume.name)
    elif data.dtype.kind == "b":
        data = data.astype(np.uint8)
    elif data.dtype == np.float16:
        data = data.astype(np.float32)
    elif data.dtype.kind not in "uif":
        raise MedsegIOError(f"Cannot save voxels of type {data.dtype} as {out.name}.")
    origin, spacing, direction, _ = _itk_geometry(volume)
    image = sitk.GetImageFromArray(np.ascontiguousarray(data), isVector=volume.rgb)
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    if labels:
        image.SetMetaData(CONTENT_FIELD, "labels")
    if labels and label_names and itk_format(out) == "nrrd":
        for key, value in _slicer_fields(data, label_names, label_colours or {}).items():
            image.SetMetaData(key, value)
    detached = out.name.lower().endswith((".nhdr", ".mhd"))
    target = out if detached else out.with_name(f".{_stem(out)}-{uuid.uuid4().hex[:8]}.tmp"
                                                f"{out.suffix}")
    try:
        sitk.WriteImage(image, str(target), useCompression=compress)
        if not detached:
            os.replace(target, out)
    except RuntimeError as exc:
        raise MedsegIOError(f"Cannot write {out}: {one_line(exc)[-200:]}") from exc
    except PermissionError as exc:
        raise MedsegIOError(f"Permission denied: cannot write {out}") from exc
    finally:
        if not detached and target.exists():
            target.unlink()
    return out


def _slicer_fields(data: np.ndarray, names: dict[int, str],
                   colours: dict[int, tuple[float, float, float]]) -> dict[str, str]:
    """Slicer ``.seg.nrrd`` header fields for a single-layer label map."""
    fields = {
        "Segmentation_MasterRepresentation": "Binary labelmap",
        "Segmentation_ContainedRepresentationNames": "Binary labelmap|",
        "Segmentation_ReferenceImageExtentOffset": "0 0 0",
    }
    extent = " ".join(f"0 {n - 1}" for n in data.shape[::-1])
    names = {int(k): str(v) for k, v in names.items()}
    colours = {int(k): tuple(v) for k, v in colours.items()}
    for i, value in enumerate(sorted(v for v in names if v != 0)):
        rgb = colours.get(value) or (0.5, 0.5, 0.5)
        rgb = [float(c) / 255.0 if max(rgb) > 1.0 else float(c) for c in rgb]
        fields.update({
            f"Segment{i}_ID": f"Segment_{value}",
            f"Segment{i}_Name": names[value],
            f"Segment{i}_NameAutoGenerated": "0",
            f"Segment{i}_Color": " ".join(f"{c:.6g}" for c in rgb),
            f"Segment{i}_ColorAutoGenerated": "0",
            f"Segment{i}_LabelValue": str(value),
            f"Segment{i}_Layer": "0",
            f"Segment{i}_Extent": extent,
            f"Segment{i}_Tags": "|",
        })
    return fields


def save_labels_itk(labels: np.ndarray, reference: Volume, path: str | os.PathLike[str],
                    label_names: dict[int, str] | None = None,
                    label_colours: dict[int, tuple[float, float, float]] | None = None) -> Path:
    """Save a label array as NRRD/MHA with the geometry of the image it was drawn on."""
    labels = np.asarray(labels)
    if labels.shape != reference.shape:
        raise MedsegIOError(
            f"The labels (shape {labels.shape}) do not match the image '{reference.name}' "
            f"(shape {reference.shape}); they cannot share its geometry."
        )
    return write_itk_image(reference.with_array(labels), path, labels=True,
                           label_names=label_names, label_colours=label_colours)
