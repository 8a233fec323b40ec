"""The Annotate dock's *Save* section: write the labels with the image's geometry.

*Save labels next to image* writes ``<image>_labels.nii.gz`` beside the image's file (or in the
last save folder) - ``<image>_labels.png`` for a 2D picture (PNG, JPEG, TIFF ...: 8-bit, or
16-bit above 255, with the pixel size when the picture states one), which opens again as the
same Labels; *Save as…* asks where (NIfTI, PNG or TIFF). Sparse-slice marks become 255 (ignored
by training) and the class table goes to a ``.classes.json`` sidecar. The section's grey line
below the buttons is the whole dock's status line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtWidgets import QFileDialog, QGroupBox, QHBoxLayout, QVBoxLayout

from napari_medseg.io.picture import LABEL_PICTURE_SUFFIXES, PICTURE_SUFFIXES
from napari_medseg.labels import write_classes_sidecar
from napari_medseg.ui._controls import button, hint
from napari_medseg.ui._layers import (
    labels_for_saving,
    layer_classes,
    medseg_metadata,
    volume_from_layer,
)
from napari_medseg.ui._notify import catch_errors
from napari_medseg.ui._settings import last_folder, remember_folder

#: File endings stripped from an image's name before ``_labels.nii.gz`` is added.
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".dcm", *PICTURE_SUFFIXES)
#: Largest label value a PNG holds (16-bit); above it a picture's labels go to TIFF.
PNG_MAX_LABEL = 65535
SAVE_FILTERS = {"nifti": "NIfTI (*.nii.gz *.nii)", "png": "PNG label picture (*.png)",
                "tiff": "TIFF label picture (*.tif *.tiff)"}


def is_picture_source(source: dict[str, Any], ndim: int) -> bool:
    """Whether labels of ``ndim`` dimensions drawn on the image file ``source`` (the layer's
    ``metadata["medseg"]["source"]``) are saved as a label picture: 2D labels on a picture
    (PNG, JPEG, TIFF ...), or on a 2D image that came from no file."""
    if ndim != 2:
        return False
    path = source.get("path")
    if not path:
        return True
    return bool(source.get("picture")) or Path(path).name.lower().endswith(PICTURE_SUFFIXES)


class SaveSection(QGroupBox):
    """Group box "Save": the two save buttons and the dock's status line.

    Parameters
    ----------
    image_combo, labels_combo : LayerCombo
        The dock's choice of image (where its file is) and labels layer (what is saved).
    """

    def __init__(self, image_combo: Any, labels_combo: Any) -> None:
        super().__init__("Save")
        self.image_combo = image_combo
        self.labels_combo = labels_combo
        col = QVBoxLayout(self)
        row = QHBoxLayout()
        self.save_button = button("Save labels next to image", "Save as <image>_labels.nii.gz "
                                  "(a 2D picture's as <image>_labels.png) beside the image "
                                  "file, with the image's geometry and a .classes.json class "
                                  "table", self._on_save_next_to_image)
        self.save_as_button = button("Save as…", "Choose where to save the labels (NIfTI; PNG "
                                     "or TIFF for a 2D picture)", self._on_save_as)
        row.addWidget(self.save_button)
        row.addWidget(self.save_as_button)
        col.addLayout(row)
        self.save_label = hint("")
        col.addWidget(self.save_label)

    def _source(self) -> dict[str, Any]:
        """The file the image (or else the labels) came from: its ``source`` metadata."""
        layer = self.labels_combo.require("Labels layer")
        for candidate in (self.image_combo.layer(), layer):
            if candidate is not None:
                meta = medseg_metadata(candidate).get("source") or {}
                if meta.get("path"):
                    return meta
        return {}

    def _suffix(self) -> str:
        """``.nii.gz``; ``.png`` for a 2D picture's labels (``.tif`` above 65535)."""
        layer = self.labels_combo.require("Labels layer")
        if not is_picture_source(self._source(), np.ndim(layer.data)):
            return ".nii.gz"
        top = int(np.max(np.asarray(layer.data), initial=0))
        return ".png" if top <= PNG_MAX_LABEL else ".tif"

    def default_save_path(self) -> Path:
        """``<image>_labels.nii.gz`` next to the image's file (or in the last save folder);
        ``<image>_labels.png`` for a 2D picture."""
        layer = self.labels_combo.require("Labels layer")
        image = self.image_combo.layer()
        suffix = self._suffix()
        path = self._source().get("path")
        if path:
            p = Path(path)
            if p.is_dir():
                return p.parent / f"{p.name}_labels{suffix}"
            name = p.name
            for known in IMAGE_SUFFIXES:
                if name.lower().endswith(known):
                    name = name[: -len(known)]
                    break
            return p.parent / f"{name}_labels{suffix}"
        base = image.name if image is not None else layer.name
        return Path(last_folder("save")) / f"{base}_labels{suffix}"

    def save_labels(self, path: str | Path) -> Path:
        """Save the current labels (image geometry, sparse marks -> 255, class sidecar).

        A path ending in ``.png``, ``.tif`` or ``.tiff`` gets a label picture with the exact
        values (:func:`~napari_medseg.io.write_picture`; 2D labels only), any other a NIfTI.
        """
        from napari_medseg.io import save_labels, write_picture

        layer = self.labels_combo.require("Labels layer")
        reference = volume_from_layer(layer)
        medseg = medseg_metadata(layer)
        array = labels_for_saving(reference.array, medseg)
        if Path(path).suffix.lower() in LABEL_PICTURE_SUFFIXES:
            out = write_picture(reference.with_array(array), path)
        else:
            out = save_labels(array, reference, path)
        if layer_classes(layer):
            write_classes_sidecar(out, layer_classes(layer))
        remember_folder(out, "save")
        self.save_label.setText(f"Saved {Path(out).name} in {Path(out).parent}")
        return Path(out)

    @catch_errors("Save labels")
    def _on_save_next_to_image(self) -> None:
        self.save_labels(self.default_save_path())

    @catch_errors("Save labels")
    def _on_save_as(self) -> None:
        default = self.default_save_path()
        if default.suffix.lower() in LABEL_PICTURE_SUFFIXES:
            filters = [SAVE_FILTERS["png"], SAVE_FILTERS["tiff"], SAVE_FILTERS["nifti"]]
        else:
            filters = [SAVE_FILTERS["nifti"]]
        path, _ = QFileDialog.getSaveFileName(self, "Save labels", str(default),
                                              ";;".join(filters))
        if path:
            self.save_labels(path)
