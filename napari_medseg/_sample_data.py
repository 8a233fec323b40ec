"""npe2 sample data: a real hippocampus MRI with its labels, and a synthetic CT phantom."""

from __future__ import annotations

from pathlib import Path
from typing import Any

LayerData = tuple[Any, ...]


def _hippocampus_image() -> Path:
    """First image file of the shipped hippocampus sample (MSD Task04, CC BY-SA 4.0)."""
    from napari_medseg.io import MedsegIOError, sample_data_dir

    folder = Path(sample_data_dir()) / "hippocampus"
    images = sorted((folder / "imagesTr").glob("*.nii*")) or sorted(
        p for p in folder.glob("*.nii*") if "label" not in p.name.lower()
    )
    if not images:
        raise MedsegIOError(f"The hippocampus sample is missing from {folder}; reinstall the plugin.")
    return images[0]


def hippocampus_sample() -> list[LayerData]:
    """Hippocampus MRI (MSD Task04) as an Image layer plus its Anterior/Posterior labels.

    Data: Medical Segmentation Decathlon, Task04_Hippocampus, CC BY-SA 4.0
    (see ``sample_data/hippocampus/SOURCE.md``).
    """
    from napari_medseg._reader import find_matching_labels, read_path

    image = _hippocampus_image()
    layers = read_path(image)
    labels = find_matching_labels(image)
    if labels is not None:
        layers += read_path(labels)
    return layers


def ct_phantom_sample() -> list[LayerData]:
    """Synthetic 3D CT-like phantom (HU, body, organs, noise) with its ground-truth labels."""
    from napari_medseg.phantom import PHANTOM_CLASSES, make_ct_phantom
    from napari_medseg.ui._layers import image_layer_kwargs, labels_layer_kwargs

    image, labels = make_ct_phantom()
    image.name = image.name if image.name != "volume" else "CT phantom"
    labels.name = labels.name if labels.name != "volume" else "CT phantom labels"
    return [
        (image.array, image_layer_kwargs(image), "image"),
        (labels.array, labels_layer_kwargs(labels, classes=PHANTOM_CLASSES), "labels"),
    ]
