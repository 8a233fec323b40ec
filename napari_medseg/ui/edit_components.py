"""The Edit dock's *Outlines and components* box: contours to Shapes and the component table.

*Contours to Shapes* outlines the selected label as polygons (every slice of a volume, the one
plane of a picture) in a new Shapes layer; *Component table* lists the label's connected
pieces (size, centroid) in a Qt table — clicking a row moves the view to that piece. The
counting itself is the editing core's (:func:`~napari_medseg.editing.component_table`); the
dock decides where it runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from napari_medseg.ui._controls import button
from napari_medseg.ui._layers import layer_classes

COMPONENT_COLUMNS = ("Label", "Piece", "Volume (mL)", "Centroid (RAS mm)")


def centre_title(flat: bool, unit: str) -> str:
    """Title of the centre column: picture axes on 2D maps, patient RAS mm on volumes."""
    if flat:
        return f"Centre (x, y {unit})"
    return "Centre (z, y, x voxel)" if unit == "px" else COMPONENT_COLUMNS[3]


def centre_of(row: dict[str, Any], flat: bool, unit: str) -> tuple[float, ...]:
    """The centre of a component row in the unit :func:`centre_title` names."""
    if flat and "centroid_xy_px" in row:
        return row["centroid_xy_px"] if unit == "px" else row["centroid_xy_mm"]
    return row["centroid_voxel"] if unit == "px" else row["centroid_mm"]


def contours_to_shapes(viewer: Any, layer: Any, label: int, axis: int) -> Any:
    """Add the outlines of ``label`` in ``layer`` (slices along ``axis``) as a Shapes layer.

    Raises ``ValueError`` for an empty label or a layer that is neither 2D nor 3D.
    """
    from napari_medseg.editing import label_contours_for_shapes
    from napari_medseg.ui._layers import layer_transform_kwargs

    data = np.asarray(layer.data)
    if data.ndim == 2:  # a picture: the outlines of its one plane, (y, x) vertices
        polygons = [p[:, 1:] for p in label_contours_for_shapes(data[None], label, 0)]
    elif data.ndim == 3:
        polygons = label_contours_for_shapes(data, label, axis)
    else:
        raise ValueError("contours need a 2D or 3D labels layer")
    if not polygons:
        raise ValueError(f"label {label} is empty: no outline to draw")
    entry = layer_classes(layer).get(label, {})
    return viewer.add_shapes(
        polygons, shape_type="polygon", edge_color=entry.get("color", "yellow"),
        face_color="transparent", edge_width=1.0 if data.ndim == 2 else 0.3,
        **layer_transform_kwargs(layer),
        name=f"{entry.get('name', f'label {label}')} contours",
    )


def jump_to_voxel(viewer: Any, layer: Any, voxel: Any) -> None:
    """Move the viewer's slice and camera to ``voxel`` (data coordinates of ``layer``)."""
    world = np.asarray(layer.data_to_world(np.asarray(voxel, dtype=float)), dtype=float)
    offset = viewer.dims.ndim - len(world)
    step = list(viewer.dims.point)
    for i, value in enumerate(world):
        step[offset + i] = float(value)
    viewer.dims.point = step
    scene = getattr(viewer, "scene", None)
    camera = getattr(scene, "camera", None) or viewer.camera
    displayed = list(viewer.dims.displayed)
    center = list(camera.center)[-len(displayed):]
    for k, axis in enumerate(displayed):
        center[k] = step[axis]
    camera.center = center


class ComponentTable(QTableWidget):
    """Read-only table of connected pieces: label, piece, size and centroid per row."""

    def __init__(self) -> None:
        super().__init__(0, len(COMPONENT_COLUMNS))
        self.setHorizontalHeaderLabels(COMPONENT_COLUMNS)
        self.verticalHeader().setVisible(False)
        self.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.setToolTip("Click a row to move the view to that piece")
        header = self.horizontalHeader()
        for c in range(len(COMPONENT_COLUMNS)):
            header.setSectionResizeMode(c, QHeaderView.ResizeToContents)
        header.setStretchLastSection(True)
        self.units = (False, "mm")

    def describe_units(self, flat: bool, unit: str) -> None:
        """Area in mm² on pictures, pixels (and a pixel centre) when there is no pixel size.

        The centre of a piece of a picture is given in the picture's axes (x along the
        columns, y down the rows), in mm or in pixels; of a volume, in patient RAS mm (or as
        a voxel index when the spacing is unknown).
        """
        self.units = (flat, unit)
        area = "Area (px)" if unit == "px" else "Area (mm²)" if flat else "Volume (mL)"
        self.setHorizontalHeaderItem(2, QTableWidgetItem(area))
        self.setHorizontalHeaderItem(3, QTableWidgetItem(centre_title(flat, unit)))

    def show_rows(self, rows: list[dict[str, Any]]) -> None:
        """Fill the table with the core's component rows."""
        flat, unit = self.units
        self.setUpdatesEnabled(False)
        try:
            self.setRowCount(len(rows))
            for r, row in enumerate(rows):
                where = centre_of(row, flat, unit)
                centroid = ", ".join(f"{c:.1f}" for c in where)
                size = (str(row["voxels"]) if unit == "px" else
                        f"{row['volume_mm3']:.1f}" if flat else f"{row['volume_ml']:.3f}")
                cells = (str(row["label"]), str(row["id"]), size, centroid)
                for c, text in enumerate(cells):
                    self.setItem(r, c, QTableWidgetItem(text))
        finally:
            self.setUpdatesEnabled(True)


class OutlinesBox(QGroupBox):
    """Group box "Outlines and components": the two buttons over the component table.

    Attributes
    ----------
    contours_button, components_button : QPushButton
    component_table : ComponentTable
    components : list of dict
        The rows shown in the table (the core's component records).
    """

    def __init__(self) -> None:
        super().__init__("Outlines and components")
        self.components: list[dict[str, Any]] = []
        col = QVBoxLayout(self)
        row = QHBoxLayout()
        self.contours_button = button("Contours to Shapes", "Outline the label on every slice "
                                      "as polygons in a Shapes layer")
        self.components_button = button("Component table", "List the connected pieces of the "
                                        "label; click a row to jump to it")
        row.addWidget(self.contours_button)
        row.addWidget(self.components_button)
        col.addLayout(row)
        self.component_table = ComponentTable()
        col.addWidget(self.component_table)

    def describe_units(self, flat: bool, unit: str) -> None:
        self.contours_button.setToolTip(
            "Outline the label as polygons in a Shapes layer" if flat else
            "Outline the label on every slice as polygons in a Shapes layer")
        self.component_table.describe_units(flat, unit)

    def clear(self) -> None:
        self.component_table.setRowCount(0)
        self.components = []

    def show_components(self, rows: list[dict[str, Any]], max_pieces: int) -> str:
        """Show ``rows``; returns the status text (pieces counted, and how many are listed)."""
        self.components = list(rows)
        self.component_table.show_rows(self.components)
        pieces = {row["label"]: row.get("pieces", 0) for row in rows}
        n = sum(pieces.values())
        text = f"{n} connected piece{'s' if n != 1 else ''}; click a row to jump to it."
        if n > len(rows):
            text += f" The {max_pieces} largest of each label are listed."
        return text
