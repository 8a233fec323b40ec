"""The Edit dock's *Operations* box: one button per operation of the editing core's table.

:data:`OPERATION_BUTTONS` names, for every key of :data:`napari_medseg.editing.OPERATIONS` but
``combine_labels`` (which has its own row), the button's text and tooltip. The buttons are a
Qt grid (three per row; magicgui has no grid layout), with a footer row below them (the
preview controls).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtWidgets import QGridLayout, QGroupBox, QPushButton, QWidget

from napari_medseg.ui._controls import button

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

#: Operations that take the radius (mm) as their third argument.
RADIUS_OPERATIONS = ("grow_label", "shrink_label", "open_label", "close_label", "smooth_label",
                     "hollow_label")

INTERPOLATE_TIP = OPERATION_BUTTONS[-1][1]


def operation_title(name: str) -> str:
    """The button text of operation ``name`` (its name in words when it has no button)."""
    return {n: t for t, _tip, n in OPERATION_BUTTONS}.get(name, name.replace("_", " "))


class OperationsBox(QGroupBox):
    """Group box "Operations": a grid of the operation buttons and ``footer`` below them.

    Parameters
    ----------
    run : callable
        ``run(name)``, called with the core function name when its button is clicked.
    footer : QWidget, optional
        A row shown under the buttons, across the grid.

    Attributes
    ----------
    op_buttons : dict of str to QPushButton
        The buttons by core function name.
    """

    COLUMNS = 3

    def __init__(self, run: Callable[[str], Any], footer: QWidget | None = None) -> None:
        super().__init__("Operations")
        self.flat = False
        self.busy = False
        self.has_labels = True
        grid = QGridLayout(self)
        self.op_buttons: dict[str, QPushButton] = {}
        for i, (text, tip, name) in enumerate(OPERATION_BUTTONS):
            b = button(text, tip)
            b.clicked.connect(lambda *_, n=name: run(n))
            self.op_buttons[name] = b
            grid.addWidget(b, i // self.COLUMNS, i % self.COLUMNS)
        if footer is not None:
            rows = (len(OPERATION_BUTTONS) + self.COLUMNS - 1) // self.COLUMNS
            grid.addWidget(footer, rows, 0, 1, self.COLUMNS)

    def describe(self, flat: bool) -> None:
        """Disable the slice-only tool on a 2D picture (and say why)."""
        self.flat = flat
        b = self.op_buttons["interpolate_slices"]
        b.setToolTip("A 2D picture has a single slice: nothing to interpolate" if flat
                     else INTERPOLATE_TIP)
        self._update()

    def set_busy(self, busy: bool) -> None:
        """Disable the buttons while an edit runs in the background."""
        self.busy = busy
        self._update()

    def set_has_labels(self, has_labels: bool) -> None:
        """Without a Labels layer to edit the buttons wait for one."""
        self.has_labels = has_labels
        self._update()

    def _update(self) -> None:
        for name, b in self.op_buttons.items():
            b.setEnabled(self.has_labels and not self.busy
                         and not (self.flat and name == "interpolate_slices"))
