"""The Annotate dock's *Classes* section: the class table of the current labels layer.

One row per class (value, name, colour). Names are edited in place, a double-click on a colour
opens a colour dialog, *Add class* / *Remove class* change the table; every change is stored in
the layer (metadata and colormap). Selecting a row picks that value for painting, and napari's
own label spinner highlights the matching row.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QColorDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from napari_medseg.ui._controls import button, layer_key, same_layer
from napari_medseg.ui._layers import default_class_color, layer_classes, set_layer_classes
from napari_medseg.ui._notify import catch_errors

CLASS_COLUMNS = ("Value", "Name", "Colour")

#: Label value that marks unannotated voxels: never given to a class.
UNANNOTATED_VALUE = 255


class ClassesSection(QGroupBox):
    """Group box "Classes": the class table and its *Add class* / *Remove class* buttons.

    Parameters
    ----------
    labels_combo : LayerCombo
        The dock's choice of labels layer whose classes the table shows and edits.
    """

    def __init__(self, labels_combo: Any) -> None:
        super().__init__("Classes")
        self.labels_combo = labels_combo
        self._synced: set[str | None] = set()  # layers whose selected_label we follow
        col = QVBoxLayout(self)
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

    def labels_changed(self) -> None:
        """Another labels layer was chosen: follow its selected label and show its classes."""
        layer = self.labels_combo.layer()
        if layer is not None and layer_key(layer) not in self._synced:
            layer.events.selected_label.connect(self._on_layer_selected_label)
            self._synced.add(layer_key(layer))
        self.fill()

    def _labels(self) -> Any:
        return self.labels_combo.require("Labels layer")

    def _value_at(self, row: int) -> int:
        return int(self.class_table.item(row, 0).text())

    def fill(self) -> None:
        """Show the classes of the current labels layer and select the painted one."""
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
            values = [self._value_at(r) for r in range(self.class_table.rowCount())]
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
            value = self._value_at(row)
            out[value] = {"name": self.class_table.item(row, 1).text().strip() or f"label {value}",
                          "color": self.class_table.item(row, 2).text()}
        return out

    def _store_classes(self, classes: dict[int, dict[str, str]]) -> None:
        set_layer_classes(self._labels(), classes)
        self.fill()

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
            self.set_class_color(self._value_at(row), color.name())

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
        if value == UNANNOTATED_VALUE:
            value += 1
        classes[value] = {"name": f"label {value}", "color": default_class_color(value)}
        self._store_classes(classes)
        self._labels().selected_label = value
        self.fill()

    @catch_errors("Remove class")
    def _on_remove_class(self) -> None:
        rows = self.class_table.selectionModel().selectedRows()
        if not rows:
            raise ValueError("select a class row first")
        classes = self.classes_from_table()
        classes.pop(self._value_at(rows[0].row()), None)
        self._store_classes(classes)

    def _on_class_selected(self) -> None:
        layer = self.labels_combo.layer()
        rows = self.class_table.selectionModel().selectedRows()
        if layer is not None and rows:
            layer.selected_label = self._value_at(rows[0].row())
