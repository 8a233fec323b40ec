"""MSD / nnU-Net dataset layout and in-memory training cases.

Layout (Medical Segmentation Decathlon, also nnU-Net v1/v2)::

    DATASET_DIR/
      dataset.json          {"name", "modality" | "channel_names", "labels", "training": [...],
                             "file_ending": ".nii.gz" | ".png" | ".tif" | ".jpg" ...}
      imagesTr/CASE.nii.gz  (or CASE_0000.nii.gz, CASE_0001.nii.gz ... one file per channel)
      labelsTr/CASE.nii.gz
      masksTr/CASE.png      optional: region-of-interest / field-of-view mask per case
      splits_final.json     optional: [{"train": [...], "val": [...]}] (:func:`read_splits`)

nnU-Net v2 natural-image datasets (``"file_ending"`` ``.png``, ``.tif``/``.tiff``, ``.jpg``/``.jpeg``
or ``.bmp``) work as they are: a colour picture in one file (``imagesTr/CASE_0000.png`` or
``imagesTr/CASE.png``) is three channels (red, green, blue; ``channel_names``
``{"0": "R", "1": "G", "2": "B"}``), or each channel is a greyscale file ``CASE_0000.png``,
``CASE_0001.png`` .... Label files are found by case name with any picture suffix (PNG or TIFF
labels next to JPEG images). A picture label file holds label values as they are; a mask
stored as 0/255, 0/1 (or 0 and any single value) is read as the one foreground class when
``dataset.json`` names exactly one; any other set of values is a :class:`DatasetError` naming the
case and the values found. A greyscale mask saved as RGB (three equal channels) is read as grey.

A training case is a :class:`Case`: the image :class:`~napari_medseg.io.volume.Volume` (plus optional
extra channels), an integer label array on the same grid, and optionally a boolean
``annotated`` mask and a boolean ``roi`` mask. Voxels whose label is
:data:`~napari_medseg.events.IGNORE_LABEL` (255) or whose ``annotated`` value is False were not
annotated by anyone: they add nothing to the loss (sparse annotation, nnU-Net's "ignore label").
Voxels outside ``roi`` (a fixed field of view, e.g. the circular aperture of a fundus camera, read
from ``masksTr/``) add nothing to the loss either, and metrics leave them out too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_medseg.events import IGNORE_LABEL
from napari_medseg.io.volume import Volume
from napari_medseg.labels import PALETTE, class_colour, hex_to_rgb

#: Default display colours (RGB 0-255) for label values 1, 2, ... (0 = background is transparent).
#: Class colours (RGB 0-255) for label values 1, 2, ...: the package's one palette.
DEFAULT_LABEL_COLOURS = [hex_to_rgb(c) for c in PALETTE]

NIFTI_SUFFIXES = (".nii.gz", ".nii")
#: Picture files an nnU-Net v2 natural-image dataset may hold (``dataset.json`` ``file_ending``).
PICTURE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
#: Label and region-of-interest masks may also be GIF (DRIVE ships its masks so).
MASK_SUFFIXES = (*PICTURE_SUFFIXES, ".gif")
#: ``file_ending`` values ``dataset.json`` may give.
FILE_ENDINGS = (*NIFTI_SUFFIXES, *PICTURE_SUFFIXES)
#: Folder of per-case region-of-interest (field-of-view) masks: ``masksTr/CASE.png`` (any picture
#: or NIfTI suffix); non-zero = inside. Pixels outside are left out of the loss and the metrics.
ROI_FOLDER = "masksTr"


class DatasetError(ValueError):
    """A dataset folder or in-memory case list cannot be used for training."""


@dataclass
class Case:
    """One training (or validation) case held in memory.

    Parameters
    ----------
    case_id : str
        Identifier (file name without extension for MSD cases).
    image : Volume
        The image, ``(Z, Y, X)`` or ``(Y, X)``, with spacing (mm) and affine.
    labels : np.ndarray or None
        Integer labels on the image grid; ``IGNORE_LABEL`` (255) marks unannotated voxels.
        None for unlabelled cases (inference only).
    annotated : np.ndarray or None
        Optional boolean mask, same shape: False = nobody annotated this voxel (e.g. only a few
        slices were drawn). Combined with ``labels`` by :meth:`training_labels`.
    extra_channels : tuple of Volume
        Further input channels (e.g. T2 next to T1) on the same grid.
    roi : np.ndarray or None
        Optional boolean region-of-interest mask, same shape: True = inside the field of view
        (e.g. the circular aperture of a fundus camera, ``masksTr/CASE.png``). Voxels outside
        are excluded from the loss (:meth:`training_labels`) and must be excluded from metrics
        (:meth:`metric_mask`). Unlike ``annotated`` it is not a gap in the annotation but a
        part of the picture that holds no anatomy; predictions outside it are meaningless.
    """

    case_id: str
    image: Volume
    labels: np.ndarray | None = None
    annotated: np.ndarray | None = None
    extra_channels: tuple[Volume, ...] = field(default_factory=tuple)
    roi: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.image, Volume):
            self.image = Volume(np.asarray(self.image))
        if self.image.rgb or any(ch.rgb for ch in self.extra_channels):
            # A colour picture is three input channels (Volume.channel_volumes).
            split = [c for v in (self.image, *self.extra_channels) for c in v.channel_volumes()]
            self.image, self.extra_channels = split[0], tuple(split[1:])
        shape = self.image.shape
        for extra in self.extra_channels:
            if extra.shape != shape:
                raise DatasetError(
                    f"Case {self.case_id}: channel shape {extra.shape} differs from image shape {shape}."
                )
        if self.labels is not None:
            labels = np.asarray(self.labels)
            if labels.shape != shape:
                raise DatasetError(
                    f"Case {self.case_id}: label shape {labels.shape} differs from image shape {shape}."
                )
            if labels.dtype.kind == "f":
                if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
                    raise DatasetError(f"Case {self.case_id}: labels must be whole numbers.")
            if labels.size and (labels.min() < 0 or labels.max() > IGNORE_LABEL):
                raise DatasetError(
                    f"Case {self.case_id}: label values must lie in 0..{IGNORE_LABEL}, "
                    f"got {labels.min()}..{labels.max()}."
                )
            self.labels = labels.astype(np.uint8, copy=False)
        if self.annotated is not None:
            annotated = np.asarray(self.annotated, dtype=bool)
            if annotated.shape != shape:
                raise DatasetError(
                    f"Case {self.case_id}: annotated-voxel mask shape {annotated.shape} differs "
                    f"from image shape {shape}."
                )
            self.annotated = annotated
        if self.roi is not None:
            roi = np.asarray(self.roi, dtype=bool)
            if roi.shape != shape:
                raise DatasetError(
                    f"Case {self.case_id}: region-of-interest mask shape {roi.shape} differs "
                    f"from image shape {shape}."
                )
            if not roi.any():
                raise DatasetError(f"Case {self.case_id}: the region-of-interest mask is empty.")
            self.roi = roi

    @property
    def channels(self) -> list[Volume]:
        """All input channels, the image first."""
        return [self.image, *self.extra_channels]

    def training_labels(self) -> np.ndarray:
        """Labels with every unannotated voxel and every voxel outside ``roi`` set to
        ``IGNORE_LABEL`` (uint8, image shape): what the loss sees."""
        out = self.stored_labels()
        if self.roi is None:
            return out
        out = out.copy() if out is self.labels else out
        out[~self.roi] = IGNORE_LABEL
        return out

    def stored_labels(self) -> np.ndarray:
        """Labels as a label file stores them: unannotated voxels ``IGNORE_LABEL``, the
        region of interest not applied (it is kept in its own mask file)."""
        if self.labels is None:
            raise DatasetError(f"Case {self.case_id} has no labels.")
        if self.annotated is None:
            return self.labels
        out = self.labels.copy()
        out[~self.annotated] = IGNORE_LABEL
        return out

    def metric_mask(self) -> np.ndarray | None:
        """Boolean mask of the voxels metrics count (the ``roi``), or None for all voxels."""
        return self.roi

    def annotated_fraction(self) -> float:
        """Fraction of the voxels inside the region of interest (all voxels when there is none)
        that carry a real annotation (0..1)."""
        valid = self.training_labels() != IGNORE_LABEL
        if self.roi is None:
            return float(np.mean(valid))
        return float(valid[self.roi].mean())


@dataclass
class Dataset:
    """A set of labelled cases plus what the labels mean.

    Attributes
    ----------
    cases : list of Case
    label_names : dict
        ``{label value: name}``, background (0) included.
    modality : str
        Modality of the first channel (``"CT"``, ``"MR"`` ...), used to choose normalisation.
    channel_names : list of str
    name : str
        Task name (model cards record it so a model from another task is recognised).
    root : str or None
        Folder the dataset was read from.
    """

    cases: list[Case]
    label_names: dict[int, str]
    modality: str = "unknown"
    channel_names: list[str] = field(default_factory=lambda: ["image"])
    name: str = "dataset"
    root: str | None = None

    @property
    def case_ids(self) -> list[str]:
        return [c.case_id for c in self.cases]

    @property
    def num_classes(self) -> int:
        """Number of output classes = highest label value + 1."""
        return max(self.label_names) + 1

    def subset(self, case_ids: Sequence[str]) -> Dataset:
        """The cases with these ids (same order as given)."""
        by_id = {c.case_id: c for c in self.cases}
        missing = [cid for cid in case_ids if cid not in by_id]
        if missing:
            raise DatasetError(f"Unknown case ids: {', '.join(missing[:5])}")
        return Dataset([by_id[c] for c in case_ids], dict(self.label_names), self.modality,
                       list(self.channel_names), self.name, self.root)


# --------------------------------------------------------------------------------------------
# file helpers (napari_medseg.io does the reading and writing)


def _strip_nifti_suffix(name: str) -> str:
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _split_suffix(name: str, suffixes: Sequence[str] = (*NIFTI_SUFFIXES, *MASK_SUFFIXES)
                  ) -> tuple[str, str]:
    """``("case", ".png")`` for ``case.png`` (suffixes compared case-insensitively); ``(name, "")``
    when ``name`` ends in none of ``suffixes``."""
    lower = name.lower()
    for suffix in suffixes:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], suffix
    return name, ""


def _is_picture(path: str | os.PathLike) -> bool:
    return Path(path).name.lower().endswith(MASK_SUFFIXES)


def read_image(path: str | os.PathLike) -> Volume:
    """Read an image file (NIfTI, DICOM, PNG/JPEG/TIFF/BMP) into a :class:`Volume`.

    A colour picture gives ``Volume(rgb=True)``; :class:`Case` splits it into its red, green
    and blue channels.
    """
    from napari_medseg.io import read_volume

    return read_volume(path)


def _grey_picture(array: np.ndarray, what: str) -> np.ndarray:
    """The grey plane of a colour (RGB/RGBA) array whose colour channels are equal."""
    rgb = array[..., :3]
    if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
        raise DatasetError(
            f"{what} is a colour picture (its red, green and blue differ); a label or mask "
            "file must be a greyscale picture of label values."
        )
    return np.ascontiguousarray(rgb[..., 0])


def _value_list(values: Sequence[int]) -> str:
    shown = ", ".join(str(v) for v in values[:8])
    return "{" + shown + (", ..." if len(values) > 8 else "") + "}"


def picture_label_values(labels: np.ndarray, label_names: Mapping[int, str],
                         case_id: str = "") -> np.ndarray:
    """Label values of a mask picture, as ``dataset.json``'s label table means them (uint8).

    Parameters
    ----------
    labels : np.ndarray
        The stored values, ``(Y, X)`` (or ``(Z, Y, X)``); bool and integer-valued floats are
        accepted.
    label_names : mapping
        ``{value: name}`` of the dataset, background (0) included.
    case_id : str
        Named in error messages.

    Returns
    -------
    np.ndarray
        uint8 labels. Values that the table names (plus ``IGNORE_LABEL`` = 255 next to named
        values, sparse annotation) are kept as they are; a mask holding 0 and one other value
        (0/255, 0/1, 0/128 ...) or a single value becomes background / the foreground class when
        the table names exactly one foreground class.

    Raises
    ------
    DatasetError
        Any other set of values (e.g. ``{0, 128, 255}`` with one foreground class, or values
        the table does not name), non-integer values; the message names the case and the
        values found.

    Examples
    --------
    >>> picture_label_values(np.array([[0, 255], [255, 0]]), {0: "background", 1: "vessel"})
    array([[0, 1],
           [1, 0]], dtype=uint8)
    """
    what = f"Case {case_id}" if case_id else "The label picture"
    a = np.asarray(labels)
    if a.dtype.kind == "b":
        a = a.astype(np.uint8)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise DatasetError(f"{what}: the label file holds non-integer values.")
        a = a.astype(np.int64)
    if a.dtype.kind not in "ui":
        raise DatasetError(f"{what}: label values of type {a.dtype} are not understood.")
    values = [int(v) for v in np.unique(a)]
    named = set(int(k) for k in label_names) | {0}
    foreground = sorted(named - {0})
    found = set(values)
    if found <= named:
        return a.astype(np.uint8, copy=False)
    others = sorted(found - {0})
    if len(foreground) == 1 and len(others) == 1:
        return np.where(a == others[0], foreground[0], 0).astype(np.uint8)
    if IGNORE_LABEL in found and (found - {IGNORE_LABEL}) <= named:
        return a.astype(np.uint8, copy=False)  # IGNORE_LABEL = not annotated (sparse)
    table = ", ".join(f"{v} = {label_names.get(v, 'background')}" for v in sorted(named))
    hint = ("; a one-class mask must hold 0 and one other value" if len(foreground) == 1
            else "")
    raise DatasetError(
        f"{what}: the label file holds the values {_value_list(values)}, but dataset.json "
        f"names {table}{hint}."
    )


def read_label_image(path: str | os.PathLike, label_names: Mapping[int, str] | None = None,
                     case_id: str = "") -> Volume:
    """Read a label map (integer-valued float files are cast to integers).

    A label picture (PNG, TIFF, BMP, GIF, ...) stored as RGB with three equal channels is read
    as grey. With ``label_names`` (a dataset's ``{value: name}``) the values of a picture are
    mapped by :func:`picture_label_values` (a 0/255 mask becomes 0/1 in a one-class dataset).

    Raises
    ------
    DatasetError
        A truly coloured label picture, or (with ``label_names``) values that cannot be
        mapped; the message names ``case_id`` and the values found.
    """
    from napari_medseg.io import is_nifti_path, read_nifti, read_volume

    if is_nifti_path(path):
        return read_nifti(path, as_labels=True)
    if not _is_picture(path):
        return read_volume(path)
    from napari_medseg.io.picture import read_picture

    volume = read_picture(path)
    what = f"Case {case_id}: {Path(path).name}" if case_id else Path(path).name
    array = _grey_picture(volume.array, what) if volume.rgb else np.asarray(volume.array)
    if label_names is not None:
        array = picture_label_values(array, label_names, case_id)
    elif array.dtype.kind == "b":
        array = array.astype(np.uint8)
    return Volume(array, volume.spacing, volume.affine.copy(), volume.modality,
                  dict(volume.metadata), volume.name)


def read_roi_mask(path: str | os.PathLike, case_id: str = "") -> np.ndarray:
    """Read a region-of-interest (field-of-view) mask file: True where the value is above half
    the largest value (0/1, 0/255 and slightly noisy JPEG masks alike).

    Raises
    ------
    DatasetError
        Unreadable, coloured or empty mask (message names the case).
    """
    what = f"Case {case_id}: mask {Path(path).name}" if case_id else f"Mask {Path(path).name}"
    try:
        if _is_picture(path):
            from napari_medseg.io.picture import read_picture

            volume = read_picture(path)
            array = _grey_picture(volume.array, what) if volume.rgb else volume.array
        else:
            array = read_label_image(path).array
    except DatasetError:
        raise
    except ValueError as exc:
        raise DatasetError(f"{what}: {exc}") from exc
    array = np.asarray(array, dtype=np.float64)
    top = float(array.max()) if array.size else 0.0
    if not top > 0:
        raise DatasetError(f"{what} is empty (no pixel inside the region of interest).")
    return array > top / 2


def write_labels(volume: Volume, path: str | os.PathLike) -> Path:
    """Write a label Volume atomically (temp file + rename): NIfTI, or for a 2D label map a
    ``.png`` / ``.tif`` / ``.tiff`` picture of the label values."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if Path(path).name.lower().endswith((".png", ".tif", ".tiff")):
        from napari_medseg.io.picture import write_picture

        return Path(write_picture(volume, path))
    from napari_medseg.io import write_nifti

    return Path(write_nifti(volume, path, labels=True))


def _picture_intensities(array: np.ndarray, suffix: str, what: str) -> np.ndarray:
    """The image array as a picture of ``suffix`` can store it, without loss."""
    a = np.asarray(array)
    if a.dtype.kind == "b":
        a = a.astype(np.uint8)
    if suffix in (".tif", ".tiff") and a.dtype.kind == "f":
        return a.astype(np.float32)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise DatasetError(
                f"{what} holds non-integer intensities, which a {suffix} file cannot store; "
                "write the dataset with file_ending '.tif' or '.nii.gz'."
            )
    low, high = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    top = 255 if suffix in (".jpg", ".jpeg", ".bmp") else 65535
    if low < 0 or high > top:
        raise DatasetError(
            f"{what} holds intensities {low:g}..{high:g}, outside the 0..{top} a {suffix} file "
            "stores; write the dataset with file_ending '.tif' or '.nii.gz'."
        )
    return a.astype(np.uint8 if high <= 255 else np.uint16)


def _write_image_picture(array: np.ndarray, path: Path) -> Path:
    """Write a greyscale ``(Y, X)`` or colour ``(Y, X, 3)`` picture atomically."""
    import io as _io
    import uuid

    buf = _io.BytesIO()
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        import tifffile

        tifffile.imwrite(buf, array, photometric="rgb" if array.ndim == 3 else "minisblack",
                         compression="zlib")
    else:
        from PIL import Image

        fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP"}[suffix]
        kwargs: dict[str, Any] = {"quality": 95} if fmt == "JPEG" else {}
        Image.fromarray(array).save(buf, format=fmt, **kwargs)
    tmp = path.with_name(f".{path.name}-{uuid.uuid4().hex[:8]}.partial")
    try:
        tmp.write_bytes(buf.getvalue())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


# --------------------------------------------------------------------------------------------
# dataset.json


def read_dataset_json(dataset_dir: str | os.PathLike) -> dict[str, Any]:
    """Read and check ``dataset.json`` of an MSD / nnU-Net dataset folder.

    Raises
    ------
    DatasetError
        Folder, ``dataset.json``, ``imagesTr`` or ``labelsTr`` missing, no label names, or a
        ``file_ending`` other than NIfTI, PNG, TIFF, JPEG or BMP.
    """
    root = Path(dataset_dir)
    if not root.is_dir():
        raise DatasetError(f"Dataset folder not found: {root}")
    meta_path = root / "dataset.json"
    if not meta_path.is_file():
        raise DatasetError(f"{root} has no dataset.json (expected the MSD / nnU-Net layout).")
    from napari_medseg.io.atomic import read_json_object

    meta = read_json_object(meta_path, DatasetError, f"dataset.json in {root}")
    for sub in ("imagesTr", "labelsTr"):
        if not (root / sub).is_dir():
            raise DatasetError(f"{root} has no {sub}/ folder.")
    if not isinstance(meta.get("labels"), dict) or not meta["labels"]:
        raise DatasetError("dataset.json has no 'labels' table (label value -> name).")
    _check_dataset_json_types(meta)
    dataset_file_ending(meta)
    return meta


def _check_dataset_json_types(meta: dict[str, Any]) -> None:
    """Refuse entries of the wrong type in ``dataset.json`` with one line naming the entry."""
    for key in ("channel_names", "modality"):
        table = meta.get(key)
        if table is None:
            continue
        if not isinstance(table, dict) or not table or not all(
                str(k).isdigit() and isinstance(v, str) for k, v in table.items()):
            raise DatasetError(
                f"dataset.json '{key}' must be a table of channel number -> name, like "
                f'{{"0": "MRI"}}; got {json.dumps(table)[:60]}.'
            )
    for key, value in meta["labels"].items():
        numbered = str(key).lstrip("-").isdigit()
        if numbered and not isinstance(value, str):
            raise DatasetError(f"dataset.json label {key!r} must have a name, not {value!r:.40}.")
        if not numbered and (not isinstance(value, int) or isinstance(value, bool)):
            raise DatasetError(f"dataset.json label entry {key!r}: {value!r:.40} is not understood.")
    training = meta.get("training")
    if training is None:
        return
    if not isinstance(training, list):
        raise DatasetError("dataset.json 'training' must be a list of "
                           '{"image": ..., "label": ...} entries.')
    for entry in training:
        if not isinstance(entry, dict) or not isinstance(entry.get("label"), str):
            raise DatasetError(f"dataset.json training entry {json.dumps(entry)[:60]} has no "
                               "'label' file name.")
        if "image" in entry and not isinstance(entry["image"], str):
            raise DatasetError(f"dataset.json training entry {json.dumps(entry)[:60]}: 'image' "
                               "must be a file name.")


def label_names_from_json(meta: dict[str, Any]) -> dict[int, str]:
    """``{value: name}`` from an MSD (``{"1": "liver"}``) or nnU-Net v2 (``{"liver": 1}``) table."""
    labels = meta["labels"]
    out: dict[int, str] = {}
    for key, value in labels.items():
        if str(key).lstrip("-").isdigit():
            out[int(key)] = str(value)
        elif isinstance(value, int):
            out[int(value)] = str(key)
        else:
            raise DatasetError(f"dataset.json label entry {key!r}: {value!r} is not understood.")
    out.setdefault(0, "background")
    if IGNORE_LABEL in out:
        out.pop(IGNORE_LABEL)
    return dict(sorted(out.items()))


def _channel_names(meta: dict[str, Any]) -> list[str]:
    table = meta.get("channel_names") or meta.get("modality") or {"0": "image"}
    return [str(table[k]) for k in sorted(table, key=lambda k: int(k))]


def _modality_from_name(name: str) -> str:
    upper = name.upper()
    if upper in ("CT",) or upper.startswith("CT"):
        return "CT"
    if upper.startswith(("MR", "T1", "T2", "FLAIR", "ADC", "DWI")) or "MRI" in upper:
        return "MR"
    if upper.startswith(("PT", "PET")):
        return "PT"
    return "unknown"


def modality_of_dataset_image(path: str | Path) -> str | None:
    """The modality ``dataset.json`` states for an image file of an MSD / nnU-Net dataset.

    ``DATASET/imagesTr/case_0001.nii.gz`` -> channel 1 of ``DATASET/dataset.json``'s
    ``modality`` / ``channel_names`` table, mapped to ``"CT"``, ``"MR"``, ``"PT"``. ``None``
    when the file is not in such a folder, the table is missing or names no known modality.
    NIfTI files carry no modality; this is how an MSD hippocampus MRI is known to be MR.
    """
    p = Path(path)
    if not p.parent.name.lower().startswith("images"):
        return None
    ds = p.parent.parent / "dataset.json"
    try:
        meta = json.loads(ds.read_text()) if ds.is_file() else None
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict):
        return None
    try:
        names = _channel_names(meta)
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    stem = p.name.split(".")[0]
    channel = int(stem[-4:]) if len(stem) > 5 and stem[-5] == "_" and stem[-4:].isdigit() else 0
    if not names:
        return None
    modality = _modality_from_name(names[min(channel, len(names) - 1)])
    return None if modality == "unknown" else modality


def dataset_file_ending(meta: dict[str, Any]) -> str | None:
    """``dataset.json``'s ``file_ending`` in lower case (``".png"``, ``".nii.gz"`` ...), or None.

    Raises
    ------
    DatasetError
        A ``file_ending`` napari-medseg does not read.
    """
    ending = meta.get("file_ending")
    if ending is None:
        return None
    text = str(ending).strip().lower()
    text = text if text.startswith(".") else f".{text}"
    if text not in FILE_ENDINGS:
        raise DatasetError(
            f"dataset.json file_ending {ending!r} is not supported; use one of "
            f"{', '.join(FILE_ENDINGS)}."
        )
    return text


def _suffix_family(ending: str | None) -> tuple[str, ...]:
    """Image suffixes accepted for a ``file_ending``: both JPEG spellings, both TIFF ones."""
    if ending is None:
        return PICTURE_SUFFIXES
    for family in ((".jpg", ".jpeg"), (".tif", ".tiff")):
        if ending in family:
            return family
    return (ending,)


def _index_by_stem(folder: Path, suffixes: Sequence[str]) -> dict[str, list[Path]]:
    """``{stem: [files]}`` of the files in ``folder`` ending in one of ``suffixes``."""
    index: dict[str, list[Path]] = {}
    if not folder.is_dir():
        return index
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        stem, suffix = _split_suffix(path.name, suffixes)
        if suffix:
            index.setdefault(stem, []).append(path)
    return index


def _one(index: dict[str, list[Path]], stem: str, where: str) -> Path | None:
    found = index.get(stem) or []
    if len(found) > 1:
        raise DatasetError(
            f"{where} holds several files for {stem}: {', '.join(p.name for p in found)}; keep one."
        )
    return found[0] if found else None


def _images_for(images_dir: Path, case_id: str, suffix: str, n_channels: int,
                listed: Path | None = None) -> list[Path]:
    if listed is not None and listed.is_file() and n_channels == 1:
        return [listed]
    single = images_dir / f"{case_id}{suffix}"
    per_channel = [images_dir / f"{case_id}_{c:04d}{suffix}" for c in range(n_channels)]
    if n_channels == 1 and single.is_file():
        return [single]
    if all(p.is_file() for p in per_channel):
        return per_channel
    raise DatasetError(f"No image in imagesTr/ for case {case_id}.")


def _picture_images_for(index: dict[str, list[Path]], case_id: str, n_channels: int,
                        listed: Path | None = None) -> list[Path]:
    """Picture files of a case: ``CASE_0000.png``, ``CASE_0001.png`` ... or ``CASE.png``.

    A colour file counts as three channels; :func:`_check_channels` compares the total with
    ``dataset.json`` once the files are read.
    """
    if listed is not None and listed.is_file():
        return [listed]
    per_channel = []
    for c in range(max(n_channels, 1)):
        path = _one(index, f"{case_id}_{c:04d}", "imagesTr/")
        if path is None:
            break
        per_channel.append(path)
    if per_channel:
        return per_channel
    single = _one(index, case_id, "imagesTr/")
    if single is not None:
        return [single]
    raise DatasetError(
        f"No image in imagesTr/ for case {case_id} (expected {case_id}_0000 or {case_id} "
        "with the dataset's file ending)."
    )


def _check_channels(case_id: str, volumes: list[Volume], names: list[str]) -> list[Volume]:
    """Picture channels against ``channel_names``: a colour file is three channels; a
    greyscale picture stored as RGB (equal channels) is one."""
    total = sum(v.n_channels for v in volumes)
    if total == len(names):
        return volumes
    if len(names) == 1 and len(volumes) == 1 and volumes[0].rgb:
        v = volumes[0]
        rgb = v.array[..., :3]
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
            return [Volume(np.ascontiguousarray(rgb[..., 0]), v.spacing, v.affine.copy(),
                           v.modality, dict(v.metadata), v.name)]
    raise DatasetError(
        f"Case {case_id}: dataset.json names {len(names)} channel(s) ({', '.join(names)}) "
        f"but its image file(s) hold {total} (a colour picture is 3: red, green, blue)."
    )


def list_msd_cases(dataset_dir: str | os.PathLike) -> list[tuple[str, list[Path], Path]]:
    """``[(case_id, [image path per channel], label path)]`` for every labelled case, sorted.

    Uses the ``training`` list of ``dataset.json`` when it has one (MSD), otherwise every label
    file in ``labelsTr/`` (nnU-Net v2). With a picture ``file_ending`` (``.png``, ``.jpg`` ...),
    a case's label is ``labelsTr/CASE`` with any picture suffix, its image ``imagesTr/CASE_0000``
    (``_0001`` ... one per channel) or ``imagesTr/CASE`` with the file ending; a colour picture
    file is three channels.
    """
    root = Path(dataset_dir)
    meta = read_dataset_json(root)
    n_channels = len(_channel_names(meta))
    ending = dataset_file_ending(meta)
    images_dir, labels_dir = root / "imagesTr", root / "labelsTr"
    image_index: dict[str, list[Path]] | None = None

    def picture_images(case_id: str, listed: Path | None = None) -> list[Path]:
        nonlocal image_index
        if image_index is None:
            image_index = _index_by_stem(images_dir, _suffix_family(
                ending if ending in PICTURE_SUFFIXES else None))
        return _picture_images_for(image_index, case_id, n_channels, listed)

    cases: list[tuple[str, list[Path], Path]] = []
    training = meta.get("training")
    if isinstance(training, list) and training:
        for entry in training:
            if not isinstance(entry, dict) or "label" not in entry:
                raise DatasetError(f"dataset.json training entry {entry!r} has no 'label'.")
            label_path = (root / entry["label"]).resolve()
            if not label_path.is_file():
                raise DatasetError(f"dataset.json lists {entry['label']}, which does not exist.")
            listed = (root / entry["image"]).resolve() if "image" in entry else None
            if _is_picture(label_path):
                case_id = _split_suffix(label_path.name, MASK_SUFFIXES)[0]
                cases.append((case_id, picture_images(case_id, listed), label_path))
                continue
            case_id = _strip_nifti_suffix(label_path.name)
            suffix = label_path.name[len(case_id):]
            cases.append((case_id, _images_for(images_dir, case_id, suffix, n_channels, listed),
                          label_path))
        cases.sort(key=lambda c: c[0])
    else:
        pictures = ending in PICTURE_SUFFIXES
        if not pictures:
            for label_path in sorted(labels_dir.iterdir()):
                if label_path.name.startswith(".") or not label_path.name.endswith(NIFTI_SUFFIXES):
                    continue
                case_id = _strip_nifti_suffix(label_path.name)
                suffix = label_path.name[len(case_id):]
                cases.append((case_id, _images_for(images_dir, case_id, suffix, n_channels),
                              label_path))
            # no file_ending and no NIfTI labels: try pictures (a hand-made 2D dataset)
            pictures = not cases and ending is None
        if pictures:
            label_index = _index_by_stem(labels_dir, MASK_SUFFIXES)
            for case_id in sorted(label_index):
                label_path = _one(label_index, case_id, "labelsTr/")
                cases.append((case_id, picture_images(case_id), label_path))
    if not cases:
        kind = "picture" if ending in PICTURE_SUFFIXES else "NIfTI"
        raise DatasetError(f"{labels_dir} contains no {kind} label files.")
    return cases


def _roi_index(root: Path) -> dict[str, list[Path]]:
    return _index_by_stem(root / ROI_FOLDER, (*NIFTI_SUFFIXES, *MASK_SUFFIXES))


#: What ``load_msd_dataset(roi=...)`` accepts: masks by case id, or a function of the image.
RoiSource = Mapping[str, np.ndarray] | Callable[[np.ndarray], np.ndarray]


def _case_roi(case_id: str, channels: list[Volume], roi: RoiSource | None,
              index: dict[str, list[Path]]) -> np.ndarray | None:
    if roi is None:
        if not index:
            return None
        path = _one(index, case_id, f"{ROI_FOLDER}/")
        if path is None:
            raise DatasetError(
                f"Case {case_id} has no region-of-interest mask in {ROI_FOLDER}/ (every case "
                "needs one when the folder exists)."
            )
        return read_roi_mask(path, case_id)
    if callable(roi):
        planes = [c for v in channels for c in v.channel_volumes()]
        stacked = np.stack([np.asarray(c.array) for c in planes], axis=-1)
        return np.asarray(roi(stacked), dtype=bool)
    if case_id not in roi:
        raise DatasetError(f"No region-of-interest mask given for case {case_id}.")
    return np.asarray(roi[case_id], dtype=bool)


#: Largest relative difference of voxel size, and of direction cosines, between an image and
#: its label file that still counts as the same grid.
GRID_TOLERANCE = 0.01


def _check_label_finite(case_id: str, label_path: Path, label_volume: Volume) -> None:
    """Refuse a floating-point label file with NaN / infinite voxels (the reader would turn
    them into background, silently teaching the network that they are background)."""
    if not str(label_volume.metadata.get("nifti_dtype", "")).startswith("float"):
        return
    import nibabel as nib

    try:
        data = np.asanyarray(nib.load(str(label_path)).dataobj)
    except Exception:  # noqa: BLE001 - it was read once already; nothing more to learn
        return
    n_bad = int(data.size - np.count_nonzero(np.isfinite(data)))
    if n_bad:
        raise DatasetError(
            f"Case {case_id}: the label file {label_path.name} has {n_bad:,} NaN or infinite "
            "voxel(s); a label map must hold whole numbers only (fix or re-export it)."
        )


def _check_same_grid(case_id: str, image_path: Path, image: Volume, label_path: Path,
                     label_volume: Volume) -> None:
    """Refuse a label file whose voxel size, orientation or origin differ from its image's."""
    s_img = np.asarray(image.spacing, dtype=float)
    s_lab = np.asarray(label_volume.spacing, dtype=float)
    a_img, a_lab = np.asarray(image.affine, dtype=float), np.asarray(label_volume.affine, dtype=float)
    problem = ""
    if s_img.shape != s_lab.shape or np.any(np.abs(s_lab - s_img) > GRID_TOLERANCE * s_img):
        problem = (f"voxel size {tuple(round(float(v), 4) for v in s_lab)} mm, where the image "
                   f"has {tuple(round(float(v), 4) for v in s_img)} mm")
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            d_img = a_img[:3, :3] / np.linalg.norm(a_img[:3, :3], axis=0)
            d_lab = a_lab[:3, :3] / np.linalg.norm(a_lab[:3, :3], axis=0)
        origin_mm = float(np.linalg.norm(a_lab[:3, 3] - a_img[:3, 3]))
        if np.all(np.isfinite(d_img)) and np.all(np.isfinite(d_lab)) and np.any(
                np.abs(d_lab - d_img) > GRID_TOLERANCE):
            problem = "another orientation"
        elif origin_mm > 0.5 * float(s_img.max()):
            problem = f"an origin {origin_mm:.1f} mm away from the image's"
    if problem:
        raise DatasetError(
            f"Case {case_id}: the label file {label_path.name} is on another grid than its "
            f"image {image_path.name} ({problem}), so its voxels do not line up with the "
            "image; resample the labels onto the image."
        )


def _check_named_values(case_id: str, label_path: Path, labels: np.ndarray,
                        label_names: Mapping[int, str]) -> None:
    """Refuse label values that ``dataset.json`` does not name (255 = ignore is allowed)."""
    if not labels.size or labels.dtype.kind not in "ub" and (
            labels.dtype.kind != "i" or labels.min() < 0 or labels.max() > IGNORE_LABEL):
        return  # out-of-range or non-integer values: Case explains those
    counts = np.bincount(labels.ravel().astype(np.intp, copy=False), minlength=IGNORE_LABEL + 1)
    unknown = [v for v, n in enumerate(counts) if n and v not in label_names and v != IGNORE_LABEL]
    if unknown:
        named = ", ".join(f"{v} {n}" for v, n in sorted(label_names.items()))
        raise DatasetError(
            f"Case {case_id}: {label_path.name} holds label value(s) {_value_list(unknown)}, "
            f"which dataset.json does not name (it names {named}); add them to its 'labels' "
            f"table or fix the label file."
        )


def load_msd_dataset(
    dataset_dir: str | os.PathLike,
    case_ids: Sequence[str] | None = None,
    roi: RoiSource | None = None,
) -> Dataset:
    """Load an MSD / nnU-Net dataset folder into memory.

    Parameters
    ----------
    dataset_dir : path
        Folder with ``dataset.json``, ``imagesTr/`` and ``labelsTr/`` (a napari-medseg project
        folder has the same layout); NIfTI, or pictures as nnU-Net v2's natural-image layout
        (``"file_ending": ".png"`` ..., see the module docstring).
    case_ids : sequence of str, optional
        Load only these cases.
    roi : mapping or callable, optional
        Region-of-interest (field-of-view) masks: ``{case_id: bool array}``, or a function of
        the case's image as a ``(Y, X, C)`` channels-last array returning a bool mask (e.g.
        :func:`napari_medseg.dataset.fundus.fundus_fov_mask`). By default the masks in
        ``masksTr/CASE.png`` (any picture or NIfTI suffix; non-zero = inside) are used when that
        folder exists. They become :attr:`Case.roi`: outside them nothing counts in the loss
        or the metrics.

    Raises
    ------
    DatasetError
        Layout problems, unreadable files, or image/label shape mismatch (message names the case).
    """
    root = Path(dataset_dir)
    meta = read_dataset_json(root)
    names = _channel_names(meta)
    label_names = label_names_from_json(meta)
    listed = list_msd_cases(root)
    if case_ids is not None:
        wanted = set(case_ids)
        unknown = wanted - {c[0] for c in listed}
        if unknown:
            raise DatasetError(f"Cases not in {root.name}: {', '.join(sorted(unknown)[:5])}")
        listed = [c for c in listed if c[0] in wanted]
    modality = _modality_from_name(names[0])
    roi_index = _roi_index(root) if roi is None else {}
    cases = []
    for case_id, image_paths, label_path in listed:
        picture = _is_picture(label_path) or any(_is_picture(p) for p in image_paths)
        try:
            channels = [read_image(p) for p in image_paths]
            if picture:
                channels = _check_channels(case_id, channels, names)
                label_volume = read_label_image(label_path, label_names, case_id)
            else:
                label_volume = read_label_image(label_path)
            case_roi = _case_roi(case_id, channels, roi, roi_index)
        except DatasetError:
            raise
        except ValueError as exc:
            raise DatasetError(f"Case {case_id}: {exc}") from exc
        if label_volume.shape != channels[0].shape:
            raise DatasetError(
                f"Case {case_id}: image shape {channels[0].shape} and label shape "
                f"{label_volume.shape} differ."
            )
        if not picture:
            _check_label_finite(case_id, label_path, label_volume)
            _check_same_grid(case_id, image_paths[0], channels[0], label_path, label_volume)
        for ch in channels:
            ch.modality = modality if ch.modality == "unknown" else ch.modality
        labels = np.asarray(label_volume.array)
        _check_named_values(case_id, label_path, labels, label_names)
        cases.append(Case(case_id, channels[0], labels, None, tuple(channels[1:]), roi=case_roi))
    return Dataset(cases, label_names, modality, names, str(meta.get("name", root.name)), str(root))


def write_msd_dataset(
    dataset: Dataset | Sequence[Case],
    dataset_dir: str | os.PathLike,
    label_names: dict[int, str] | None = None,
    name: str = "dataset",
    modality: str = "MR",
    file_ending: str = ".nii.gz",
) -> Path:
    """Write cases in the MSD layout (``dataset.json``, ``imagesTr/``, ``labelsTr/``).

    Unannotated voxels are stored as ``IGNORE_LABEL`` (255) in the label files; a case's
    region of interest (:attr:`Case.roi`) goes to ``masksTr/CASE`` (0 / 255).

    Parameters
    ----------
    file_ending : str
        ``".nii.gz"`` (default, MSD layout with a ``training`` list) or a picture ending
        (``".png"``, ``".tif"``, ``".tiff"``, ``".jpg"``, ``".jpeg"``, ``".bmp"``) for 2D cases:
        nnU-Net v2's natural-image layout, ``imagesTr/CASE_0000.png`` (one colour file when
        the case has three 8-bit channels, else one greyscale file per channel),
        ``labelsTr/CASE.png`` (``.tif`` for TIFF datasets), ``dataset.json`` with
        ``channel_names``, ``labels`` ``{name: value}`` and ``file_ending``. JPEG is lossy.

    Raises
    ------
    DatasetError
        A case cannot be stored with ``file_ending`` (3D, fractional intensities in a PNG, ...);
        checked before anything is written.
    """
    from napari_medseg.io import write_nifti

    if isinstance(dataset, Dataset):
        cases, label_names, name = dataset.cases, dataset.label_names, dataset.name
        channel_names = dataset.channel_names
    else:
        cases = list(dataset)
        channel_names = [modality] * (1 + len(cases[0].extra_channels)) if cases else [modality]
        if cases and file_ending.lower() in PICTURE_SUFFIXES and len(cases[0].channels) == 3 \
                and [c.channel_names[0] for c in cases[0].channels] == ["red", "green", "blue"]:
            channel_names = ["red", "green", "blue"]
    if label_names is None:
        top = max(int(c.labels[c.labels != IGNORE_LABEL].max(initial=0)) for c in cases)
        label_names = {0: "background", **{i: f"label {i}" for i in range(1, top + 1)}}
    ending = str(file_ending).lower()
    if ending in PICTURE_SUFFIXES:
        return _write_picture_dataset(cases, Path(dataset_dir), label_names, name,
                                      channel_names, ending)
    if ending not in NIFTI_SUFFIXES:
        raise DatasetError(
            f"Cannot write a dataset with file ending {file_ending!r}; use one of "
            f"{', '.join(FILE_ENDINGS)}."
        )
    root = Path(dataset_dir)
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    multi = len(channel_names) > 1
    training = []
    for case in cases:
        for c, vol in enumerate(case.channels):
            fname = f"{case.case_id}_{c:04d}.nii.gz" if multi else f"{case.case_id}.nii.gz"
            write_nifti(vol.with_array(np.asarray(vol.array, dtype=np.float32)),
                        root / "imagesTr" / fname)
        write_labels(case.image.with_array(case.stored_labels()),
                     root / "labelsTr" / f"{case.case_id}.nii.gz")
        if case.roi is not None:
            (root / ROI_FOLDER).mkdir(exist_ok=True)
            write_labels(case.image.with_array(case.roi.astype(np.uint8) * 255),
                         root / ROI_FOLDER / f"{case.case_id}.nii.gz")
        training.append({"image": f"./imagesTr/{case.case_id}.nii.gz",
                         "label": f"./labelsTr/{case.case_id}.nii.gz"})
    meta = {
        "name": name,
        "modality": {str(i): n for i, n in enumerate(channel_names)},
        "labels": {str(k): v for k, v in sorted(label_names.items())},
        "numTraining": len(cases),
        "training": training,
    }
    (root / "dataset.json").write_text(json.dumps(meta, indent=2))
    return root


def _write_picture_dataset(cases: Sequence[Case], root: Path, label_names: dict[int, str],
                           name: str, channel_names: list[str], ending: str) -> Path:
    """nnU-Net v2 natural-image layout; every array is checked before the first file is written."""
    label_ending = ending if ending in (".tif", ".tiff") else ".png"
    foreground = sorted(v for v in label_names if v != 0)
    plan: list[tuple[Path, np.ndarray, str]] = []  # (path, array, "image" | "labels")
    for case in cases:
        if case.image.ndim != 2:
            raise DatasetError(
                f"Case {case.case_id} is 3D; picture files ({ending}) hold 2D images only: "
                "write it as .nii.gz."
            )
        if len(case.channels) != len(channel_names):
            raise DatasetError(f"Case {case.case_id} has {len(case.channels)} channel(s), "
                               f"the dataset {len(channel_names)}.")
        planes = [_picture_intensities(ch.array, ending, f"Case {case.case_id}")
                  for ch in case.channels]
        if len(planes) == 3 and all(p.dtype == np.uint8 for p in planes):
            plan.append((root / "imagesTr" / f"{case.case_id}_0000{ending}",
                         np.stack(planes, axis=-1), "image"))
        else:
            if ending in (".jpg", ".jpeg", ".bmp") and any(p.dtype != np.uint8 for p in planes):
                raise DatasetError(f"Case {case.case_id}: {ending} holds 8-bit images only.")
            plan.extend((root / "imagesTr" / f"{case.case_id}_{c:04d}{ending}", p, "image")
                        for c, p in enumerate(planes))
        stored = case.stored_labels()
        values = set(np.unique(stored).tolist())
        if len(foreground) == 1 and values == {0, IGNORE_LABEL}:
            raise DatasetError(
                f"Case {case.case_id} has unannotated pixels and no foreground; in a one-class "
                "picture dataset 0/255 reads as a binary mask: write it as .nii.gz."
            )
        plan.append((root / "labelsTr" / f"{case.case_id}{label_ending}", stored, "labels"))
        if case.roi is not None:
            plan.append((root / ROI_FOLDER / f"{case.case_id}.png",
                         case.roi.astype(np.uint8) * 255, "labels"))
    for path, array, kind in plan:
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "image":
            _write_image_picture(array, path)
        else:
            from napari_medseg.io.picture import write_picture

            write_picture(array, path)
    names = {str(v): int(k) for k, v in sorted(label_names.items())}
    labels_table: dict[str, Any] = names if len(names) == len(label_names) else \
        {str(k): v for k, v in sorted(label_names.items())}
    meta = {
        "name": name,
        "channel_names": {str(i): n for i, n in enumerate(channel_names)},
        "labels": labels_table,
        "numTraining": len(cases),
        "file_ending": ending,
    }
    (root / "dataset.json").write_text(json.dumps(meta, indent=2))
    return root


# --------------------------------------------------------------------------------------------
# splits


def split_case_ids(
    case_ids: Sequence[str], val_fraction: float = 0.2, seed: int | None = 0
) -> tuple[list[str], list[str]]:
    """Random train/validation split of case ids.

    At least one training case is kept; with fewer than 2 cases or ``val_fraction <= 0`` the
    validation list is empty. Returns ``(train_ids, val_ids)``, each sorted.
    """
    if not 0 <= val_fraction < 1:
        raise DatasetError(f"Validation fraction must be in [0, 1), got {val_fraction}.")
    ids = sorted(case_ids)
    n_val = int(round(len(ids) * val_fraction))
    if val_fraction > 0 and len(ids) >= 2:
        n_val = min(max(n_val, 1), len(ids) - 1)
    else:
        n_val = 0
    order = np.random.default_rng(seed).permutation(len(ids))
    val = sorted(ids[i] for i in order[:n_val])
    train = sorted(ids[i] for i in order[n_val:])
    return train, val


def read_splits(path: str | os.PathLike, fold: int = 0) -> tuple[list[str], list[str]]:
    """Read an nnU-Net ``splits*.json`` file (list of ``{"train": [...], "val": [...]}``)."""
    try:
        splits = json.loads(Path(path).read_text())
        entry = splits[fold]
        return list(entry["train"]), list(entry["val"])
    except (OSError, json.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
        raise DatasetError(f"Cannot read fold {fold} of split file {path}: {exc}") from exc


def label_colours(label_names: dict[int, str]) -> dict[int, tuple[int, int, int]]:
    """Default RGB colour (0-255) for every non-background label value."""
    return {v: class_colour(v) for v in label_names if v != 0}
