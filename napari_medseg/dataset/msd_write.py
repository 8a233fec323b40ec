"""Writing in-memory cases as an MSD / nnU-Net dataset folder (:func:`write_msd_dataset`).

NIfTI (``dataset.json`` with a ``training`` list) or, for 2D cases, nnU-Net v2's natural-image
layout (PNG, TIFF, JPEG, BMP pictures); every picture array is checked before the first file is
written. The layout is described in :mod:`napari_medseg.dataset.msd`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_medseg.dataset.cases import Case, Dataset, DatasetError
from napari_medseg.dataset.msd_files import (
    FILE_ENDINGS,
    NIFTI_SUFFIXES,
    PICTURE_SUFFIXES,
    ROI_FOLDER,
    write_labels,
)
from napari_medseg.events import IGNORE_LABEL


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
