"""The Edit dock's *Target* form: which labels layer and label to edit, and the operation options.

The form is a magicgui :class:`~magicgui.widgets.Container` (napari's idiom for parameter
forms): the label to edit (``ComboBox``), the scope (``RadioButtons``: current slice in 2D or
the whole volume in 3D), the radius and minimum island size (``FloatSpinBox`` es in mm, mm² /
mm³ or pixels) and *Overwrite other labels* (``CheckBox``). Plain Qt only adds what magicgui
does not express: the labels-layer chooser (:class:`~napari_medseg.ui._controls.LayerCombo`,
which follows the viewer's layers) in the form's first row, and per-button tooltips of the
scope.

The radius and island size are remembered between sessions (``edit/radius_mm``,
``edit/min_island_mm3``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, RadioButtons
from qtpy.QtWidgets import QGroupBox, QLabel, QRadioButton, QVBoxLayout

from napari_medseg.ui._controls import LayerCombo, _fit_width
from napari_medseg.ui._layers import labels_layers, layer_classes, length_unit
from napari_medseg.ui._settings import get_setting, set_setting
from napari_medseg.ui.annotate_widget import current_slice_axis, current_slice_index

RADIUS_TIP = ("Radius (or shell thickness) in mm; anisotropic voxels give an ellipsoid in "
              "voxels")
ISLAND_TIP = "Islands smaller than this are removed (mm³; mm² on a single slice)"
SLICE_TIP = "Edit only the slice you are looking at"
VOLUME_TIP = "Edit the label in 3D"

#: Labels larger than this are sampled sparsely when their label values are listed.
SAMPLE_VOXELS = 2_000_000
#: Labels up to this size are scanned for painted values at once; larger ones on a later
#: event-loop turn, so that the scan does not add to napari's own stall when a layer is added.
QUICK_SCAN_VOXELS = 262_144


def label_values(layer: Any, painted: bool = True) -> dict[int, str]:
    """``{value: "value: name"}`` for the label choices of ``layer``, in ascending order.

    The layer's classes, its selected label and (``painted``) the values painted in it
    (sampled sparsely on a full-size CT so the GUI stays fluid; at most 100).
    """
    classes = layer_classes(layer)
    values = set(classes)
    values.add(int(layer.selected_label))
    data = np.asarray(layer.data)
    if not painted:
        data = data[:0]
    elif data.size > SAMPLE_VOXELS:
        step = int(np.ceil((data.size / SAMPLE_VOXELS) ** (1 / data.ndim)))
        data = data[(slice(None, None, step),) * data.ndim]
    present = np.unique(data)
    values |= {int(v) for v in present[(present != 0) & (present < 65536)][:100]}
    return {v: f"{v}: {classes.get(v, {}).get('name', f'label {v}')}" for v in sorted(values)}


def set_label_choices(combo: ComboBox, names: dict[int, str]) -> None:
    """Replace the choices of the magicgui ``combo`` by ``names``, in their order.

    The choices are given as a callable, magicgui's idiom for choices that depend on state:
    a ``reset_choices()`` (magicgui calls it when a widget is re-parented) gives them back
    instead of the empty list the form was built with.
    """
    items = [(text, value) for value, text in names.items()]
    with combo.changed.blocked():
        combo.native.clear()  # magicgui keeps surviving items in place: rebuild in order
        combo.choices = lambda _widget: items


def options_form() -> Container:
    """The magicgui form of the Target box (widgets named as the dock's options); its first
    row, ``layer_row``, is left empty for the labels-layer chooser."""
    form = Container(labels=True)
    form.extend([  # added after creation: magicgui then aligns the labels' widths
        Container(name="layer_row", label="Labels", labels=False,
                  tooltip="Labels layer to edit"),
        ComboBox(name="label_value", label="Label", choices=[],
                 tooltip="Which label value the operations change"),
        RadioButtons(name="scope", label="Scope", orientation="horizontal",
                     choices=[("Current slice (2D)", "slice"), ("Whole volume (3D)", "volume")],
                     value="volume", tooltip="Where the operations act"),
        FloatSpinBox(name="radius", label="Radius", min=0.1, max=100.0, step=0.5,
                     value=float(get_setting("edit/radius_mm", 2.0)), tooltip=RADIUS_TIP),
        FloatSpinBox(name="min_volume", label="Min. island", min=0.0, max=1e7, step=10.0,
                     value=float(get_setting("edit/min_island_mm3", 50.0)),
                     tooltip=ISLAND_TIP),
        CheckBox(name="overwrite", text="Overwrite other labels", value=False,
                 tooltip="Let the edited label take voxels of other labels (off: only "
                         "background voxels change)"),
    ])
    form.margins = (0, 0, 0, 0)
    form.layer_row.margins = (0, 0, 0, 0)
    # the radio buttons sit in a magicgui group box: no frame inside the Target box
    scope = form.scope.native
    scope.setFlat(True)
    scope.setStyleSheet("QGroupBox { border: 0px; margin: 0px; padding: 0px; }")
    scope.layout().setContentsMargins(0, 0, 0, 0)
    for spin, decimals, suffix, longest in ((form.radius.native, 1, " mm", 100.0),
                                            (form.min_volume.native, 0, " mm³", 1e7)):
        spin.setDecimals(decimals)
        spin.setSuffix(suffix)
        _fit_width(spin, f"{longest:.{decimals}f}{suffix}")
    form.radius.changed.connect(lambda v: set_setting("edit/radius_mm", v))
    form.min_volume.changed.connect(lambda v: set_setting("edit/min_island_mm3", v))
    return form


def align_label_column(form: Container) -> None:
    """Give the row labels of ``form`` one width, measured in the font they are shown in.

    magicgui measures its labels with the application font, not the larger one napari's
    stylesheet sets, so a long label ("Min. island") would push its field out of line.
    """
    labels = [lbl for lbl in form.native.findChildren(QLabel)
              if lbl.parent() is not None and lbl.parent().parent() is form.native]
    for lbl in labels:
        lbl.ensurePolished()
    width = max((lbl.sizeHint().width() for lbl in labels), default=0)
    for lbl in labels:
        lbl.setMinimumWidth(width)


class EditOptions(QGroupBox):
    """Group box "Target": the labels layer, the label and the options of every operation.

    Attributes
    ----------
    form : magicgui.widgets.Container
        The options; ``label_combo``, ``radius_spin``, ``min_volume_spin``,
        ``overwrite_check``, ``slice_radio`` and ``volume_radio`` are its widgets' Qt natives.
    labels_combo : LayerCombo
        The labels layer to edit.
    """

    def __init__(self, viewer: Any) -> None:
        super().__init__("Target")
        self.viewer = viewer
        self.form = options_form()
        self.labels_combo = LayerCombo(viewer, labels_layers, "(no labels layer)")
        self.labels_combo.setToolTip("Labels layer to edit")
        self.form.layer_row.native.layout().addWidget(self.labels_combo)
        self.names: dict[int, str] = {}
        layout = QVBoxLayout(self)
        layout.addWidget(self.form.native)
        # the natives once the form has its parent: re-parenting makes magicgui reset the
        # choices, and RadioButtons then builds new buttons
        self.label_combo = self.form.label_value.native
        self.radius_spin = self.form.radius.native
        self.min_volume_spin = self.form.min_volume.native
        self.overwrite_check = self.form.overwrite.native
        buttons = {b.text(): b for b in self.form.scope.native.findChildren(QRadioButton)}
        self.slice_radio = buttons["Current slice (2D)"]
        self.volume_radio = buttons["Whole volume (3D)"]
        self.slice_radio.setToolTip(SLICE_TIP)
        self.volume_radio.setToolTip(VOLUME_TIP)

    def showEvent(self, event: Any) -> None:  # Qt's name
        super().showEvent(event)
        align_label_column(self.form)  # the stylesheet's font is known once shown

    # ------------------------------------------------------------------ label
    def set_label_choices(self, names: dict[int, str], selected: int | None) -> None:
        """Offer the labels ``names`` and choose ``selected`` (else the first one)."""
        self.names = dict(names)
        set_label_choices(self.form.label_value, self.names)
        if selected in names:
            self.form.label_value.value = selected

    def selected_label(self) -> int:
        """The label value operations act on."""
        value = self.form.label_value.value
        if value is None:
            raise ValueError("no label chosen: paint something or add a class first")
        return int(value)

    def set_label(self, value: int) -> None:
        """Choose label ``value`` (adding it to the list if needed)."""
        if value not in self.names:
            self.names[value] = f"{value}: label {value}"
            set_label_choices(self.form.label_value, self.names)
        self.form.label_value.value = value

    # ------------------------------------------------------------------ scope, units
    def plane(self, layer: Any) -> tuple[int | None, int | None]:
        """(axis, index) of the slice to edit, or (None, None) for the whole volume."""
        if not self.slice_radio.isChecked():
            return None, None
        axis = current_slice_axis(self.viewer, layer.data.ndim)
        return axis, current_slice_index(self.viewer, layer, axis)

    def describe_scope(self, ndim: int) -> None:
        """2D images have no 'current slice' and no 3D: say what the scope really is."""
        if ndim == 2:
            self.slice_radio.setVisible(False)
            self.volume_radio.setText("Whole image (2D)")
            self.volume_radio.setToolTip("Edit the label on the whole 2D image")
            self.volume_radio.setChecked(True)
        else:
            self.slice_radio.setVisible(True)
            self.volume_radio.setText("Whole volume (3D)")
            self.volume_radio.setToolTip(VOLUME_TIP)

    def describe_units(self, layer: Any) -> tuple[bool, str]:
        """Radius and island size in mm (mm² on 2D pictures), or in pixels when the file gave
        no pixel size; returns (flat, unit) of ``layer``."""
        unit = length_unit(layer)
        flat = layer.data.ndim == 2
        self.radius_spin.setSuffix(f" {unit}")
        self.radius_spin.setToolTip(
            "Radius (or shell thickness) in pixels: the picture's file gives no pixel size"
            if unit == "px" else RADIUS_TIP)
        self.min_volume_spin.setSuffix(" px" if unit == "px" else " mm²" if flat else " mm³")
        self.min_volume_spin.setToolTip(
            "Islands smaller than this are removed ("
            + ("pixels)" if unit == "px" else "mm²)" if flat else "mm³; mm² on a single slice)"))
        return flat, unit
