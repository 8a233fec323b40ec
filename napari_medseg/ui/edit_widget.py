"""Edit dock: label morphology in mm, holes/islands/components, interpolation, label logic,
undo/redo shared with napari's brush (Ctrl+Z / Ctrl+Shift+Z), contours, component table."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QRadioButton,
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
    run_in_worker,
)
from napari_medseg.ui._layers import (
    labels_layers,
    layer_classes,
    length_unit,
    volume_from_layer,
)
from napari_medseg.ui._notify import catch_errors
from napari_medseg.ui._settings import get_setting, set_setting
from napari_medseg.ui.annotate_widget import current_slice_axis, current_slice_index

COMPONENT_COLUMNS = ("Label", "Piece", "Volume (mL)", "Centroid (RAS mm)")

#: Classes of the preview layer.
PREVIEW_CLASSES = {
    1: {"name": "would be added", "color": "#39ff14"},
    2: {"name": "would be removed", "color": "#ff3b30"},
}

#: Button text, tooltip and core function name of each one-click operation.
OPERATION_BUTTONS: tuple[tuple[str, str, str], ...] = (
    ("Grow", "Dilate the label by the radius (mm)", "grow_label"),
    ("Shrink", "Erode the label by the radius (mm)", "shrink_label"),
    ("Open", "Remove thin bridges and specks smaller than the radius", "open_label"),
    ("Close", "Fill gaps and dents smaller than the radius", "close_label"),
    ("Smooth", "Majority smoothing within the radius", "smooth_label"),
    ("Hollow", "Keep a shell of the label, radius = thickness", "hollow_label"),
    ("Fill holes", "Fill cavities enclosed by the label", "fill_holes"),
    ("Remove islands", "Delete pieces smaller than the minimum volume", "remove_islands"),
    ("Keep largest", "Keep only the largest connected piece", "keep_largest"),
    ("Keep piece at cursor", "Keep only the piece under the mouse cursor", "keep_component"),
    ("Interpolate slices", "Fill slices between painted slices (current slicing axis)",
     "interpolate_slices"),
)


def _call_with_supported(func: Callable[..., Any], *args: Any, **params: Any) -> Any:
    """Call ``func`` with the keyword parameters its signature accepts."""
    accepted = inspect.signature(func).parameters
    return func(*args, **{k: v for k, v in params.items() if k in accepted})


class EditWidget(QWidget):
    """Correct labels with the editing core; every operation is one undo step.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.components: list[dict[str, Any]] = []
        self.worker: Any = None  # background edit of a large volume (tests wait on it)
        self.preview_layer: Any = None
        self._pending: tuple[Any, np.ndarray, np.ndarray, str] | None = None
        layout = QVBoxLayout(self)

        # --- target ------------------------------------------------------------------
        box = QGroupBox("Target")
        form = QFormLayout(box)
        self.labels_combo = LayerCombo(self.viewer, labels_layers, "(no labels layer)")
        self.labels_combo.setToolTip("Labels layer to edit")
        self.labels_combo.currentIndexChanged.connect(self._fill_label_choices)
        form.addRow("Labels", self.labels_combo)
        self.label_combo = QComboBox()
        self.label_combo.setToolTip("Which label value the operations change")
        form.addRow("Label", self.label_combo)
        scope = QWidget()
        row = QHBoxLayout(scope)
        row.setContentsMargins(0, 0, 0, 0)
        self.slice_radio = QRadioButton("Current slice (2D)")
        self.slice_radio.setToolTip("Edit only the slice you are looking at")
        self.volume_radio = QRadioButton("Whole volume (3D)")
        self.volume_radio.setToolTip("Edit the label in 3D")
        self.volume_radio.setChecked(True)
        self._scope_group = QButtonGroup(self)
        self._scope_group.addButton(self.slice_radio)
        self._scope_group.addButton(self.volume_radio)
        row.addWidget(self.slice_radio)
        row.addWidget(self.volume_radio)
        form.addRow("Scope", scope)
        self.radius_spin = double_spin(get_setting("edit/radius_mm", 2.0), 0.1, 100.0, "Radius (or shell thickness) in mm; "
                                       "anisotropic voxels give an ellipsoid in voxels", " mm")
        self.radius_spin.valueChanged.connect(lambda v: set_setting("edit/radius_mm", v))
        form.addRow("Radius", self.radius_spin)
        self.min_volume_spin = double_spin(get_setting("edit/min_island_mm3", 50.0), 0.0, 1e7, "Islands smaller than this are "
                                           "removed (mm³; mm² on a single slice)", " mm³",
                                           decimals=0, step=10)
        self.min_volume_spin.valueChanged.connect(
            lambda v: set_setting("edit/min_island_mm3", v))
        form.addRow("Min. island", self.min_volume_spin)
        self.overwrite_check = QCheckBox("Overwrite other labels")
        self.overwrite_check.setToolTip("Let the edited label take voxels of other labels "
                                        "(off: only background voxels change)")
        form.addRow(self.overwrite_check)
        layout.addWidget(box)

        # --- operations -----------------------------------------------------------------
        box = QGroupBox("Operations")
        grid = QGridLayout(box)
        self.op_buttons: dict[str, Any] = {}
        for i, (text, tip, name) in enumerate(OPERATION_BUTTONS):
            b = button(text, tip)
            b.clicked.connect(lambda *_, n=name: self.run_operation(n))
            self.op_buttons[name] = b
            grid.addWidget(b, i // 3, i % 3)
        self.preview_check = QCheckBox("Preview before applying")
        self.preview_check.setToolTip("Show what an operation would add (green) and remove "
                                      "(red) in a preview layer; then Apply or Discard")
        self.apply_button = button("Apply preview", "Apply the previewed operation (one undo "
                                   "step)",
                                   self._on_apply_preview)
        self.discard_button = button("Discard", "Drop the preview; the labels stay unchanged",
                                     self._on_discard_preview)
        row = QHBoxLayout()
        row.addWidget(self.preview_check, 1)
        row.addWidget(self.apply_button)
        row.addWidget(self.discard_button)
        grid.addLayout(row, (len(OPERATION_BUTTONS) + 2) // 3, 0, 1, 3)
        layout.addWidget(box)

        box = QGroupBox("Combine two labels")
        row = QHBoxLayout(box)
        self.combine_op = QComboBox()
        for op, text in (("union", "add"), ("subtract", "subtract"), ("intersect", "intersect")):
            self.combine_op.addItem(text, op)
        self.combine_op.setToolTip("add: the other label joins this label; subtract / "
                                   "intersect: with the other label of another layer")
        self.other_label_combo = QComboBox()
        self.other_label_combo.setToolTip("The second label")
        self.combine_button = button("Apply", "Combine the label above with this one; the "
                                     "result is stored in the label above", self._on_combine)
        row.addWidget(QLabel("Selected label"))
        row.addWidget(self.combine_op)
        row.addWidget(self.other_label_combo, 1)
        row.addWidget(self.combine_button)
        layout.addWidget(box)

        # --- history ------------------------------------------------------------------
        row = QHBoxLayout()
        self.undo_button = button("Undo", "Undo the last brush stroke or operation (Ctrl+Z)",
                                  self._on_undo)
        self.redo_button = button("Redo", "Redo (Ctrl+Shift+Z)", self._on_redo)
        row.addWidget(self.undo_button)
        row.addWidget(self.redo_button)
        layout.addLayout(row)
        self.status = hint("Operations and brush strokes share one undo history.")
        layout.addWidget(self.status)

        # --- analysis ------------------------------------------------------------------
        box = QGroupBox("Outlines and components")
        col = QVBoxLayout(box)
        row = QHBoxLayout()
        self.contours_button = button("Contours to Shapes", "Outline the label on every slice "
                                      "as polygons in a Shapes layer", self._on_contours)
        self.components_button = button("Component table", "List the connected pieces of the "
                                        "label; click a row to jump to it",
                                        self._on_components)
        row.addWidget(self.contours_button)
        row.addWidget(self.components_button)
        col.addLayout(row)
        self.component_table = QTableWidget(0, len(COMPONENT_COLUMNS))
        self.component_table.setHorizontalHeaderLabels(COMPONENT_COLUMNS)
        self.component_table.verticalHeader().setVisible(False)
        self.component_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.component_table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.component_table.setToolTip("Click a row to move the view to that piece")
        header = self.component_table.horizontalHeader()
        for c in range(len(COMPONENT_COLUMNS)):
            header.setSectionResizeMode(c, QHeaderView.ResizeToContents)
        header.setStretchLastSection(True)
        self.component_table.cellClicked.connect(lambda r, _c: self.jump_to_component(r))
        col.addWidget(self.component_table)
        layout.addWidget(box)
        layout.addStretch(1)
        self._fill_label_choices()
        self._update_preview_buttons()

    # ------------------------------------------------------------------ choices
    def _fill_label_choices(self, *_: Any) -> None:
        layer = self.labels_combo.layer()
        classes = layer_classes(layer) if layer is not None else {}
        values = set(classes)
        if layer is not None:
            data = np.asarray(layer.data)
            if data.size > 2_000_000:  # a full-size CT: a sparse sample keeps the GUI fluid
                step = int(np.ceil((data.size / 2_000_000) ** (1 / data.ndim)))
                data = data[(slice(None, None, step),) * data.ndim]
            present = np.unique(data)
            values |= {int(v) for v in present[(present != 0) & (present < 65536)][:100]}
            values.add(int(layer.selected_label))
            self._describe_scope(layer.data.ndim)
            self._describe_units(layer)
        for combo in (self.label_combo, self.other_label_combo):
            combo.blockSignals(True)
            combo.clear()
            for v in sorted(values):
                name = classes.get(v, {}).get("name", f"label {v}")
                combo.addItem(f"{v}: {name}", v)
            combo.blockSignals(False)
        if layer is not None:
            index = self.label_combo.findData(int(layer.selected_label))
            self.label_combo.setCurrentIndex(max(index, 0))
        if self.other_label_combo.count() > 1:
            self.other_label_combo.setCurrentIndex(1)

    def _describe_scope(self, ndim: int) -> None:
        """2D images have no 'current slice' and no 3D: say what the scope really is."""
        if ndim == 2:
            self.slice_radio.setVisible(False)
            self.volume_radio.setText("Whole image (2D)")
            self.volume_radio.setToolTip("Edit the label on the whole 2D image")
            self.volume_radio.setChecked(True)
        else:
            self.slice_radio.setVisible(True)
            self.volume_radio.setText("Whole volume (3D)")
            self.volume_radio.setToolTip("Edit the label in 3D")

    def _describe_units(self, layer: Any) -> None:
        """Radius and island size in mm (mm² on 2D pictures), or in pixels when the file gave
        no pixel size; slice-only tools are disabled on 2D pictures."""
        unit = length_unit(layer)
        flat = layer.data.ndim == 2
        self.radius_spin.setSuffix(f" {unit}")
        self.radius_spin.setToolTip(
            "Radius (or shell thickness) in pixels: the picture's file gives no pixel size"
            if unit == "px" else "Radius (or shell thickness) in mm; anisotropic voxels give "
            "an ellipsoid in voxels")
        self.min_volume_spin.setSuffix(" px" if unit == "px" else " mm²" if flat else " mm³")
        self.min_volume_spin.setToolTip(
            "Islands smaller than this are removed ("
            + ("pixels)" if unit == "px" else "mm²)" if flat else "mm³; mm² on a single slice)"))
        b = self.op_buttons["interpolate_slices"]
        b.setEnabled(not flat)
        b.setToolTip("A 2D picture has a single slice: nothing to interpolate" if flat
                     else "Fill slices between painted slices (current slicing axis)")
        self.contours_button.setToolTip(
            "Outline the label as polygons in a Shapes layer" if flat else
            "Outline the label on every slice as polygons in a Shapes layer")
        area = "Area (px)" if unit == "px" else "Area (mm²)" if flat else "Volume (mL)"
        self.component_table.setHorizontalHeaderItem(2, QTableWidgetItem(area))
        self.component_table.setHorizontalHeaderItem(
            3, QTableWidgetItem("Centre (y, x px)" if unit == "px" else COMPONENT_COLUMNS[3]))
        self._flat_units = (flat, unit)

    def selected_label(self) -> int:
        """The label value operations act on."""
        value = self.label_combo.currentData()
        if value is None:
            raise ValueError("no label chosen: paint something or add a class first")
        return int(value)

    def set_label(self, value: int) -> None:
        """Choose label ``value`` (adding it to the list if needed)."""
        if self.label_combo.findData(value) < 0:
            self.label_combo.addItem(f"{value}: label {value}", value)
        self.label_combo.setCurrentIndex(self.label_combo.findData(value))

    # ------------------------------------------------------------------ operations
    def _plane(self, layer: Any) -> tuple[int | None, int | None]:
        if not self.slice_radio.isChecked():
            return None, None
        axis = current_slice_axis(self.viewer, layer.data.ndim)
        return axis, current_slice_index(self.viewer, layer, axis)

    def _cursor_voxel(self, layer: Any) -> tuple[int, ...]:
        point = np.round(layer.world_to_data(self.viewer.cursor.position)).astype(int)
        return tuple(int(np.clip(p, 0, n - 1)) for p, n in zip(point, layer.data.shape,
                                                                strict=True))

    def run_operation(self, name: str) -> Any:
        """Run the editing-core function ``name`` on the chosen label as one undo step.

        Returns the background worker for large volumes, else ``None`` (the edit is done).
        Errors become notifications.
        """
        from napari_medseg.ui._notify import notify_errors

        action = name.replace("_", " ").capitalize()
        with notify_errors(action, status=self.status):
            layer, compute, what = self._operation(name)
            if self.preview_check.isChecked():
                return self._preview(layer, compute, what, action)
            self._on_discard_preview()
            self.worker = edit_labels(layer, compute, lambda n: self._report(what, n), action,
                                      self._set_busy)
            return self.worker
        return None

    # ------------------------------------------------------------------ preview
    def _preview(self, layer: Any, compute: Callable[[np.ndarray], np.ndarray], what: str,
                 action: str) -> Any:
        """Compute the operation on a snapshot and show its effect without changing labels."""
        snapshot = np.array(layer.data, copy=True)

        def work(snap: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
            # everything that scans the volume runs here, in the worker for large volumes
            result = np.asarray(compute(snap))
            changed = result != snap
            diff = np.zeros(snap.shape, dtype=np.uint8)
            diff[changed & (result != 0)] = 1
            diff[changed & (result == 0)] = 2
            added = int(np.count_nonzero(changed & (result != 0)))
            return result, diff, added, int(np.count_nonzero(changed)) - added

        def show(out: tuple[np.ndarray, np.ndarray, int, int]) -> None:
            result, diff, added, removed = out
            self._show_preview(layer, diff)
            self._pending = (layer, snapshot, result, what)
            self.status.setText(f"Preview of {what}: +{added} / -{removed} voxels. "
                                "Apply or Discard.")
            self._update_preview_buttons()

        if snapshot.size <= BACKGROUND_VOXELS:
            show(work(snapshot))
            return None
        self._set_busy(True)
        self.worker = run_in_worker(work, snapshot, on_returned=show, action=action,
                                    on_finished=lambda: self._set_busy(False))
        return self.worker

    def _show_preview(self, layer: Any, diff: np.ndarray) -> None:
        from napari_medseg.ui._layers import add_labels_for_image

        if self.preview_layer is not None and self.preview_layer in self.viewer.layers \
                and self.preview_layer.data.shape == diff.shape:
            self.preview_layer.data = diff
        else:
            self._remove_preview_layer()
            self.preview_layer = add_labels_for_image(
                self.viewer, layer, data=diff, name="edit preview", classes=PREVIEW_CLASSES,
                role="preview")
        self.preview_layer.opacity = 0.9
        self.viewer.layers.selection.active = layer

    def _remove_preview_layer(self) -> None:
        if self.preview_layer is not None and self.preview_layer in self.viewer.layers:
            self.viewer.layers.remove(self.preview_layer)
        self.preview_layer = None

    def _update_preview_buttons(self) -> None:
        self.apply_button.setEnabled(self._pending is not None)
        self.discard_button.setEnabled(self._pending is not None)

    @catch_errors("Apply preview")
    def _on_apply_preview(self) -> int:
        if self._pending is None:
            raise ValueError("nothing to apply: run an operation with 'Preview' ticked first")
        layer, snapshot, result, what = self._pending

        def merge(current: np.ndarray) -> np.ndarray:
            # only the voxels the previewed operation changed: strokes made since are kept
            changed = snapshot != result
            merged = np.array(current, copy=True)
            merged[changed] = result[changed]
            return merged

        self._on_discard_preview()
        self.worker = edit_labels(layer, merge, lambda n: self._report(what, n),
                                  "Apply preview", self._set_busy)
        # voxels changed (0 while a large edit is still being applied in the background)
        return 0 if self.worker is not None else int(getattr(self, "_last_changed", 0))

    def _on_discard_preview(self) -> None:
        self._pending = None
        self._remove_preview_layer()
        self._update_preview_buttons()

    def _operation(self, name: str) -> tuple[Any, Callable[[np.ndarray], np.ndarray], str]:
        """(layer, compute(labels) -> new labels, description) for the core operation ``name``
        (a key of :data:`napari_medseg.editing.OPERATIONS`, the table every editing front end
        drives)."""
        from napari_medseg.editing import OPERATIONS

        layer = self.labels_combo.require("Labels layer")
        volume = volume_from_layer(layer)
        spacing = volume.spacing
        label = self.selected_label()
        axis, slice_index = self._plane(layer)
        func = OPERATIONS[name]
        params: dict[str, Any] = {
            "spacing": spacing,
            "overwrite": self.overwrite_check.isChecked(),
            "axis": axis,
            "slice_index": slice_index,
        }
        radius = self.radius_spin.value()
        if name in ("grow_label", "shrink_label", "open_label", "close_label", "smooth_label",
                    "hollow_label"):
            def compute(a: np.ndarray) -> np.ndarray:
                return _call_with_supported(func, a, label, radius, **params)
        elif name == "remove_islands":
            min_volume = self.min_volume_spin.value()

            def compute(a: np.ndarray) -> np.ndarray:
                return _call_with_supported(func, a, label, min_volume, **params)
        elif name == "keep_component":
            point = self._cursor_voxel(layer)

            def compute(a: np.ndarray) -> np.ndarray:
                return func(a, label, point)
        elif name == "interpolate_slices":
            if volume.ndim != 3:
                raise ValueError("slice interpolation needs a 3D labels layer")
            axis = current_slice_axis(self.viewer, volume.ndim)

            def compute(a: np.ndarray) -> np.ndarray:
                return func(a, label, axis, spacing=spacing)
        else:  # fill_holes, keep_largest
            def compute(a: np.ndarray) -> np.ndarray:
                return _call_with_supported(func, a, label, **params)
        where = "this slice" if axis is not None and name != "interpolate_slices" else "3D"
        title = {n: t for t, _tip, n in OPERATION_BUTTONS}.get(name, name.replace("_", " "))
        return layer, compute, f"{title}, label {label} ({where})"

    def _report(self, what: str, n: int) -> None:
        self._last_changed = n
        self.status.setText(f"{what}: {n} voxels changed. Ctrl+Z undoes it.")

    def _set_busy(self, busy: bool) -> None:
        flat = getattr(self, "_flat_units", (False, "mm"))[0]
        for name, b in self.op_buttons.items():
            b.setEnabled(not busy and not (flat and name == "interpolate_slices"))
        self.combine_button.setEnabled(not busy)
        if busy:
            self.status.setText("Working … (the viewer stays usable)")

    @catch_errors("Combine labels")
    def _on_combine(self) -> Any:
        from napari_medseg.editing import combine_labels

        layer = self.labels_combo.require("Labels layer")
        a = self.selected_label()
        b = self.other_label_combo.currentData()
        if b is None or int(b) == a:
            raise ValueError("choose a second, different label")
        op = self.combine_op.currentData()
        overwrite = self.overwrite_check.isChecked()
        self.worker = edit_labels(
            layer, lambda arr: combine_labels(arr, a, int(b), op, overwrite=overwrite),
            lambda n: self._report(f"{op} label {b} with {a}", n), "Combine labels",
            self._set_busy)
        return self.worker

    # ------------------------------------------------------------------ history
    @catch_errors("Undo")
    def _on_undo(self) -> None:
        self.labels_combo.require("Labels layer").undo()

    @catch_errors("Redo")
    def _on_redo(self) -> None:
        self.labels_combo.require("Labels layer").redo()

    # ------------------------------------------------------------------ analysis
    @catch_errors("Contours")
    def _on_contours(self) -> Any:
        from napari_medseg.editing import label_contours_for_shapes
        from napari_medseg.ui._layers import layer_transform_kwargs

        layer = self.labels_combo.require("Labels layer")
        label = self.selected_label()
        data = np.asarray(layer.data)
        if data.ndim == 2:  # a picture: the outlines of its one plane, (y, x) vertices
            polygons = [p[:, 1:] for p in label_contours_for_shapes(data[None], label, 0)]
        elif data.ndim == 3:
            polygons = label_contours_for_shapes(data, label, current_slice_axis(self.viewer, 3))
        else:
            raise ValueError("contours need a 2D or 3D labels layer")
        if not polygons:
            raise ValueError(f"label {label} is empty: no outline to draw")
        entry = layer_classes(layer).get(label, {})
        shapes = self.viewer.add_shapes(
            polygons, shape_type="polygon", edge_color=entry.get("color", "yellow"),
            face_color="transparent", edge_width=1.0 if data.ndim == 2 else 0.3,
            **layer_transform_kwargs(layer),
            name=f"{entry.get('name', f'label {label}')} contours",
        )
        self.status.setText(f"{len(polygons)} outlines of label {label} in '{shapes.name}'.")
        return shapes

    #: Rows listed per label: the largest pieces (a noisy label has tens of thousands).
    MAX_TABLE_PIECES = 200

    @catch_errors("Component table")
    def _on_components(self) -> Any:
        """Fill the component table; returns the rows, or the worker for a large volume.

        Centroids are world positions in mm (RAS x, y, z) from the layer's affine, so they are
        right for flipped and rotated volumes too.
        """
        from napari_medseg.editing import component_table

        layer = self.labels_combo.require("Labels layer")
        volume = volume_from_layer(layer)
        label = self.selected_label()

        def table(array: np.ndarray) -> list[dict[str, Any]]:
            return component_table(array, label, volume.spacing, affine=volume.affine,
                                   max_pieces=self.MAX_TABLE_PIECES)

        if volume.array.size <= BACKGROUND_VOXELS:
            return self._show_components(table(volume.array))
        self.component_table.setRowCount(0)
        self.components = []
        self.components_button.setEnabled(False)
        self.status.setText("Counting connected pieces … (the viewer stays usable)")
        self.worker = run_in_worker(
            table, volume.array, on_returned=self._show_components, action="Component table",
            on_finished=lambda: self.components_button.setEnabled(True))
        return self.worker

    def _show_components(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.components = list(rows)
        view = self.component_table
        view.setUpdatesEnabled(False)
        try:
            view.setRowCount(len(rows))
            for r, row in enumerate(rows):
                flat, unit = getattr(self, "_flat_units", (False, "mm"))
                where = row["centroid_voxel"] if unit == "px" else row["centroid_mm"]
                centroid = ", ".join(f"{c:.1f}" for c in where)
                size = (str(row["voxels"]) if unit == "px" else
                        f"{row['volume_mm3']:.1f}" if flat else f"{row['volume_ml']:.3f}")
                cells = (str(row["label"]), str(row["id"]), size, centroid)
                for c, text in enumerate(cells):
                    view.setItem(r, c, QTableWidgetItem(text))
        finally:
            view.setUpdatesEnabled(True)
        pieces = {row["label"]: row.get("pieces", 0) for row in rows}
        n = sum(pieces.values())
        text = f"{n} connected piece{'s' if n != 1 else ''}; click a row to jump to it."
        if n > len(rows):
            text += f" The {self.MAX_TABLE_PIECES} largest of each label are listed."
        self.status.setText(text)
        return self.components

    @catch_errors("Jump to component")
    def jump_to_component(self, row: int) -> None:
        """Move the viewer's slice and camera to the centroid of component ``row``."""
        layer = self.labels_combo.require("Labels layer")
        centroid = np.asarray(self.components[row]["centroid_voxel"], dtype=float)
        world = np.asarray(layer.data_to_world(centroid), dtype=float)
        offset = self.viewer.dims.ndim - len(world)
        step = list(self.viewer.dims.point)
        for i, value in enumerate(world):
            step[offset + i] = float(value)
        self.viewer.dims.point = step
        scene = getattr(self.viewer, "scene", None)
        camera = getattr(scene, "camera", None) or self.viewer.camera
        displayed = list(self.viewer.dims.displayed)
        center = list(camera.center)[-len(displayed):]
        for k, axis in enumerate(displayed):
            center[k] = step[axis]
        camera.center = center
