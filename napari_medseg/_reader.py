"""npe2 reader: NIfTI files, DICOM files and DICOM folders -> napari layers with geometry.

``get_reader`` only looks at the path (extension, folder, DICOM magic bytes); all reading
happens in the returned function, which calls :mod:`napari_medseg.io`. Read errors become a
one-line napari notification and no layer, never a traceback (napari's "null layer" sentinel
``[(None,)]`` tells it that the reader handled the path).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

LayerData = tuple[Any, ...]
ReaderFunction = Callable[[Any], list[LayerData]]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOM_SUFFIXES = (".dcm", ".ima", ".dicom")
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
    return name.endswith(NIFTI_SUFFIXES + DICOM_SUFFIXES)


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


def get_reader(path: str | Sequence[str]) -> ReaderFunction | None:
    """Return a reader for NIfTI / DICOM paths, else ``None`` (fast: no pixel reading).

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
        elif not (_is_candidate_file(p) or (p.is_file() and _has_dicom_magic(p))):
            return None
    return read_paths


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
    if is_label_volume(volume, path):
        array = np.asarray(volume.array)
        if array.dtype.kind == "b" or (array.dtype.kind == "f"):
            array = array.astype(np.uint16 if array.max(initial=0) > 255 else np.uint8)
        classes = dataset_classes(path) if path is not None else None
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

    Returns
    -------
    Path or None
    """
    p = Path(image_path)
    if not p.is_file():
        return None
    stem = _nifti_stem(p.name)
    stems = [stem]
    if len(stem) > 5 and stem[-5] == "_" and stem[-4:].isdigit():
        stems.append(stem[:-5])  # nnU-Net channel suffix
    candidates: list[Path] = []
    parent = p.parent.name
    if parent.lower().startswith("images"):
        labels_dir = p.parent.parent / ("labels" + parent[len("images"):])
        for s in stems:
            candidates += [labels_dir / f"{s}.nii.gz", labels_dir / f"{s}.nii"]
    for s in stems:
        for tag in ("labels", "label", "seg", "segmentation", "mask"):
            for sep in ("_", "-", "."):
                candidates += [p.parent / f"{s}{sep}{tag}.nii.gz", p.parent / f"{s}{sep}{tag}.nii"]
    for c in candidates:
        if c.is_file() and c.resolve() != p.resolve():
            return c
    return None


def dataset_classes(labels_path: str | os.PathLike[str]) -> dict[int, dict[str, str]] | None:
    """Class names for a labels file: its ``.classes.json`` sidecar, else the MSD
    ``dataset.json`` one folder up (``labels: {"1": "Anterior", ...}``)."""
    import json

    from napari_medseg.ui._layers import normalise_classes, read_classes_sidecar

    p = Path(labels_path)
    table = read_classes_sidecar(p)
    if table:
        return table
    for folder in (p.parent, p.parent.parent):
        ds = folder / "dataset.json"
        if ds.is_file():
            try:
                labels = json.loads(ds.read_text()).get("labels") or {}
                if labels and all(str(k).isdigit() for k in labels):
                    return normalise_classes(labels)
                # nnU-Net v2 style: {"background": 0, "Anterior": 1}
                return normalise_classes({int(v): k for k, v in labels.items()}) or None
            except (OSError, ValueError, TypeError, AttributeError):
                return None
    return None
