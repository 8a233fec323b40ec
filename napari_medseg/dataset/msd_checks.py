"""Checks a case read from an MSD / nnU-Net folder must pass before it becomes a
:class:`~napari_medseg.dataset.cases.Case`: picture channel count against ``channel_names``,
finite label voxels, label file on its image's grid, label values named by ``dataset.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from napari_medseg.dataset.cases import DatasetError
from napari_medseg.dataset.msd_files import _value_list
from napari_medseg.events import IGNORE_LABEL
from napari_medseg.io.volume import Volume


def _check_channels(case_id: str, volumes: list[Volume], names: list[str]) -> list[Volume]:
    """Picture channels against ``channel_names``: a colour file is three channels; a
    greyscale picture stored as RGB (equal channels, as many ultrasound exports are) is one."""
    total = sum(v.n_channels for v in volumes)
    if total == len(names):
        return volumes
    if len(names) == 1 and len(volumes) == 1 and volumes[0].is_colourless():
        return [volumes[0].grey()]
    raise DatasetError(
        f"Case {case_id}: dataset.json names {len(names)} channel(s) ({', '.join(names)}) "
        f"but its image file(s) hold {total} (a colour picture is 3: red, green, blue)."
    )


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
    if labels.size and labels.dtype.kind == "i" and labels.min() < 0:
        negative = np.unique(labels[labels < 0]).tolist()
        raise DatasetError(
            f"Case {case_id}: {label_path.name} holds negative label value(s) "
            f"{_value_list(negative)}; label values are 0 (background) and the positive values "
            "dataset.json names.")
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
