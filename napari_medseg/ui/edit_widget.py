"""Edit dock: label morphology in mm, holes/islands/components, interpolation, label logic,
undo/redo shared with napari's brush (Ctrl+Z / Ctrl+Shift+Z), contours, component table.

:class:`EditWidget` composes the dock's parts and drives the editing core's operation table
(:data:`napari_medseg.editing.OPERATIONS`):

* :mod:`~napari_medseg.ui.edit_options` — the *Target* form (magicgui): labels layer, label,
  scope, radius, minimum island, overwrite;
* :mod:`~napari_medseg.ui.edit_operations` — the operation buttons;
* :mod:`~napari_medseg.ui.edit_preview` — preview, then Apply or Discard (magicgui row);
* :mod:`~napari_medseg.ui.edit_combine` — *Combine two labels* (magicgui row);
* :mod:`~napari_medseg.ui.edit_components` — contours and the component table.

Every operation is one undo step; large volumes are edited in workers (see
:func:`~napari_medseg.ui._controls.edit_labels` and ``_edit_apply``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QHBoxLayout, QWidget

from napari_medseg.ui._controls import (
    BACKGROUND_VOXELS,
    Dock,
    button,
    edit_labels,
    hint,
    run_in_worker,
    scrollable_layout,
)
from napari_medseg.ui._layers import cells, volume_from_layer
from napari_medseg.ui._notify import catch_errors, clear_error_on_change
from napari_medseg.ui.annotate_widget import current_slice_axis
from napari_medseg.ui.edit_combine import CombineBox
from napari_medseg.ui.edit_components import (
    COMPONENT_COLUMNS,
    OutlinesBox,
    contours_to_shapes,
    jump_to_voxel,
)
from napari_medseg.ui.edit_operations import (
    OPERATION_BUTTONS,
    RADIUS_OPERATIONS,
    OperationsBox,
    operation_title,
)
from napari_medseg.ui.edit_options import QUICK_SCAN_VOXELS, EditOptions, label_values
from napari_medseg.ui.edit_preview import PREVIEW_CLASSES, PreviewRow

__all__ = ["COMPONENT_COLUMNS", "OPERATION_BUTTONS", "PREVIEW_CLASSES", "EditWidget"]


def _call_with_supported(func: Callable[..., Any], *args: Any, **params: Any) -> Any:
    """Call ``func`` with the keyword parameters its signature accepts."""
    accepted = inspect.signature(func).parameters
    return func(*args, **{k: v for k, v in params.items() if k in accepted})


class EditWidget(Dock):
    """Correct labels with the editing core; every operation is one undo step.

    The widgets of the parts are also attributes of the dock: ``labels_combo``,
    ``label_combo``, ``slice_radio``, ``volume_radio``, ``radius_spin``, ``min_volume_spin``,
    ``overwrite_check`` (Target), ``op_buttons``, ``preview_check``, ``apply_button``,
    ``discard_button`` (Operations), ``combine_op``, ``other_label_combo``, ``combine_button``
    (Combine), ``undo_button``, ``redo_button``, ``status``, ``contours_button``,
    ``components_button`` and ``component_table`` (Outlines and components).

    """

    #: Rows listed per label: the largest pieces (a noisy label has tens of thousands).
    MAX_TABLE_PIECES = 200

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(napari_viewer, parent)
        self.worker: Any = None  # background edit of a large volume (tests wait on it)
        self.options = EditOptions(napari_viewer)
        self.preview = PreviewRow(self)
        self.operations = OperationsBox(self.run_operation, footer=self.preview)
        self.combine = CombineBox()
        self.outlines = OutlinesBox()
        self.undo_button = button("Undo", "Undo the last brush stroke or operation (Ctrl+Z)",
                                  self._on_undo)
        self.redo_button = button("Redo", "Redo (Ctrl+Shift+Z)", self._on_redo)
        self.status = hint("Operations and brush strokes share one undo history.")

        o = self.options
        self.labels_combo, self.label_combo = o.labels_combo, o.label_combo
        self.slice_radio, self.volume_radio = o.slice_radio, o.volume_radio
        self.radius_spin, self.min_volume_spin = o.radius_spin, o.min_volume_spin
        self.overwrite_check = o.overwrite_check
        self.op_buttons = self.operations.op_buttons
        p = self.preview
        self.preview_check, self.apply_button = p.preview_check, p.apply_button
        self.discard_button = p.discard_button
        c = self.combine
        self.combine_op, self.other_label_combo = c.combine_op, c.other_label_combo
        self.combine_button = c.combine_button
        self.contours_button = self.outlines.contours_button
        self.components_button = self.outlines.components_button
        self.component_table = self.outlines.component_table

        layout = scrollable_layout(self)  # a standalone dock taller than the screen scrolls
        layout.addWidget(self.options)
        layout.addWidget(self.operations)
        layout.addWidget(self.combine)
        history = QHBoxLayout()
        history.addWidget(self.undo_button)
        history.addWidget(self.redo_button)
        layout.addLayout(history)
        layout.addWidget(self.status)
        layout.addWidget(self.outlines)
        layout.addStretch(1)

        # the values painted in a large layer are listed a moment later (one scan per turn)
        self._scan_timer = QTimer(self)
        self._scan_timer.setSingleShot(True)
        self._scan_timer.setInterval(0)
        self._scan_timer.timeout.connect(self._add_painted_values)
        self.labels_combo.currentIndexChanged.connect(self._fill_label_choices)
        clear_error_on_change(self.status, self.labels_combo, self.label_combo)
        self.label_combo.currentIndexChanged.connect(self._fill_combine_choices)
        self.apply_button.clicked.connect(self._on_apply_preview)
        self.combine_button.clicked.connect(self._on_combine)
        self.contours_button.clicked.connect(self._on_contours)
        self.components_button.clicked.connect(self._on_components)
        self.component_table.cellClicked.connect(lambda r, _c: self.jump_to_component(r))
        self._fill_label_choices()

    # ------------------------------------------------------------------ choices
    def _fill_label_choices(self, *_: Any) -> None:
        layer = self.labels_combo.layer()
        quick = layer is None or layer.data.size <= QUICK_SCAN_VOXELS
        names = label_values(layer, painted=quick) if layer is not None else {}
        if not quick:
            self._scan_timer.start()
        self.operations.set_has_labels(layer is not None)
        for b in (self.contours_button, self.components_button):
            b.setEnabled(layer is not None)
        if layer is not None:
            self.options.describe_scope(layer.data.ndim)
            self._describe_units(layer)
        self.options.set_label_choices(
            names, int(layer.selected_label) if layer is not None else None)
        self._fill_combine_choices()

    def _add_painted_values(self) -> None:
        """Offer the values painted in the chosen (large) layer too, keeping the choice."""
        try:
            layer = self.labels_combo.layer()
        except RuntimeError:  # the dock was closed meanwhile
            return
        if layer is None:
            return
        found = {**self.options.names, **label_values(layer)}  # keeps a label chosen meanwhile
        names = {v: found[v] for v in sorted(found)}
        if names != self.options.names:
            value = self.options.form.label_value.value
            self.options.set_label_choices(names, None if value is None else int(value))
            self._fill_combine_choices()

    def _fill_combine_choices(self, *_: Any) -> None:
        value = self.options.form.label_value.value
        self.combine.set_label_choices(self.options.names,
                                       None if value is None else int(value))

    def _describe_units(self, layer: Any) -> None:
        """Radius and island size in mm (mm² on 2D pictures), or in pixels when the file gave
        no pixel size; slice-only tools are disabled on 2D pictures."""
        flat, unit = self.options.describe_units(layer)
        self.operations.describe(flat)
        self.outlines.describe_units(flat, unit)

    def selected_label(self) -> int:
        """The label value operations act on."""
        return self.options.selected_label()

    def set_label(self, value: int) -> None:
        """Choose label ``value`` (adding it to the list if needed)."""
        self.options.set_label(value)

    # ------------------------------------------------------------------ operations
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
            if self.preview.wanted:
                return self._preview(layer, compute, what, action)
            self._on_discard_preview()
            self.worker = edit_labels(layer, compute, lambda n: self._report(what, n), action,
                                      self._set_busy, on_error=self._report_error)
            return self.worker
        return None

    def _operation(self, name: str) -> tuple[Any, Callable[[np.ndarray], np.ndarray], str]:
        """(layer, compute(labels) -> new labels, description) for the core operation ``name``
        (a key of :data:`napari_medseg.editing.OPERATIONS`, the table every editing front end
        drives)."""
        from napari_medseg.editing import OPERATIONS

        layer = self.labels_combo.require("Labels layer")
        volume = volume_from_layer(layer)
        spacing = volume.spacing
        label = self.selected_label()
        axis, slice_index = self.options.plane(layer)
        func = OPERATIONS[name]
        params: dict[str, Any] = {
            "spacing": spacing,
            "overwrite": self.overwrite_check.isChecked(),
            "axis": axis,
            "slice_index": slice_index,
        }
        radius = self.radius_spin.value()
        if name in RADIUS_OPERATIONS:
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
        where = ("this slice" if axis is not None and name != "interpolate_slices" else
                 "3D" if volume.ndim == 3 else "2D")
        self._cells = cells(volume.ndim)
        return layer, compute, f"{operation_title(name)}, label {label} ({where})"

    def _report(self, what: str, n: int) -> None:
        self._last_changed = n
        self.status.setText(f"{what}: {n} {getattr(self, '_cells', 'voxels')} changed. "
                            "Ctrl+Z undoes it.")

    def _report_error(self, message: str) -> None:
        """A background edit failed: the status says so (not "Working …" for good)."""
        from napari_medseg.ui._notify import short_message

        try:
            self.status.setText(f"⚠ {short_message(message)}")
        except RuntimeError:  # the dock was closed meanwhile
            pass

    def _set_busy(self, busy: bool) -> None:
        self.operations.set_busy(busy)
        self.combine_button.setEnabled(not busy and self.other_label_combo.count() > 0
                                       and self.labels_combo.layer() is not None)
        if busy:
            self.status.setText("Working … (the viewer stays usable)")

    # ------------------------------------------------------------------ preview
    @property
    def preview_layer(self) -> Any:
        """The ``edit preview`` layer while a preview is shown, else ``None``."""
        return self.preview.layer

    def _preview(self, layer: Any, compute: Callable[[np.ndarray], np.ndarray], what: str,
                 action: str) -> Any:
        """Compute the operation on a snapshot and show its effect without changing labels."""
        return self.preview.start(layer, compute, what, action)

    @catch_errors("Apply preview")
    def _on_apply_preview(self) -> int:
        self.preview.apply()
        # voxels changed (0 while a large edit is still being applied in the background)
        return 0 if self.worker is not None else int(getattr(self, "_last_changed", 0))

    def _on_discard_preview(self) -> None:
        self.preview.discard()

    # ------------------------------------------------------------------ combine
    @catch_errors("Combine labels")
    def _on_combine(self) -> Any:
        from napari_medseg.editing import combine_labels

        layer = self.labels_combo.require("Labels layer")
        a = self.selected_label()
        op, b = self.combine.choice()
        if b is None or b == a:
            raise ValueError("choose a second, different label")
        overwrite = self.overwrite_check.isChecked()
        self.worker = edit_labels(
            layer, lambda arr: combine_labels(arr, a, b, op, overwrite=overwrite),
            lambda n: self._report(f"{op} label {b} with {a}", n), "Combine labels",
            self._set_busy, on_error=self._report_error)
        return self.worker

    # ------------------------------------------------------------------ history
    @catch_errors("Undo")
    def _on_undo(self) -> None:
        self._step_history("undo", "Undid the last change of '{}' (Redo brings it back).")

    @catch_errors("Redo")
    def _on_redo(self) -> None:
        self._step_history("redo", "Redid the last undone change of '{}'.")

    def _step_history(self, which: str, done: str) -> None:
        """Undo or redo on the chosen labels, and say what happened (or that nothing could)."""
        layer = self.labels_combo.require("Labels layer")
        if not getattr(layer, f"_{which}_history", True):
            self.status.setText(f"Nothing to {which} in '{layer.name}'.")
            return
        getattr(layer, which)()
        self.status.setText(done.format(layer.name))

    # ------------------------------------------------------------------ analysis
    @catch_errors("Contours")
    def _on_contours(self) -> Any:
        layer = self.labels_combo.require("Labels layer")
        label = self.selected_label()
        axis = current_slice_axis(self.viewer, 3) if layer.data.ndim == 3 else 0
        shapes = contours_to_shapes(self.viewer, layer, label, axis)
        self.status.setText(f"{len(shapes.data)} outlines of label {label} in "
                            f"'{shapes.name}'.")
        return shapes

    @property
    def components(self) -> list[dict[str, Any]]:
        """The rows of the component table (the core's component records)."""
        return self.outlines.components

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
        self.outlines.clear()
        self.components_button.setEnabled(False)
        self.status.setText("Counting connected pieces … (the viewer stays usable)")
        self.worker = run_in_worker(
            table, volume.array, on_returned=self._show_components, action="Component table",
            on_finished=lambda: self.components_button.setEnabled(True))
        return self.worker

    def _show_components(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.status.setText(self.outlines.show_components(rows, self.MAX_TABLE_PIECES))
        return self.components

    @catch_errors("Jump to component")
    def jump_to_component(self, row: int) -> None:
        """Move the viewer's slice and camera to the centroid of component ``row``."""
        layer = self.labels_combo.require("Labels layer")
        jump_to_voxel(self.viewer, layer, self.components[row]["centroid_voxel"])
