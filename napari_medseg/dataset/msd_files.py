"""Single files of an MSD / nnU-Net dataset folder: names, reading and writing.

File suffixes, the ``masksTr/`` folder name and finding files by name; reading an image, a
label map or a region-of-interest mask; writing a label file. The value rules of picture labels
live here: a picture label file holds label values as they are; a mask stored as 0/255, 0/1 (or 0
and any single value) is read as the one foreground class when ``dataset.json`` names exactly one;
any other set of values is a :class:`~napari_medseg.dataset.cases.DatasetError` naming the case
and the values found. A greyscale mask saved as RGB (three equal channels) is read as grey.
:mod:`napari_medseg.io` does the actual reading and writing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from napari_medseg.dataset.cases import DatasetError
from napari_medseg.events import IGNORE_LABEL
from napari_medseg.io.picture import PICTURE_SUFFIXES as _PICTURES
from napari_medseg.io.volume import Volume

NIFTI_SUFFIXES = (".nii.gz", ".nii")
#: Picture files an nnU-Net v2 natural-image dataset may hold (``dataset.json`` ``file_ending``):
#: every picture the readers take but GIF, which holds masks, not photographs.
PICTURE_SUFFIXES = tuple(s for s in _PICTURES if s != ".gif")
#: Label and region-of-interest masks may also be GIF (DRIVE ships its masks so).
MASK_SUFFIXES = (*PICTURE_SUFFIXES, ".gif")
#: ``file_ending`` values ``dataset.json`` may give.
FILE_ENDINGS = (*NIFTI_SUFFIXES, *PICTURE_SUFFIXES)
#: Folder of per-case region-of-interest (field-of-view) masks: ``masksTr/CASE.png`` (any picture
#: or NIfTI suffix); non-zero = inside. Pixels outside are left out of the loss and the metrics.
ROI_FOLDER = "masksTr"


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


def read_image(path: str | os.PathLike, series_uid: str | None = None,
               channel: int | None = None) -> Volume:
    """Read an image file (NIfTI, DICOM, PNG/JPEG/TIFF/BMP) into a :class:`Volume`.

    A colour picture gives ``Volume(rgb=True)``; :class:`Case` splits it into its red, green
    and blue channels. ``series_uid`` (a DICOM folder of several series) and ``channel`` (a 4D
    NIfTI) choose one image, as for :func:`~napari_medseg.io.read_volume`.
    """
    from napari_medseg.io import read_volume

    return read_volume(path, series_uid=series_uid, channel=channel)


def _grey_picture(volume: Volume, what: str) -> np.ndarray:
    """The grey plane of a colour (RGB/RGBA) picture whose colour channels are equal."""
    if not volume.is_colourless():
        raise DatasetError(
            f"{what} is a colour picture (its red, green and blue differ); a label or mask "
            "file must be a greyscale picture of label values."
        )
    return volume.grey().array


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
    array = _grey_picture(volume, what) if volume.rgb else np.asarray(volume.array)
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
            array = _grey_picture(volume, what) if volume.rgb else volume.array
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
