"""The Annotate dock's *Brush* section: brush size in millimetres and intensity-constrained
painting.

The size in mm is converted to napari's brush size in voxels with the labels' in-plane spacing
(and follows napari's own brush slider back). With *Paint only inside intensity window* on,
voxels of each brush stroke whose image intensity lies outside [low, high] are put back as they
were, in the stroke's own undo step. The window starts from the image's display window.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QCheckBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QWidget

from napari_medseg.ui._controls import button, double_spin, layer_key, same_layer
from napari_medseg.ui._layers import (
    cells,
    is_rgb_layer,
    length_unit,
    luminance,
    spatial_shape,
    volume_from_layer,
)
from napari_medseg.ui._notify import notify_errors
from napari_medseg.ui._settings import get_setting, set_setting

#: Said where an intensity tool works on a colour picture's brightness.
LUMINANCE_NOTE = ("On a colour picture these use its brightness (luminance, "
                  "0.299 R + 0.587 G + 0.114 B).")


def pair(a: QWidget, b: QWidget) -> QWidget:
    """Two widgets side by side in one form field, the second one stretching."""
    w = QWidget()
    row = QHBoxLayout(w)
    row.setContentsMargins(0, 0, 0, 0)
    row.addWidget(a)
    row.addWidget(b, 1)
    return w


class BrushSection(QGroupBox):
    """Group box "Brush": size in mm and the intensity window that constrains painting.

    Parameters
    ----------
    image_combo, labels_combo : LayerCombo
        The dock's choice of image (intensities, display window) and labels layer (brush).
    """

    def __init__(self, image_combo: Any, labels_combo: Any) -> None:
        super().__init__("Brush")
        self.image_combo = image_combo
        self.labels_combo = labels_combo
        self._window_image: Any = None  # image whose display window seeded low/high
        self._constrained_layers: set[str | None] = set()
        self._brush_synced: set[str | None] = set()
        self._reverting = False
        form = QFormLayout(self)
        self.brush_mm = double_spin(get_setting("annotate/brush_mm", 5.0), 0.1, 200.0,
                                    "Brush diameter in millimetres (converted to voxels with "
                                    "the in-plane spacing)", " mm")
        self.brush_mm.valueChanged.connect(self.apply_brush_size)
        self.brush_mm.valueChanged.connect(lambda mm: set_setting("annotate/brush_mm", mm))
        self.brush_px = QLabel("")
        form.addRow("Brush size", pair(self.brush_mm, self.brush_px))
        self.constrain_check = QCheckBox("Paint only inside intensity window")
        self.constrain_check.setToolTip("After each brush stroke, voxels whose image intensity is "
                                        "outside [low, high] are put back as they were. "
                                        + LUMINANCE_NOTE)
        self.constrain_check.toggled.connect(self._on_constrain_toggled)
        form.addRow(self.constrain_check)
        self.low_spin = double_spin(-100.0, -1e6, 1e6, "Lowest intensity that may be painted",
                                    decimals=1, step=10)
        self.high_spin = double_spin(200.0, -1e6, 1e6, "Highest intensity that may be painted",
                                     decimals=1, step=10)
        self.window_button = button("Copy display window", "Use the image's current contrast "
                                    "limits (set on the Load tab or in layer controls)",
                                    self._on_window_from_display)
        row_w = QWidget()
        r = QHBoxLayout(row_w)
        r.setContentsMargins(0, 0, 0, 0)
        r.addWidget(self.low_spin, 1)
        r.addWidget(QLabel("to"))
        r.addWidget(self.high_spin, 1)
        form.addRow("Window", row_w)
        form.addRow(self.window_button)

    def window(self) -> tuple[float, float]:
        """The intensity window ``(low, high)``, low <= high."""
        low, high = sorted((self.low_spin.value(), self.high_spin.value()))
        return low, high

    def labels_changed(self) -> None:
        """Another labels layer was chosen: follow its brush slider, size it, constrain it."""
        layer = self.labels_combo.layer()
        if layer is not None and layer_key(layer) not in self._brush_synced:
            layer.events.brush_size.connect(self._on_layer_brush_size)
            self._brush_synced.add(layer_key(layer))
        self.apply_brush_size()
        if layer is not None and self.constrain_check.isChecked():
            self._connect_constraint(layer)

    def image_changed(self) -> None:
        """A different image: start the intensity window from its display window."""
        image = self.image_combo.layer()
        if image is not None and not same_layer(image, self._window_image):
            self._window_image = image
            self._on_window_from_display()

    # ------------------------------------------------------------------ brush size
    def apply_brush_size(self, *_: Any) -> None:
        """Set the labels layer's brush (voxels) from the size in mm; remember the size."""
        layer = self.labels_combo.layer()
        mm = self.brush_mm.value()
        if layer is None:
            self.brush_px.setText("")
            return
        spacing = volume_from_layer(layer).spacing
        in_plane = min(spacing[-2:])
        unit = length_unit(layer)
        self.brush_mm.setSuffix(f" {unit}")
        px = max(1, int(round(mm / in_plane)))
        layer.brush_size = px
        self._show_cells(layer, px)

    def _show_cells(self, layer: Any, px: int) -> None:
        """``= 12 pixels`` (2D pictures) or ``= 12 voxels`` beside the size in mm (or px)."""
        unit = length_unit(layer)
        self.brush_px.setText(f"= {px} {cells(layer)}")
        self.brush_px.setToolTip("" if unit == "mm" else "The file gives no pixel size: "
                                 "sizes are in pixels")

    def _on_layer_brush_size(self, event: Any = None) -> None:
        """napari's brush slider moved: show the new size in mm (px without a pixel size)."""
        try:
            layer = self.labels_combo.layer()
            if layer is None or (event is not None and not same_layer(event.source, layer)):
                return
            in_plane = min(volume_from_layer(layer).spacing[-2:])
            px = int(layer.brush_size)
            self.brush_mm.blockSignals(True)
            self.brush_mm.setSuffix(f" {length_unit(layer)}")
            self.brush_mm.setValue(px * in_plane)
            self.brush_mm.blockSignals(False)
            self._show_cells(layer, px)
        except RuntimeError:  # widget already deleted
            pass

    # ------------------------------------------------------------------ intensity constraint
    def _on_window_from_display(self) -> None:
        image = self.image_combo.layer()
        if image is not None:
            lo, hi = image.contrast_limits
            self.low_spin.setValue(lo)
            self.high_spin.setValue(hi)

    def _image_for(self, labels: Any) -> Any:
        image = self.image_combo.require("image")
        if spatial_shape(image) != spatial_shape(labels):
            raise ValueError(f"image '{image.name}' {spatial_shape(image)} and labels "
                             f"'{labels.name}' {spatial_shape(labels)} have different shapes")
        return image

    def _connect_constraint(self, layer: Any) -> None:
        if layer_key(layer) not in self._constrained_layers:
            layer.events.paint.connect(self._on_paint)
            self._constrained_layers.add(layer_key(layer))

    def _on_constrain_toggled(self, on: bool) -> None:
        layer = self.labels_combo.layer()
        if on and layer is not None:
            self._connect_constraint(layer)

    def _on_paint(self, event: Any) -> None:
        """After a brush stroke: revert painted voxels whose intensity is outside the window."""
        if self._reverting or not self.constrain_check.isChecked():
            return
        layer, atoms = event.source, event.value

        def constrain() -> None:
            with notify_errors("Intensity-constrained painting"):
                self.constrain_last_stroke(layer, atoms)

        # napari may announce a single dab before writing it: revert once it is written
        QTimer.singleShot(0, constrain)

    def constrain_last_stroke(self, layer: Any, atoms: list[Any]) -> int:
        """Revert voxels of the stroke ``atoms`` that lie outside the intensity window.

        The revert joins the stroke's own undo step, so Ctrl+Z undoes both at once.

        Returns
        -------
        int
            Number of voxels put back.
        """
        from napari_medseg.editing import intensity_mask

        image = self._image_for(layer)
        low, high = self.window()
        indices_all: list[np.ndarray] = []
        old_all: list[np.ndarray] = []
        for atom in atoms:
            if not hasattr(atom, "slice_key"):
                continue  # data_setitem edits (tools, undo of tools): not brush strokes
            if int(atom.new_value) == 0:
                continue  # erasing is always allowed
            offsets = [s.start or 0 for s in atom.slice_key]
            region = np.asarray(image.data[atom.slice_key])
            if is_rgb_layer(image):
                region = luminance(region)
            mask = np.ones(region.shape, bool) if atom.mask is None else np.asarray(atom.mask)
            old = np.asarray(atom.old_values)
            old = old[mask] if atom.mask is None else old
            outside = ~intensity_mask(region, low, high)[mask]
            idx = np.nonzero(mask)
            indices_all.append(np.stack([i[outside] + o for i, o in zip(idx, offsets,
                                                                          strict=True)]))
            old_all.append(old[outside])
        if not indices_all:
            return 0
        indices = tuple(np.concatenate(indices_all, axis=1))
        old = np.concatenate(old_all)
        if old.size == 0:
            return 0
        current = np.asarray(layer.data[indices]).copy()
        self._reverting = True
        try:
            layer.data[indices] = old
            if isinstance(atoms, list):
                # ``atoms`` IS the stroke's undo item: the revert joins it (napari's history
                # format), so undo/redo replay stroke and revert together
                atoms.append((indices, current, old))
            layer.refresh()
        finally:
            self._reverting = False
        return int(old.size)
