"""MSD / nnU-Net dataset layout and in-memory training cases.

Layout (Medical Segmentation Decathlon, also nnU-Net v1/v2)::

    DATASET_DIR/
      dataset.json          {"name", "modality" | "channel_names", "labels", "training": [...]}
      imagesTr/CASE.nii.gz  (or CASE_0000.nii.gz, CASE_0001.nii.gz ... one file per channel)
      labelsTr/CASE.nii.gz

A training case is a :class:`Case`: the image :class:`~napari_medseg.io.volume.Volume` (plus optional
extra channels), an integer label array on the same grid, and optionally a boolean
``annotated`` mask. Voxels whose label is :data:`~napari_medseg.events.IGNORE_LABEL` (255) or whose
``annotated`` value is False were not annotated by anyone: they add nothing to the loss (sparse
annotation, nnU-Net's "ignore label").
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_medseg.events import IGNORE_LABEL
from napari_medseg.io.volume import Volume

#: Default display colours (RGB 0-255) for label values 1, 2, ... (0 = background is transparent).
DEFAULT_LABEL_COLOURS = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
]

NIFTI_SUFFIXES = (".nii.gz", ".nii")


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
    """

    case_id: str
    image: Volume
    labels: np.ndarray | None = None
    annotated: np.ndarray | None = None
    extra_channels: tuple[Volume, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not isinstance(self.image, Volume):
            self.image = Volume(np.asarray(self.image))
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

    @property
    def channels(self) -> list[Volume]:
        """All input channels, the image first."""
        return [self.image, *self.extra_channels]

    def training_labels(self) -> np.ndarray:
        """Labels with every unannotated voxel set to ``IGNORE_LABEL`` (uint8, image shape)."""
        if self.labels is None:
            raise DatasetError(f"Case {self.case_id} has no labels.")
        if self.annotated is None:
            return self.labels
        out = self.labels.copy()
        out[~self.annotated] = IGNORE_LABEL
        return out

    def annotated_fraction(self) -> float:
        """Fraction of voxels that carry a real annotation (0..1)."""
        return float(np.mean(self.training_labels() != IGNORE_LABEL))


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
# file helpers (napari_medseg.io when available, a small nibabel fallback otherwise)


def _strip_nifti_suffix(name: str) -> str:
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_image(path: str | os.PathLike) -> Volume:
    """Read an image file (NIfTI, DICOM) into a :class:`Volume` with ``napari_medseg.io``."""
    from napari_medseg.io import read_volume

    return read_volume(path)


def read_label_image(path: str | os.PathLike) -> Volume:
    """Read a label map (integer-valued float files are cast to integers)."""
    from napari_medseg.io import is_nifti_path, read_nifti, read_volume

    if is_nifti_path(path):
        return read_nifti(path, as_labels=True)
    return read_volume(path)


def write_labels(volume: Volume, path: str | os.PathLike) -> Path:
    """Write a label Volume as NIfTI atomically (temp file + rename)."""
    from napari_medseg.io import write_nifti

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return Path(write_nifti(volume, path, labels=True))


# --------------------------------------------------------------------------------------------
# dataset.json


def read_dataset_json(dataset_dir: str | os.PathLike) -> dict[str, Any]:
    """Read and check ``dataset.json`` of an MSD / nnU-Net dataset folder.

    Raises
    ------
    DatasetError
        Folder, ``dataset.json``, ``imagesTr`` or ``labelsTr`` missing, or no label names.
    """
    root = Path(dataset_dir)
    if not root.is_dir():
        raise DatasetError(f"Dataset folder not found: {root}")
    meta_path = root / "dataset.json"
    if not meta_path.is_file():
        raise DatasetError(f"{root} has no dataset.json (expected the MSD / nnU-Net layout).")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"dataset.json in {root} is not valid JSON: {exc}") from exc
    for sub in ("imagesTr", "labelsTr"):
        if not (root / sub).is_dir():
            raise DatasetError(f"{root} has no {sub}/ folder.")
    if not isinstance(meta.get("labels"), dict) or not meta["labels"]:
        raise DatasetError("dataset.json has no 'labels' table (label value -> name).")
    return meta


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


def list_msd_cases(dataset_dir: str | os.PathLike) -> list[tuple[str, list[Path], Path]]:
    """``[(case_id, [image path per channel], label path)]`` for every labelled case, sorted.

    Uses the ``training`` list of ``dataset.json`` when it has one (MSD), otherwise every label
    file in ``labelsTr/`` (nnU-Net v2).
    """
    root = Path(dataset_dir)
    meta = read_dataset_json(root)
    n_channels = len(_channel_names(meta))
    images_dir, labels_dir = root / "imagesTr", root / "labelsTr"
    cases: list[tuple[str, list[Path], Path]] = []
    training = meta.get("training")
    if isinstance(training, list) and training:
        for entry in training:
            if not isinstance(entry, dict) or "label" not in entry:
                raise DatasetError(f"dataset.json training entry {entry!r} has no 'label'.")
            label_path = (root / entry["label"]).resolve()
            if not label_path.is_file():
                raise DatasetError(f"dataset.json lists {entry['label']}, which does not exist.")
            case_id = _strip_nifti_suffix(label_path.name)
            suffix = label_path.name[len(case_id):]
            listed = (root / entry["image"]).resolve() if "image" in entry else None
            cases.append((case_id, _images_for(images_dir, case_id, suffix, n_channels, listed),
                          label_path))
        cases.sort(key=lambda c: c[0])
    else:
        for label_path in sorted(labels_dir.iterdir()):
            if label_path.name.startswith(".") or not label_path.name.endswith(NIFTI_SUFFIXES):
                continue
            case_id = _strip_nifti_suffix(label_path.name)
            suffix = label_path.name[len(case_id):]
            cases.append((case_id, _images_for(images_dir, case_id, suffix, n_channels),
                          label_path))
    if not cases:
        raise DatasetError(f"{labels_dir} contains no NIfTI label files.")
    return cases


def load_msd_dataset(
    dataset_dir: str | os.PathLike, case_ids: Sequence[str] | None = None
) -> Dataset:
    """Load an MSD / nnU-Net dataset folder into memory.

    Parameters
    ----------
    dataset_dir : path
        Folder with ``dataset.json``, ``imagesTr/`` and ``labelsTr/`` (a napari-medseg project
        folder has the same layout).
    case_ids : sequence of str, optional
        Load only these cases.

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
    cases = []
    for case_id, image_paths, label_path in listed:
        try:
            channels = [read_image(p) for p in image_paths]
            label_volume = read_label_image(label_path)
        except DatasetError:
            raise
        except ValueError as exc:
            raise DatasetError(f"Case {case_id}: {exc}") from exc
        if label_volume.shape != channels[0].shape:
            raise DatasetError(
                f"Case {case_id}: image shape {channels[0].shape} and label shape "
                f"{label_volume.shape} differ."
            )
        for ch in channels:
            ch.modality = modality if ch.modality == "unknown" else ch.modality
        labels = np.asarray(label_volume.array)
        cases.append(Case(case_id, channels[0], labels, None, tuple(channels[1:])))
        max_label = int(labels[labels != IGNORE_LABEL].max(initial=0))
        if max_label not in label_names and max_label > max(label_names):
            raise DatasetError(
                f"Case {case_id} contains label {max_label}, which dataset.json does not name."
            )
    return Dataset(cases, label_names, modality, names, str(meta.get("name", root.name)), str(root))


def write_msd_dataset(
    dataset: Dataset | Sequence[Case],
    dataset_dir: str | os.PathLike,
    label_names: dict[int, str] | None = None,
    name: str = "dataset",
    modality: str = "MR",
) -> Path:
    """Write cases in the MSD layout (``dataset.json``, ``imagesTr/``, ``labelsTr/``).

    Unannotated voxels are stored as ``IGNORE_LABEL`` (255) in the label files.
    """
    from napari_medseg.io import write_nifti

    if isinstance(dataset, Dataset):
        cases, label_names, name = dataset.cases, dataset.label_names, dataset.name
        channel_names = dataset.channel_names
    else:
        cases = list(dataset)
        channel_names = [modality] * (1 + len(cases[0].extra_channels)) if cases else [modality]
    if label_names is None:
        top = max(int(c.labels[c.labels != IGNORE_LABEL].max(initial=0)) for c in cases)
        label_names = {0: "background", **{i: f"label {i}" for i in range(1, top + 1)}}
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
        write_labels(case.image.with_array(case.training_labels()),
                     root / "labelsTr" / f"{case.case_id}.nii.gz")
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
    return {v: DEFAULT_LABEL_COLOURS[(v - 1) % len(DEFAULT_LABEL_COLOURS)]
            for v in label_names if v != 0}
