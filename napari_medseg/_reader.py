"""npe2 reader: NIfTI files, DICOM files and folders, pictures -> napari layers with geometry.

``get_reader`` only looks at the path (extension, folder, DICOM magic bytes); all reading
happens in the returned function, which calls :mod:`napari_medseg.io`. Pictures (PNG, JPEG,
TIFF, BMP, GIF) open as an RGB Image layer when in colour, as a Labels layer when they are a
label mask (:func:`is_label_picture`, conservative: a photograph never opens as Labels), else
as a greyscale Image layer; their scale is the pixel size (1 when unknown), translate 0. Read errors become a
one-line napari notification and no layer, never a traceback (napari's "null layer" sentinel
``[(None,)]`` tells it that the reader handled the path).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_medseg.io.picture import PICTURE_SUFFIXES
from napari_medseg.labels import classes_for_labels_file

LayerData = tuple[Any, ...]
ReaderFunction = Callable[[Any], list[LayerData]]

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")  # NIfTI, NRRD, MetaImage
DICOM_SUFFIXES = (".dcm", ".ima", ".dicom")
#: File-name hints that a picture is a label mask (``Image_01L_1stHO.png``: CHASE_DB1 masks).
PICTURE_LABEL_HINTS = ("mask", "label", "seg", "manual", "_1stho", "_2ndho", "annot",
                       "truth", "_gt")
#: Distinct values a greyscale picture may hold and still be a label mask, without / with a
#: name or folder hint.
_PICTURE_LABEL_VALUES = (16, 64)
#: Share of background (0) pixels a mask without a name hint must have.
_PICTURE_BACKGROUND_SHARE = 0.5
#: Folder names whose NIfTI files are label maps (MSD / nnU-Net layout).
LABEL_FOLDERS = ("labelstr", "labelsts", "labels", "masks", "segmentations")
#: How many folder entries get_reader inspects before deciding (keeps it fast).
_MAX_PROBE = 64


def _has_dicom_magic(path: Path) -> bool:
    """``True`` when ``path`` has the DICOM preamble magic ``DICM`` at byte 128."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _is_candidate_file(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(VOLUME_SUFFIXES + DICOM_SUFFIXES)


def _folder_is_candidate(folder: Path) -> bool:
    """A folder we should read: empty (to say so), or holding DICOM / NIfTI files near the top."""
    try:
        probed = 0
        any_entry = False
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                any_entry = True
                p = Path(root) / name
                if _is_candidate_file(p) or _has_dicom_magic(p):
                    return True
                probed += 1
                if probed >= _MAX_PROBE:
                    return False
        return not any_entry
    except OSError:
        return True  # let the reader report the permission problem


def _is_picture_file(path: Path) -> bool:
    return path.name.lower().endswith(PICTURE_SUFFIXES)


def get_reader(path: str | Sequence[str]) -> ReaderFunction | None:
    """Return a reader for NIfTI / DICOM / picture paths, else ``None`` (fast: no pixels read).

    Pictures are recognised by suffix (:data:`~napari_medseg.io.picture.PICTURE_SUFFIXES`, any case).

    Parameters
    ----------
    path : str or list of str
        A file, a folder, or several of them.
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths:
        return None
    for p in map(Path, paths):
        if p.is_dir():
            if not _folder_is_candidate(p):
                return None
        elif not (_is_candidate_file(p) or _is_picture_file(p)
                  or (p.is_file() and _has_dicom_magic(p))):
            return None
    return read_paths


def _picture_name_hint(path: str | os.PathLike[str] | None, volume: Any) -> bool:
    p = Path(path if path is not None else volume.metadata.get("path") or volume.name)
    name = p.name.lower()
    return p.parent.name.lower() in LABEL_FOLDERS or any(h in name for h in PICTURE_LABEL_HINTS)


def _value_counts(array: np.ndarray, limit: int) -> dict[int, int] | None:
    """Pixel count per value of an integer picture, or ``None`` when it has > ``limit`` values."""
    flat = array.reshape(-1)
    if flat.dtype.kind == "b":
        flat = flat.view(np.uint8)
    if flat.dtype.itemsize <= 2 and flat.dtype.kind == "u":
        counts = np.bincount(flat, minlength=1)
        values = np.flatnonzero(counts)
        if values.size > limit:
            return None
        return {int(v): int(counts[v]) for v in values}
    values, counts = np.unique(flat, return_counts=True)
    if values.size > limit:
        return None
    return {int(v): int(c) for v, c in zip(values, counts, strict=True)}


def is_label_picture(volume: Any, path: str | os.PathLike[str] | None = None) -> bool:
    """Whether a picture (PNG, TIFF ...) should open as a Labels layer rather than an Image.

    Conservative, so a photograph never opens as Labels: the picture must be greyscale with
    non-negative whole-number values, and either hold at most 64 distinct values and have a
    mask-like name or folder (``*mask*``, ``*label*``, ``*seg*``, ``*manual*``,
    ``*_1stHO*``, ``labelsTr/`` ...), or hold at most 16 distinct values with mostly (>= 50 %)
    background 0. Colour pictures and JPEGs (lossy: no exact label values) never are.
    """
    array = np.asarray(volume.array)
    if getattr(volume, "rgb", False) or array.ndim != 2 or array.dtype.kind not in "uib":
        return False
    if volume.metadata.get("format") == "jpeg":
        return False  # lossy: compression noise, never exact label values
    if array.size == 0 or (array.dtype.kind == "i" and array.min() < 0):
        return False
    hinted = _picture_name_hint(path, volume)
    step = max(1, array.size // 250_000)  # a quick look first, exact counts only if it passes
    limit = _PICTURE_LABEL_VALUES[1 if hinted else 0]
    sample = _value_counts(array.reshape(-1)[::step], limit)
    if sample is None:
        return False
    counts = _value_counts(array, limit)
    if counts is None:
        return False
    if hinted:
        return True
    return counts.get(0, 0) >= _PICTURE_BACKGROUND_SHARE * array.size and len(counts) > 1


def picture_mask_values(array: np.ndarray) -> tuple[np.ndarray, dict[str, int] | None]:
    """Map a mask stored as grey levels to label values 1, 2, ...; label pictures stay as
    they are.

    A 0/255 (or 16-bit 0/65535) mask becomes 0/1. A mask whose brightest value is white
    (255 / 65535: never a label value here, 255 marks unannotated voxels) with a few grey
    levels below it (``{0, 128, 255}``) holds one class per grey level: they become 1, 2, ...
    from dark to bright.

    Returns
    -------
    (np.ndarray, dict or None)
        The label array and the value mapping applied (``{"128": 1, "255": 2}``), or ``None``.
    """
    array = np.asarray(array)
    if array.dtype.kind not in "ui":
        return array, None
    counts = _value_counts(array, _PICTURE_LABEL_VALUES[1]) or {}
    values = sorted(v for v in counts if v != 0)
    for top in (255, 65535):
        if values and values[-1] == top and (len(values) == 1 or values[0] > 1):
            mapping = {v: i + 1 for i, v in enumerate(values)}
            out = np.zeros(array.shape, np.uint8 if len(values) < 255 else np.uint16)
            for v, label in mapping.items():
                out[array == v] = label
            return out, {str(v): label for v, label in mapping.items()}
    return array, None


def _mask_as_labels(volume: Any) -> Any:
    """A 0/255 picture mask as label 1, noted in ``metadata`` (others unchanged)."""
    mapped, value_map = picture_mask_values(np.asarray(volume.array))
    if value_map is None:
        return volume
    metadata = dict(volume.metadata)
    metadata["label_values_mapped"] = value_map
    stored = ", ".join(value_map)
    labels = ", ".join(str(v) for v in value_map.values())
    metadata["warnings"] = [*metadata.get("warnings", []),
                            f"Mask values {stored} were read as label{'s' if len(value_map) > 1 else ''} "
                            f"{labels}."]
    out = volume.with_array(mapped)
    out.metadata = metadata
    return out


def _rgb_layer_data(volume: Any) -> LayerData:
    """An RGB Image layer tuple for a colour Volume (channels last)."""
    from napari_medseg.ui._layers import layer_kwargs_for_volume

    kwargs = layer_kwargs_for_volume(volume)
    kwargs["rgb"] = True
    array = volume.array
    if array.dtype == np.uint8:
        kwargs["contrast_limits"] = [0.0, 255.0]  # stated: napari need not scan the pixels
    else:  # 16-bit / float colour: stretch to the values present
        sample = array[..., :3].reshape(-1)[:: max(1, array.size // 1_000_000)]
        lo, hi = (float(sample.min()), float(sample.max())) if sample.size else (0.0, 0.0)
        if hi > lo:
            kwargs["contrast_limits"] = [lo, hi]
    return (array, kwargs, "image")


def is_label_volume(volume: Any, path: str | os.PathLike[str] | None = None) -> bool:
    """Whether ``volume`` should open as a Labels layer.

    Label maps: a whole-number file in a ``labelsTr``-like folder or named ``*label*`` /
    ``*seg*``; else the NIfTI reader's ``metadata["is_labels"]`` guess; else integer data of
    unknown modality with at most 16 distinct values.
    """
    array = np.asarray(volume.array)
    whole_numbers = array.dtype.kind in "uib"
    if path is not None and whole_numbers:
        p = Path(path)
        name = p.name.lower()
        if p.parent.name.lower() in LABEL_FOLDERS or "label" in name or "seg" in name:
            return True
    if volume.metadata.get("is_labels") is not None:
        return bool(volume.metadata["is_labels"])
    if not whole_numbers or volume.modality in ("CT", "MR", "PT"):
        return False
    sample = array.reshape(-1)[:: max(1, array.size // 200_000)]
    return sample.min(initial=0) >= 0 and np.unique(sample).size <= 16


def opens_as_labels(volume: Any, path: str | os.PathLike[str] | None = None) -> bool:
    """Whether this reader opens ``volume`` as a Labels layer (a label map, not an image):
    :func:`is_label_picture` for a 2D picture, else :func:`is_label_volume`."""
    if getattr(volume, "rgb", False):
        return False
    if volume.metadata.get("picture") and volume.ndim == 2:
        return is_label_picture(volume, path)
    return is_label_volume(volume, path)


def _warn_if_not_overlaid(volume: Any) -> None:
    """Tell the user when a permuted acquisition cannot overlay axial images (see ``Volume``)."""
    if not volume.has_orientation or volume.napari_geometry()["aligned"]:
        return
    from napari.utils.notifications import show_warning

    show_warning(
        f"'{volume.name}' was acquired in sagittal or coronal slices: it is shown in its own "
        "voxel order and does not overlay axial images of the same patient."
    )


def volume_to_layer_data(volume: Any, path: str | os.PathLike[str] | None = None) -> LayerData:
    """napari layer-data tuple ``(data, kwargs, layer_type)`` for a :class:`Volume`.

    The layer is placed in the patient world with the radiological display convention of
    :meth:`~napari_medseg.io.volume.Volume.napari_geometry`.
    """
    from napari_medseg.events import IGNORE_LABEL
    from napari_medseg.ui._layers import image_layer_kwargs, labels_layer_kwargs

    _warn_if_not_overlaid(volume)

    if path is not None and (volume.modality == "unknown"
                             or volume.metadata.get("modality_guessed")):
        from napari_medseg.dataset.msd import modality_of_dataset_image

        stated = modality_of_dataset_image(path)  # an MSD image: dataset.json says "MRI"
        if stated is not None:
            volume.modality = stated
            volume.metadata.pop("modality_guessed", None)
    if getattr(volume, "rgb", False):
        return _rgb_layer_data(volume)
    as_labels = opens_as_labels(volume, path)
    if as_labels and volume.metadata.get("picture") and volume.ndim == 2:
        volume = _mask_as_labels(volume)
    if as_labels:
        array = np.asarray(volume.array)
        if array.dtype.kind == "b" or (array.dtype.kind == "f"):
            array = array.astype(np.uint16 if array.max(initial=0) > 255 else np.uint8)
        classes = classes_for_labels_file(path) if path is not None else None
        annotated: list[int] | None = None
        if array.ndim == 3 and array.dtype.kind in "ui" and (array == IGNORE_LABEL).any():
            # sparse annotation saved for training: whole slices of IGNORE_LABEL were not annotated
            ignored = (array == IGNORE_LABEL).reshape(array.shape[0], -1).all(axis=1)
            if ignored.any():
                annotated = [int(i) for i in np.flatnonzero(~ignored)]
                array = array.copy()
                array[ignored] = 0
        name = volume.name
        if not any(tag in name.lower() for tag in ("label", "seg", "mask")):
            name = f"{name} labels"
        volume = volume.with_array(array, name=name)
        kwargs = labels_layer_kwargs(volume, classes=classes)
        if annotated is not None:
            kwargs["metadata"]["medseg"]["annotated_slices"] = annotated
        return (array, kwargs, "labels")
    kwargs = image_layer_kwargs(volume)
    return (volume.array, kwargs, "image")


def read_path(path: str | os.PathLike[str]) -> list[LayerData]:
    """Read one file or folder into layer-data tuples (raises on bad input).

    A DICOM folder with several image series gives one image layer per series.
    """
    from napari_medseg.io import read_volume, read_volumes

    p = Path(path)
    if p.is_dir():
        volumes = read_volumes(p)
        if not volumes:
            from napari_medseg.io import MedsegIOError

            raise MedsegIOError(f"No images found in folder {p}")
        return [volume_to_layer_data(v) for v in volumes]
    return [volume_to_layer_data(read_volume(p), p)]


def read_paths(path: str | Sequence[str]) -> list[LayerData]:
    """npe2 reader function: layer data for every readable path; errors become notifications."""
    from napari_medseg.ui._notify import notify_errors

    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    layers: list[LayerData] = []
    for p in paths:
        with notify_errors(f"Open {Path(p).name}"):
            layers.extend(read_path(p))
    return layers or [(None,)]


def _nifti_stem(name: str) -> str:
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def find_matching_labels(image_path: str | os.PathLike[str]) -> Path | None:
    """The labels file that belongs to an image file, if one lies next to it.

    Looks for (in order) ``imagesTr/x.nii.gz`` -> ``labelsTr/x.nii.gz`` (also ``imagesTs`` and
    nnU-Net channel suffixes ``x_0000.nii.gz`` -> ``x.nii.gz``), then ``x_labels``, ``x_label``,
    ``x_seg``, ``x_segmentation``, ``x_mask`` with ``.nii.gz`` or ``.nii`` in the same folder.
    For a picture (``x.png``, ``x.jpg`` ...) the label files are pictures (``.png``, ``.tif``,
    ``.tiff``, ``.gif``, ``.bmp``, the image's own suffix first; never JPEG) and a sibling
    folder ``masks/`` / ``labels/`` ... of an ``images/`` folder also counts, with the same
    stem or ``x_mask``, ``x_1stHO`` (CHASE_DB1: ``images/Image_01L.jpg`` ->
    ``masks/Image_01L_1stHO.png``).

    Returns
    -------
    Path or None
    """
    p = Path(image_path)
    if not p.is_file():
        return None
    picture = _is_picture_file(p)
    if picture:
        stem = p.name[: -len(p.suffix)]
        own = [p.suffix] if p.suffix.lower() not in (".jpg", ".jpeg") else []
        suffixes = own + [x for x in (".png", ".tif", ".tiff", ".gif", ".bmp")
                          if x != p.suffix.lower()]
    else:
        stem = _nifti_stem(p.name)
        suffixes = [".nii.gz", ".nii"]
    stems = [stem]
    if len(stem) > 5 and stem[-5] == "_" and stem[-4:].isdigit():
        stems.append(stem[:-5])  # nnU-Net channel suffix
    candidates: list[Path] = []
    parent = p.parent.name
    if parent.lower().startswith("images"):
        labels_dir = p.parent.parent / ("labels" + parent[len("images"):])
        for s in stems:
            candidates += [labels_dir / f"{s}{x}" for x in suffixes]
    for s in stems:
        for tag in ("labels", "label", "seg", "segmentation", "mask"):
            for sep in ("_", "-", "."):
                candidates += [p.parent / f"{s}{sep}{tag}{x}" for x in suffixes]
    if picture and parent.lower() in ("images", "image", "imgs", "photos"):
        for folder in LABEL_FOLDERS + ("label", "mask"):
            for tag in ("", "_mask", "_label", "_labels", "_seg", "_1stHO", "_manual1"):
                candidates += [p.parent.parent / folder / f"{stem}{tag}{x}" for x in suffixes]
    for c in candidates:
        if c.is_file() and c.resolve() != p.resolve():
            return c
    return None


