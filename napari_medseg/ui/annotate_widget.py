"""Annotate dock: labels layer on the image grid, class table, brush in mm, intensity-constrained
painting, slice interpolation, classical pre-segmentation, sparse-slice marks, save as NIfTI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QColorDialog,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_medseg.ui._controls import (
    BACKGROUND_VOXELS,
    LayerCombo,
    button,
    double_spin,
    edit_labels,
    hint,
    keep_new_images_in_view,
    layer_key,
    run_in_worker,
    same_layer,
    spin,
)
from napari_medseg.ui._layers import (
    add_labels_for_image,
    default_class_color,
    image_layers,
    intensity_array,
    is_rgb_layer,
    labels_for_saving,
    labels_layers,
    layer_classes,
    length_unit,
    luminance,
    medseg_metadata,
    set_layer_classes,
    spatial_shape,
    update_medseg_metadata,
    volume_from_layer,
    write_classes_sidecar,
)
from napari_medseg.ui._notify import catch_errors, notify_errors
from napari_medseg.ui._settings import get_setting, last_folder, remember_folder, set_setting
from napari_medseg.ui.interactive_section import InteractiveSection

CLASS_COLUMNS = ("Value", "Name", "Colour")
INTERP_TIP = ("Fill the slices between painted slices of the selected class (along the axis "
              "you are scrolling through)")
MARK_TIP = "Mark the current axial slice as fully annotated (sparse annotation)"
NO_SLICES_TIP = "A 2D picture has a single slice: slice tools do not apply (paint it directly)"
PRESEG_METHODS = {
    "threshold": "Threshold (window or Otsu)",
    "region_grow": "Region grow from a seed point",
    "kmeans": "k-means clustering",
    "gmm": "Gaussian mixture (EM)",
    "lungs_ct": "Lungs (CT)",
}

#: Name given to a pre-segmentation's new labels layer ("<image> <name>").
PRESEG_LAYER_NAMES = {"lungs_ct": "lungs"}

#: Pre-segmentations that only make sense on one modality (others: disabled with a tooltip).
MODALITY_PRESEG_METHODS = {"lungs_ct": "CT"}

#: Pre-segmentations that take seconds whatever the image size (imports, model fitting): always
#: run in a worker.
SLOW_PRESEG_METHODS = ("kmeans", "gmm", "lungs_ct")

#: Said where an intensity tool works on a colour picture's brightness.
LUMINANCE_NOTE = ("On a colour picture these use its brightness (luminance, "
                  "0.299 R + 0.587 G + 0.114 B).")


_CLUSTERING_IMPORT: list[Any] = []  # the one import thread, once started


def _import_clustering_in_background() -> None:
    """Import scikit-learn once, in a daemon thread, when k-means / GMM is chosen."""
    import threading

    from napari_medseg.editing.presegment import import_clustering

    if not _CLUSTERING_IMPORT:
        thread = threading.Thread(target=import_clustering, name="medseg-import-sklearn",
                                  daemon=True)
        _CLUSTERING_IMPORT.append(thread)
        thread.start()


def _lungs_ct() -> Any | None:
    """The core's ``lungs_ct`` pre-segmentation, or None in a version without it."""
    from napari_medseg.editing import presegment

    return getattr(presegment, "lungs_ct", None)


def current_slice_axis(viewer: Any, ndim: int) -> int:
    """Array axis that is sliced in the current 2D view (0 = axial for (Z, Y, X) data)."""
    not_displayed = list(viewer.dims.not_displayed)
    offset = viewer.dims.ndim - ndim
    axes = [a - offset for a in not_displayed if a - offset >= 0]
    return axes[0] if axes else 0


def current_slice_index(viewer: Any, layer: Any, axis: int) -> int:
    """Index along ``axis`` of the slice shown for ``layer`` (data coordinates)."""
    point = layer.world_to_data(viewer.dims.point)
    return int(np.clip(np.round(point[axis]), 0, layer.data.shape[axis] - 1))


class AnnotateWidget(QWidget):
    """Create and manage annotation labels for an image.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        keep_new_images_in_view(napari_viewer)
        self.seed: tuple[int, ...] | None = None
        self.worker: Any = None  # background job on a large volume (tests wait on it)
        self._window_image: Any = None  # image whose display window seeded low/high
        self._constrained_layers: set[str | None] = set()
        self._brush_synced: set[str | None] = set()
        self._reverting = False
        layout = QVBoxLayout(self)

        # --- layers ----------------------------------------------------------------------
        box = QGroupBox("Layers")
        form = QFormLayout(box)
        self.image_combo = LayerCombo(self.viewer, image_layers, "(no image open)")
        self.image_combo.setToolTip("The image being annotated (labels use its voxel grid)")
        self.image_combo.currentIndexChanged.connect(self._on_image_changed)
        form.addRow("Image", self.image_combo)
        self.labels_combo = LayerCombo(self.viewer, labels_layers, "(no labels yet)")
        self.labels_combo.setToolTip("The Labels layer the tools below change")
        self.labels_combo.currentIndexChanged.connect(self._on_labels_changed)
        form.addRow("Labels", self.labels_combo)
        self.new_button = button("New labels layer", "Create an empty Labels layer on the "
                                 "image's grid (same shape, spacing and orientation)",
                                 self._on_new_labels)
        form.addRow(self.new_button)
        layout.addWidget(box)

        # --- classes ---------------------------------------------------------------------
        box = QGroupBox("Classes")
        col = QVBoxLayout(box)
        self.class_table = QTableWidget(0, len(CLASS_COLUMNS))
        self.class_table.setHorizontalHeaderLabels(CLASS_COLUMNS)
        self.class_table.verticalHeader().setVisible(False)
        self.class_table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.class_table.setSelectionMode(QAbstractItemView.SingleSelection)
        header = self.class_table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeToContents)
        self.class_table.setToolTip("Label classes: edit a name in place, double-click a colour "
                                    "to change it; selecting a row picks it for painting")
        self.class_table.setMaximumHeight(140)
        self.class_table.itemChanged.connect(self._on_class_item_changed)
        self.class_table.cellDoubleClicked.connect(self._on_class_double_clicked)
        self.class_table.itemSelectionChanged.connect(self._on_class_selected)
        col.addWidget(self.class_table)
        row = QHBoxLayout()
        row.addWidget(button("Add class", "Add a class with the next free value",
                             self._on_add_class))
        row.addWidget(button("Remove class", "Remove the selected class from the table (voxels "
                             "keep their value)", self._on_remove_class))
        col.addLayout(row)
        layout.addWidget(box)

        # --- brush -----------------------------------------------------------------------
        box = QGroupBox("Brush")
        form = QFormLayout(box)
        self.brush_mm = double_spin(get_setting("annotate/brush_mm", 5.0), 0.1, 200.0,
                                    "Brush diameter in millimetres (converted to voxels with "
                                    "the in-plane spacing)", " mm")
        self.brush_mm.valueChanged.connect(self._apply_brush_size)
        self.brush_px = QLabel("")
        form.addRow("Brush size", self._pair(self.brush_mm, self.brush_px))
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
        layout.addWidget(box)

        # --- interactive: clicks and grow from seeds -------------------------------------
        self.interactive = InteractiveSection(self)
        layout.addWidget(self.interactive)

        # --- tools -----------------------------------------------------------------------
        box = QGroupBox("Slices")
        col = QVBoxLayout(box)
        self.interp_button = button("Interpolate between slices", INTERP_TIP,
                                    self._on_interpolate)
        col.addWidget(self.interp_button)
        row = QHBoxLayout()
        self.mark_button = button("Mark slice annotated", MARK_TIP, self._on_mark_slice)
        self.unmark_button = button("Unmark", "Remove the mark of the current slice",
                                    self._on_unmark_slice)
        self.mark_all_button = button("Mark all labelled", "Mark every slice that contains "
                                      "labels as annotated", self._on_mark_labelled)
        self.clear_marks_button = button("Clear", "Remove all slice marks: the whole volume "
                                         "counts as annotated again", self._on_clear_marks)
        for b in (self.mark_button, self.unmark_button, self.mark_all_button,
                  self.clear_marks_button):
            row.addWidget(b)
        col.addLayout(row)
        self.marks_label = hint("No slice marks: the whole volume counts as annotated.")
        col.addWidget(self.marks_label)
        layout.addWidget(box)

        # --- pre-segmentation ---------------------------------------------------------
        box = QGroupBox("Pre-segmentation")
        form = QFormLayout(box)
        self.method_combo = QComboBox()
        for key, text in PRESEG_METHODS.items():
            self.method_combo.addItem(text, key)
        self.method_combo.setToolTip("Classical method that proposes labels for you to correct")
        self.method_combo.currentIndexChanged.connect(self._update_method_controls)
        form.addRow("Method", self.method_combo)
        self.otsu_check = QCheckBox("Otsu (automatic threshold)")
        self.otsu_check.setToolTip("Choose the threshold automatically; otherwise use the "
                                   "intensity window above")
        self.otsu_check.setChecked(True)
        form.addRow(self.otsu_check)
        self.tolerance_spin = double_spin(50.0, 0.0, 1e6, "Region growing accepts neighbours "
                                          "whose intensity is within this distance of the seed",
                                          decimals=1, step=5)
        form.addRow("Tolerance", self.tolerance_spin)
        self.seed_button = button("Pick seed point", "Then click on the image to choose where "
                                  "region growing starts")
        self.seed_button.setCheckable(True)
        self.seed_button.toggled.connect(self._on_pick_seed)
        self.seed_label = QLabel("no seed")
        form.addRow(self._pair(self.seed_button, self.seed_label))
        self.n_classes_spin = spin(3, 2, 10, "Number of intensity clusters (k-means / GMM)")
        form.addRow("Clusters", self.n_classes_spin)
        self.airways_check = QCheckBox("Exclude airways (trachea, main bronchi)")
        self.airways_check.setChecked(True)
        self.airways_check.setToolTip("Lungs (CT): leave the trachea and main bronchi out of "
                                      "the lung mask")
        form.addRow(self.airways_check)
        self.target_combo = QComboBox()
        self.target_combo.addItem("New labels layer", "new")
        self.target_combo.addItem("Selected class of current labels", "current")
        self.target_combo.setToolTip("Where the result goes; into the current labels it only "
                                     "fills background voxels and can be undone with Ctrl+Z")
        form.addRow("Result", self.target_combo)
        self.preseg_button = button("Run pre-segmentation", "Run the chosen method on the image",
                                    self._on_presegment)
        form.addRow(self.preseg_button)
        self.method_note = hint("")
        self.method_note.setVisible(False)
        form.addRow(self.method_note)
        layout.addWidget(box)

        # --- save ------------------------------------------------------------------------
        box = QGroupBox("Save")
        col = QVBoxLayout(box)
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
        layout.addWidget(box)
        layout.addStretch(1)

        self.labels_combo.pair_with(self.image_combo)  # labels of the chosen image only
        self._update_method_controls()
        self._on_labels_changed()
        self._on_image_changed()

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _pair(a: QWidget, b: QWidget) -> QWidget:
        w = QWidget()
        row = QHBoxLayout(w)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(a)
        row.addWidget(b, 1)
        return w

    def _labels(self) -> Any:
        return self.labels_combo.require("Labels layer")

    def _image_for(self, labels: Any) -> Any:
        image = self.image_combo.require("image")
        if spatial_shape(image) != spatial_shape(labels):
            raise ValueError(f"image '{image.name}' {spatial_shape(image)} and labels "
                             f"'{labels.name}' {spatial_shape(labels)} have different shapes")
        return image

    def selected_class(self) -> int:
        """Label value selected for painting (the labels layer's ``selected_label``)."""
        layer = self.labels_combo.layer()
        return int(layer.selected_label) if layer is not None else 1

    # ------------------------------------------------------------------ layers
    @catch_errors("New labels")
    def _on_new_labels(self) -> Any:
        image = self.image_combo.require("image")
        classes = None
        current = self.labels_combo.layer()
        if current is not None and layer_classes(current):
            classes = layer_classes(current)
        layer = add_labels_for_image(self.viewer, image, classes=classes)
        self.labels_combo.set_layer(layer)
        layer.mode = "paint"
        self.viewer.layers.selection.active = layer
        return layer

    def _on_labels_changed(self, *_: Any) -> None:
        layer = self.labels_combo.layer()
        if layer is not None and layer_key(layer) not in self._brush_synced:
            layer.events.brush_size.connect(self._on_layer_brush_size)
            layer.events.selected_label.connect(self._on_layer_selected_label)
            self._brush_synced.add(layer_key(layer))
        self._fill_class_table()
        self._apply_brush_size()
        self._update_marks_label()
        self._update_slice_tools()
        if layer is not None and self.constrain_check.isChecked():
            self._connect_constraint(layer)

    # ------------------------------------------------------------------ classes
    def _fill_class_table(self) -> None:
        layer = self.labels_combo.layer()
        classes = layer_classes(layer) if layer is not None else {}
        self.class_table.blockSignals(True)
        self.class_table.setRowCount(len(classes))
        for row, (value, entry) in enumerate(classes.items()):
            v = QTableWidgetItem(str(value))
            v.setFlags(v.flags() & ~Qt.ItemIsEditable)
            v.setToolTip("Label value stored in the voxels")
            name = QTableWidgetItem(entry["name"])
            name.setToolTip("Class name (edit in place)")
            color = QTableWidgetItem(entry["color"])
            color.setBackground(QColor(entry["color"]))
            color.setFlags(color.flags() & ~Qt.ItemIsEditable)
            color.setToolTip("Double-click to choose another colour")
            for c, item in enumerate((v, name, color)):
                self.class_table.setItem(row, c, item)
        self.class_table.blockSignals(False)
        if layer is not None:
            values = list(classes)
            if layer.selected_label in values:
                self.class_table.selectRow(values.index(layer.selected_label))

    def _on_layer_selected_label(self, event: Any = None) -> None:
        """napari's label spinner (or a picked colour) changed: highlight that class's row."""
        try:
            layer = self.labels_combo.layer()
            if layer is None or (event is not None and not same_layer(event.source, layer)):
                return
            values = [int(self.class_table.item(r, 0).text())
                      for r in range(self.class_table.rowCount())]
            value = int(layer.selected_label)
            self.class_table.blockSignals(True)
            if value in values:
                self.class_table.selectRow(values.index(value))
            else:
                self.class_table.clearSelection()
            self.class_table.blockSignals(False)
        except RuntimeError:  # widget already deleted
            pass

    def classes_from_table(self) -> dict[int, dict[str, str]]:
        """The class table as shown: ``{value: {"name", "color"}}``."""
        out = {}
        for row in range(self.class_table.rowCount()):
            value = int(self.class_table.item(row, 0).text())
            out[value] = {"name": self.class_table.item(row, 1).text().strip() or f"label {value}",
                          "color": self.class_table.item(row, 2).text()}
        return out

    def _store_classes(self, classes: dict[int, dict[str, str]]) -> None:
        layer = self._labels()
        set_layer_classes(layer, classes)
        self._fill_class_table()

    @catch_errors("Rename class")
    def _on_class_item_changed(self, item: QTableWidgetItem) -> None:
        if item.column() == 1 and self.labels_combo.layer() is not None:
            self._store_classes(self.classes_from_table())

    @catch_errors("Change colour")
    def _on_class_double_clicked(self, row: int, column: int) -> None:
        if column != 2:
            return
        current = QColor(self.class_table.item(row, 2).text())
        color = QColorDialog.getColor(current, self, "Class colour")
        if color.isValid():
            self.set_class_color(int(self.class_table.item(row, 0).text()), color.name())

    def set_class_color(self, value: int, color: str) -> None:
        """Set the colour (``#rrggbb``) of class ``value`` in the table and the layer."""
        classes = self.classes_from_table()
        classes[value]["color"] = QColor(color).name()
        self._store_classes(classes)

    def set_class_name(self, value: int, name: str) -> None:
        """Rename class ``value``."""
        classes = self.classes_from_table()
        classes[value]["name"] = name
        self._store_classes(classes)

    @catch_errors("Add class")
    def _on_add_class(self) -> None:
        classes = self.classes_from_table()
        value = max(classes, default=0) + 1
        if value == 255:
            value += 1  # 255 marks unannotated voxels
        classes[value] = {"name": f"label {value}", "color": default_class_color(value)}
        self._store_classes(classes)
        self._labels().selected_label = value
        self._fill_class_table()

    @catch_errors("Remove class")
    def _on_remove_class(self) -> None:
        rows = self.class_table.selectionModel().selectedRows()
        if not rows:
            raise ValueError("select a class row first")
        classes = self.classes_from_table()
        classes.pop(int(self.class_table.item(rows[0].row(), 0).text()), None)
        self._store_classes(classes)

    def _on_class_selected(self) -> None:
        layer = self.labels_combo.layer()
        rows = self.class_table.selectionModel().selectedRows()
        if layer is not None and rows:
            layer.selected_label = int(self.class_table.item(rows[0].row(), 0).text())

    # ------------------------------------------------------------------ brush
    def _apply_brush_size(self, *_: Any) -> None:
        layer = self.labels_combo.layer()
        mm = self.brush_mm.value()
        set_setting("annotate/brush_mm", mm)
        if layer is None:
            self.brush_px.setText("")
            return
        spacing = volume_from_layer(layer).spacing
        in_plane = min(spacing[-2:])
        unit = length_unit(layer)
        self.brush_mm.setSuffix(f" {unit}")
        px = max(1, int(round(mm / in_plane)))
        layer.brush_size = px
        self.brush_px.setText(f"= {px} voxels" if unit == "mm" else f"= {px} pixels")
        self.brush_px.setToolTip("" if unit == "mm" else "The file gives no pixel size: "
                                 "sizes are in pixels")

    def _on_layer_brush_size(self, event: Any = None) -> None:
        """napari's brush slider moved: show the new size in mm too."""
        try:
            layer = self.labels_combo.layer()
            if layer is None or (event is not None and not same_layer(event.source, layer)):
                return
            in_plane = min(volume_from_layer(layer).spacing[-2:])
            px = int(layer.brush_size)
            self.brush_mm.blockSignals(True)
            self.brush_mm.setValue(px * in_plane)
            self.brush_mm.blockSignals(False)
            self.brush_px.setText(f"= {px} voxels")
        except RuntimeError:  # widget already deleted
            pass

    # ------------------------------------------------------------------ intensity constraint
    def _on_image_changed(self, *_: Any) -> None:
        """A different image: start the intensity window from its display window."""
        self._update_slice_tools()
        self._update_method_controls()
        image = self.image_combo.layer()
        if image is not None and not same_layer(image, self._window_image):
            self._window_image = image
            self._on_window_from_display()

    def _on_window_from_display(self) -> None:
        image = self.image_combo.layer()
        if image is not None:
            lo, hi = image.contrast_limits
            self.low_spin.setValue(lo)
            self.high_spin.setValue(hi)

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
        low, high = sorted((self.low_spin.value(), self.high_spin.value()))
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

    # ------------------------------------------------------------------ slices
    @catch_errors("Interpolate")
    def _on_interpolate(self) -> Any:
        from napari_medseg.editing import interpolate_slices

        layer = self._labels()
        volume = volume_from_layer(layer)
        if volume.ndim != 3:
            raise ValueError("interpolation needs a 3D labels layer")
        axis = current_slice_axis(self.viewer, volume.ndim)
        label = self.selected_class()
        spacing = volume.spacing

        def done(n: int) -> None:
            self.save_label.setText(f"Interpolation filled {n} voxels of class {label}.")

        self.worker = edit_labels(
            layer, lambda a: interpolate_slices(a, label, axis, spacing=spacing), done,
            "Interpolate", self._set_busy)
        return self.worker

    def _set_busy(self, busy: bool) -> None:
        if not busy and self.save_label.text().startswith("Working"):
            self.save_label.setText("")
        self._busy = busy
        self._update_slice_tools()
        self._update_method_controls()
        if busy:
            self.save_label.setText("Working … (you can keep painting)")

    def _grid_ndim(self) -> int | None:
        """Spatial dimensions of the chosen labels (else image) layer; None without layers."""
        for layer in (self.labels_combo.layer(), self.image_combo.layer()):
            if layer is not None:
                return len(spatial_shape(layer))
        return None

    def _update_slice_tools(self) -> None:
        """Slice tools (interpolation, slice marks) apply to 3D only: disabled on 2D pictures."""
        flat = self._grid_ndim() == 2
        busy = getattr(self, "_busy", False)
        self.interp_button.setEnabled(not flat and not busy)
        self.interp_button.setToolTip(NO_SLICES_TIP if flat else INTERP_TIP)
        for b in (self.mark_button, self.unmark_button, self.mark_all_button,
                  self.clear_marks_button):
            b.setEnabled(not flat)
        self.mark_button.setToolTip(NO_SLICES_TIP if flat else MARK_TIP)

    def annotated_slices(self) -> list[int]:
        """Slice indices (axis 0) marked as annotated on the current labels layer."""
        layer = self.labels_combo.layer()
        if layer is None:
            return []
        return list(medseg_metadata(layer).get("annotated_slices") or [])

    def _set_marks(self, marks: list[int]) -> None:
        layer = self._labels()
        update_medseg_metadata(layer, annotated_slices=sorted({int(m) for m in marks}))
        self._update_marks_label()

    def _current_axial_index(self, layer: Any) -> int:
        if layer.data.ndim != 3:
            raise ValueError("slice marks need a 3D labels layer")
        return current_slice_index(self.viewer, layer, 0)

    @catch_errors("Mark slice")
    def _on_mark_slice(self) -> None:
        layer = self._labels()
        self._set_marks(self.annotated_slices() + [self._current_axial_index(layer)])

    @catch_errors("Unmark slice")
    def _on_unmark_slice(self) -> None:
        layer = self._labels()
        index = self._current_axial_index(layer)
        self._set_marks([m for m in self.annotated_slices() if m != index])

    @catch_errors("Mark labelled slices")
    def _on_mark_labelled(self) -> None:
        layer = self._labels()
        data = np.asarray(layer.data)
        if data.ndim != 3:
            raise ValueError("slice marks need a 3D labels layer")
        labelled = np.flatnonzero(data.reshape(data.shape[0], -1).any(axis=1))
        self._set_marks(self.annotated_slices() + [int(i) for i in labelled])

    @catch_errors("Clear marks")
    def _on_clear_marks(self) -> None:
        self._set_marks([])

    def _update_marks_label(self) -> None:
        layer = self.labels_combo.layer()
        marks = self.annotated_slices()
        if layer is not None and len(spatial_shape(layer)) == 2:
            self.marks_label.setText("2D picture: the whole picture counts as annotated.")
            return
        if layer is None or not marks:
            self.marks_label.setText("No slice marks: the whole volume counts as annotated.")
            return
        shown = ", ".join(map(str, marks[:12])) + (" …" if len(marks) > 12 else "")
        self.marks_label.setText(
            f"{len(marks)} of {layer.data.shape[0]} axial slices marked annotated ({shown}); "
            "the others are saved as 255 = ignored by training."
        )

    # ------------------------------------------------------------------ pre-segmentation
    def _update_method_controls(self, *_: Any) -> None:
        method = self.method_combo.currentData()
        if method in ("kmeans", "gmm"):
            _import_clustering_in_background()
        self.otsu_check.setVisible(method == "threshold")
        self.tolerance_spin.setEnabled(method == "region_grow")
        self.seed_button.setEnabled(method == "region_grow")
        self.n_classes_spin.setEnabled(method in ("kmeans", "gmm"))
        self.airways_check.setVisible(method == "lungs_ct")
        reason = self.method_unavailable(method)
        busy = getattr(self, "_busy", False)
        self.preseg_button.setEnabled(reason is None and not busy)
        image = self.image_combo.layer()
        tip = "Run the chosen method on the image"
        if image is not None and is_rgb_layer(image) and method != "lungs_ct":
            tip += ". " + LUMINANCE_NOTE
        self.preseg_button.setToolTip(reason or tip)
        self.method_note.setText(reason or "")
        self.method_note.setVisible(reason is not None)
        for i in range(self.method_combo.count()):
            key = self.method_combo.itemData(i)
            why = self.method_unavailable(key)
            self.method_combo.setItemData(i, why or "", Qt.ToolTipRole)

    def method_unavailable(self, method: str | None) -> str | None:
        """Why ``method`` cannot run on the chosen image (None when it can)."""
        needed = MODALITY_PRESEG_METHODS.get(str(method))
        if needed is None:
            return None
        image = self.image_combo.layer()
        if image is None:
            return f"{PRESEG_METHODS[method]} needs a {needed} image"
        if is_rgb_layer(image):
            return f"{PRESEG_METHODS[method]} needs a {needed} image, not a colour picture"
        modality = str(volume_from_layer(image).modality or "unknown")
        if modality.upper() != needed:
            return (f"{PRESEG_METHODS[method]} needs a {needed} image "
                    f"('{image.name}' is {modality})")
        if method == "lungs_ct" and _lungs_ct() is None:
            return "Lungs (CT) is not available in this version"
        return None

    def _on_pick_seed(self, on: bool) -> None:
        callbacks = self.viewer.mouse_drag_callbacks
        if on and self._seed_callback not in callbacks:
            callbacks.append(self._seed_callback)
            self.seed_label.setText("click on the image …")
        elif not on and self._seed_callback in callbacks:
            callbacks.remove(self._seed_callback)

    def _seed_callback(self, viewer: Any, event: Any) -> None:
        image = self.image_combo.layer()
        if image is None:
            return
        point = np.round(image.world_to_data(event.position)).astype(int)
        self.set_seed(tuple(int(p) for p in point))
        self.seed_button.setChecked(False)

    def set_seed(self, point: tuple[int, ...]) -> None:
        """Set the region-growing seed (voxel index, array order)."""
        self.seed = tuple(int(p) for p in point)
        self.seed_label.setText("seed at voxel " + ", ".join(map(str, self.seed)))

    def _segmenter(self, modality: str | None = None,
                   spacing: tuple[float, ...] | None = None) -> tuple[str, Any]:
        """(method key, function image -> label map) for the chosen pre-segmentation.

        k-means and the Gaussian mixture leave the air around the body at 0 (its threshold
        follows ``modality``: -500 HU for CT). ``spacing`` (mm) is for Lungs (CT).
        """
        from napari_medseg import editing

        method = self.method_combo.currentData()
        low, high = sorted((self.low_spin.value(), self.high_spin.value()))
        n_classes = self.n_classes_spin.value()
        if method == "threshold":
            if self.otsu_check.isChecked():
                return method, lambda img: editing.threshold_segment(img, method="otsu")
            return method, lambda img: editing.threshold_segment(img, method="window", low=low,
                                                                 high=high)
        if method == "region_grow":
            if self.seed is None:
                raise ValueError("pick a seed point first (button 'Pick seed point', then click)")
            seed, tolerance = self.seed, self.tolerance_spin.value()
            return method, lambda img: editing.region_grow(img, seed, tolerance=tolerance)
        if method == "kmeans":
            return method, lambda img: editing.kmeans_segment(img, n_classes, modality=modality)
        if method == "lungs_ct":
            lungs_ct = _lungs_ct()
            if lungs_ct is None:
                raise ValueError("Lungs (CT) is not available in this version")
            airways = self.airways_check.isChecked()
            return method, lambda img: lungs_ct(img, spacing, modality=modality or "CT",
                                                exclude_airways=airways)
        return method, lambda img: editing.gmm_segment(img, n_classes, modality=modality)

    @catch_errors("Pre-segmentation")
    def _on_presegment(self) -> Any:
        """Run the chosen pre-segmentation; returns its worker (None when done at once).

        Clustering always runs in a worker (importing and fitting takes seconds even on a small
        image); thresholds and region growing do so above ``BACKGROUND_VOXELS``. Into the
        current labels the result is one undo step.
        """
        image = self.image_combo.require("image")
        reason = self.method_unavailable(self.method_combo.currentData())
        if reason is not None:
            raise ValueError(reason)
        volume = volume_from_layer(image)
        # intensity methods see one value per pixel: a colour picture's luminance
        array = intensity_array(image) if volume.rgb else volume.array
        method, segment = self._segmenter(volume.modality, volume.spacing)
        slow = method in SLOW_PRESEG_METHODS or array.size > BACKGROUND_VOXELS
        if self.target_combo.currentData() == "new":
            def labels_of(img: np.ndarray) -> tuple[np.ndarray, int]:
                result = np.asarray(segment(img))
                return result.astype(np.uint8, copy=False), int(result.max(initial=0))

            def add(result: tuple[np.ndarray, int]) -> None:
                self._add_presegmentation(image, method, *result)

            if not slow:
                add(labels_of(array))
                return None
            self._set_busy(True)
            self.worker = run_in_worker(labels_of, array, on_returned=add,
                                        action="Pre-segmentation",
                                        on_finished=lambda: self._set_busy(False))
            return self.worker
        layer = self._labels()
        if tuple(spatial_shape(layer)) != tuple(array.shape):
            raise ValueError(f"labels '{layer.name}' and image '{image.name}' differ in shape")
        label = self.selected_class()

        def compute(current: np.ndarray) -> np.ndarray:
            result = np.asarray(segment(array))
            values = np.where(result > 0, label if result.max(initial=0) <= 1 else result, 0)
            fill = (current == 0) & (values > 0)
            return np.where(fill, values, current).astype(current.dtype)

        def done(n: int) -> None:
            self.save_label.setText(f"{PRESEG_METHODS[method]}: {n} background voxels "
                                    "labelled (Ctrl+Z undoes it).")

        self.worker = edit_labels(layer, compute, done, "Pre-segmentation", self._set_busy,
                                  background=slow)
        return self.worker

    def _add_presegmentation(self, image: Any, method: str, result: np.ndarray,
                             n_values: int | None = None) -> Any:
        from napari_medseg.ui._layers import default_classes

        if n_values is None:
            n_values = int(result.max(initial=0))
        classes = default_classes(max(n_values, 1))
        if method == "lungs_ct":
            classes = {v: {**entry, "name": "lungs" if n_values <= 1 else f"lung {v}"}
                       for v, entry in classes.items()}
        layer = add_labels_for_image(self.viewer, image, data=result.astype(np.uint8, copy=False),
                                     name=f"{image.name} {PRESEG_LAYER_NAMES.get(method, method)}",
                                     classes=classes)
        self.labels_combo.set_layer(layer)
        self.save_label.setText(f"{PRESEG_METHODS.get(method, method)}: new labels layer "
                                f"'{layer.name}'.")
        return layer

    # ------------------------------------------------------------------ save
    def default_save_path(self) -> Path:
        """``<image>_labels.nii.gz`` next to the image's file (or in the last save folder)."""
        layer = self._labels()
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
            for suffix in (".nii.gz", ".nii", ".dcm", ".png", ".jpg", ".jpeg", ".tif", ".tiff",
                           ".bmp", ".gif"):
                if name.lower().endswith(suffix):
                    name = name[: -len(suffix)]
                    break
            return p.parent / f"{name}_labels.nii.gz"
        base = image.name if image is not None else layer.name
        return Path(last_folder("save")) / f"{base}_labels.nii.gz"

    def save_labels(self, path: str | Path) -> Path:
        """Save the current labels (image geometry, sparse marks -> 255, class sidecar)."""
        from napari_medseg.io import save_labels

        layer = self._labels()
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
