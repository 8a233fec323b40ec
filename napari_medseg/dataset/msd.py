"""MSD / nnU-Net dataset folders: ``dataset.json``, listing, loading and splits.

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
labels next to JPEG images); how their values are read is :mod:`napari_medseg.dataset.msd_files`.

The parts live in their own modules and are re-exported here: the in-memory cases
(:class:`Case`, :class:`Dataset`, :class:`DatasetError`) in :mod:`napari_medseg.dataset.cases`,
reading and writing single files in :mod:`napari_medseg.dataset.msd_files`, the checks of a
loaded case in :mod:`napari_medseg.dataset.msd_checks`, :func:`write_msd_dataset` in
:mod:`napari_medseg.dataset.msd_write`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_medseg.dataset.cases import Case, Dataset, DatasetError
from napari_medseg.dataset.msd_checks import (
    GRID_TOLERANCE,  # noqa: F401 - re-exported
    _check_channels,
    _check_label_finite,
    _check_named_values,
    _check_same_grid,
)
from napari_medseg.dataset.msd_files import (
    FILE_ENDINGS,
    MASK_SUFFIXES,
    NIFTI_SUFFIXES,
    PICTURE_SUFFIXES,
    ROI_FOLDER,
    _index_by_stem,
    _is_picture,
    _one,
    _split_suffix,
    _strip_nifti_suffix,
    _suffix_family,
    picture_label_values,  # noqa: F401 - re-exported
    read_image,
    read_label_image,
    read_roi_mask,
    write_labels,  # noqa: F401 - re-exported
)
from napari_medseg.dataset.msd_write import write_msd_dataset  # noqa: F401 - re-exported
from napari_medseg.events import IGNORE_LABEL
from napari_medseg.io.volume import Volume
from napari_medseg.labels import PALETTE, class_colour, hex_to_rgb

#: Default display colours (RGB 0-255) for label values 1, 2, ... (0 = background is transparent).
#: Class colours (RGB 0-255) for label values 1, 2, ...: the package's one palette.
DEFAULT_LABEL_COLOURS = [hex_to_rgb(c) for c in PALETTE]


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
