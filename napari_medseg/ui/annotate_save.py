"""The Annotate dock's *Save* section: write the labels as NIfTI with the image's geometry.

*Save labels next to image* writes ``<image>_labels.nii.gz`` beside the image's file (or in the
last save folder), *Save as…* asks where. Sparse-slice marks become 255 (ignored by training)
and the class table goes to a ``.classes.json`` sidecar. The section's grey line below the
buttons is the whole dock's status line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtWidgets import QFileDialog, QGroupBox, QHBoxLayout, QVBoxLayout

from napari_medseg.io.picture import PICTURE_SUFFIXES
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
                                  "beside the image file, with the image's geometry and a "
                                  ".classes.json class table", self._on_save_next_to_image)
        self.save_as_button = button("Save as…", "Choose where to save the labels (NIfTI)",
                                     self._on_save_as)
        row.addWidget(self.save_button)
        row.addWidget(self.save_as_button)
        col.addLayout(row)
        self.save_label = hint("")
        col.addWidget(self.save_label)

    def default_save_path(self) -> Path:
        """``<image>_labels.nii.gz`` next to the image's file (or in the last save folder)."""
        layer = self.labels_combo.require("Labels layer")
        image = self.image_combo.layer()
        source = {}
        for candidate in (image, layer):
            if candidate is not None:
                meta = medseg_metadata(candidate).get("source") or {}
                if meta.get("path"):
                    source = meta
                    break
        path = source.get("path")
        if path:
            p = Path(path)
            if p.is_dir():
                return p.parent / f"{p.name}_labels.nii.gz"
            name = p.name
            for suffix in IMAGE_SUFFIXES:
                if name.lower().endswith(suffix):
                    name = name[: -len(suffix)]
                    break
            return p.parent / f"{name}_labels.nii.gz"
        base = image.name if image is not None else layer.name
        return Path(last_folder("save")) / f"{base}_labels.nii.gz"

    def save_labels(self, path: str | Path) -> Path:
        """Save the current labels (image geometry, sparse marks -> 255, class sidecar)."""
        from napari_medseg.io import save_labels

        layer = self.labels_combo.require("Labels layer")
        reference = volume_from_layer(layer)
        medseg = medseg_metadata(layer)
        out = save_labels(labels_for_saving(reference.array, medseg), reference, path)
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
        path, _ = QFileDialog.getSaveFileName(self, "Save labels", str(self.default_save_path()),
                                              "NIfTI (*.nii.gz *.nii)")
        if path:
            self.save_labels(path)
