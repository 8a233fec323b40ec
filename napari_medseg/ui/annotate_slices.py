"""The Annotate dock's *Slices* section: interpolation between painted slices and sparse-slice
marks (which axial slices are fully annotated; the others are saved as 255 = ignored).

Slice tools only apply to 3D labels: on a 2D picture they are disabled with a tooltip saying why.
Interpolation on a large volume runs in a worker (:func:`~napari_medseg.ui._controls.edit_labels`)
and is one undo step of the labels layer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtWidgets import QGroupBox, QHBoxLayout, QVBoxLayout

from napari_medseg.ui._controls import button, edit_labels, hint
from napari_medseg.ui._layers import (
    medseg_metadata,
    spatial_shape,
    update_medseg_metadata,
    volume_from_layer,
)
from napari_medseg.ui._notify import catch_errors

INTERP_TIP = ("Fill the slices between painted slices of the selected class (along the axis "
              "you are scrolling through)")
MARK_TIP = "Mark the current axial slice as fully annotated (sparse annotation)"
NO_SLICES_TIP = "A 2D picture has a single slice: slice tools do not apply (paint it directly)"
NO_MARKS = "No slice marks: the whole volume counts as annotated."


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


class SlicesSection(QGroupBox):
    """Group box "Slices": *Interpolate between slices* and the slice-mark buttons.

    Parameters
    ----------
    dock : AnnotateWidget
        The dock whose viewer, image / labels choice, selected class, status line and busy
        state the section uses.
    """

    def __init__(self, dock: Any) -> None:
        super().__init__("Slices")
        self.dock = dock
        self.viewer = dock.viewer
        col = QVBoxLayout(self)
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
        for b in self._mark_buttons():
            row.addWidget(b)
        col.addLayout(row)
        self.marks_label = hint(NO_MARKS)
        col.addWidget(self.marks_label)

    def _mark_buttons(self) -> tuple[Any, ...]:
        return (self.mark_button, self.unmark_button, self.mark_all_button,
                self.clear_marks_button)

    def labels_changed(self) -> None:
        """Another labels layer was chosen: show its marks, enable the tools for its grid."""
        self.update_marks_label()
        self.update_tools()

    # ------------------------------------------------------------------ interpolation
    @catch_errors("Interpolate")
    def _on_interpolate(self) -> Any:
        from napari_medseg.editing import interpolate_slices

        layer = self.dock.labels_combo.require("Labels layer")
        volume = volume_from_layer(layer)
        if volume.ndim != 3:
            raise ValueError("interpolation needs a 3D labels layer")
        axis = current_slice_axis(self.viewer, volume.ndim)
        label = self.dock.selected_class()
        spacing = volume.spacing

        def done(n: int) -> None:
            self.dock.set_status(f"Interpolation filled {n} voxels of class {label}.")

        self.dock.worker = edit_labels(
            layer, lambda a: interpolate_slices(a, label, axis, spacing=spacing), done,
            "Interpolate", self.dock.set_busy, on_error=self.dock.show_error)
        return self.dock.worker

    def _grid_ndim(self) -> int | None:
        """Spatial dimensions of the chosen labels (else image) layer; None without layers."""
        for layer in (self.dock.labels_combo.layer(), self.dock.image_combo.layer()):
            if layer is not None:
                return len(spatial_shape(layer))
        return None

    def update_tools(self) -> None:
        """Slice tools (interpolation, slice marks) apply to 3D only: disabled on 2D pictures."""
        flat = self._grid_ndim() == 2
        self.interp_button.setEnabled(not flat and not self.dock.busy)
        self.interp_button.setToolTip(NO_SLICES_TIP if flat else INTERP_TIP)
        for b in self._mark_buttons():
            b.setEnabled(not flat)
        self.mark_button.setToolTip(NO_SLICES_TIP if flat else MARK_TIP)

    # ------------------------------------------------------------------ slice marks
    def annotated_slices(self) -> list[int]:
        """Slice indices (axis 0) marked as annotated on the current labels layer."""
        layer = self.dock.labels_combo.layer()
        if layer is None:
            return []
        return list(medseg_metadata(layer).get("annotated_slices") or [])

    def _set_marks(self, marks: list[int]) -> None:
        layer = self.dock.labels_combo.require("Labels layer")
        update_medseg_metadata(layer, annotated_slices=sorted({int(m) for m in marks}))
        self.update_marks_label()

    def _current_axial_index(self, layer: Any) -> int:
        if layer.data.ndim != 3:
            raise ValueError("slice marks need a 3D labels layer")
        return current_slice_index(self.viewer, layer, 0)

    @catch_errors("Mark slice")
    def _on_mark_slice(self) -> None:
        layer = self.dock.labels_combo.require("Labels layer")
        self._set_marks(self.annotated_slices() + [self._current_axial_index(layer)])

    @catch_errors("Unmark slice")
    def _on_unmark_slice(self) -> None:
        layer = self.dock.labels_combo.require("Labels layer")
        index = self._current_axial_index(layer)
        self._set_marks([m for m in self.annotated_slices() if m != index])

    @catch_errors("Mark labelled slices")
    def _on_mark_labelled(self) -> None:
        layer = self.dock.labels_combo.require("Labels layer")
        data = np.asarray(layer.data)
        if data.ndim != 3:
            raise ValueError("slice marks need a 3D labels layer")
        labelled = np.flatnonzero(data.reshape(data.shape[0], -1).any(axis=1))
        self._set_marks(self.annotated_slices() + [int(i) for i in labelled])

    @catch_errors("Clear marks")
    def _on_clear_marks(self) -> None:
        self._set_marks([])

    def update_marks_label(self) -> None:
        """Say which slices are marked (or that the whole volume counts as annotated)."""
        layer = self.dock.labels_combo.layer()
        marks = self.annotated_slices()
        if layer is not None and len(spatial_shape(layer)) == 2:
            self.marks_label.setText("2D picture: the whole picture counts as annotated.")
            return
        if layer is None or not marks:
            self.marks_label.setText(NO_MARKS)
            return
        shown = ", ".join(map(str, marks[:12])) + (" …" if len(marks) > 12 else "")
        self.marks_label.setText(
            f"{len(marks)} of {layer.data.shape[0]} axial slices marked annotated ({shown}); "
            "the others are saved as 255 = ignored by training."
        )
