"""The Edit dock's *Combine two labels* row: label logic between the selected label and another.

*add* merges the other label into the selected one, *subtract* / *intersect* apply the other
label's mask (:func:`napari_medseg.editing.combine_labels`); the result is stored in the
selected label. The row is a horizontal magicgui :class:`~magicgui.widgets.Container` (a
``Label``, two ``ComboBox`` es and a ``PushButton``) embedded through ``.native``.
"""

from __future__ import annotations

from magicgui.widgets import ComboBox, Container, Label, PushButton
from qtpy.QtWidgets import QGroupBox, QVBoxLayout

from napari_medseg.ui.edit_options import set_label_choices

#: (text shown, operation of :func:`~napari_medseg.editing.combine_labels`).
COMBINE_OPERATIONS = (("add", "union"), ("subtract", "subtract"), ("intersect", "intersect"))


def combine_form() -> Container:
    """The magicgui row: "Selected label", the operation, the other label and *Apply*."""
    form = Container(layout="horizontal", labels=False, widgets=[
        Label(name="selected", value="Selected label"),
        ComboBox(name="op", choices=COMBINE_OPERATIONS,
                 tooltip="add: the other label joins this label; subtract / intersect: with "
                         "the other label of another layer"),
        ComboBox(name="other", choices=[], tooltip="The second label"),
        PushButton(name="apply", text="Apply",
                   tooltip="Combine the label above with this one; the result is stored in the "
                           "label above"),
    ])
    form.native.layout().setStretch(2, 1)  # the other label takes the free width
    return form


class CombineBox(QGroupBox):
    """Group box "Combine two labels".

    Attributes
    ----------
    form : magicgui.widgets.Container
        The row; ``combine_op``, ``other_label_combo`` and ``combine_button`` are its natives.
    """

    def __init__(self) -> None:
        super().__init__("Combine two labels")
        self.form = combine_form()
        self.combine_op = self.form.op.native
        self.other_label_combo = self.form.other.native
        self.combine_button = self.form.apply.native
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.form.native)

    def set_label_choices(self, names: dict[int, str], selected: int | None = None) -> None:
        """Offer the labels ``names`` other than ``selected`` (the label the result goes to,
        named at the row's start); *Apply* needs a second label."""
        others = {v: t for v, t in names.items() if v != selected}
        set_label_choices(self.form.other, others)
        if others:
            self.form.other.value = next(iter(others))
        self.form.selected.value = (names[selected] if selected in names else "Selected label")
        self.combine_button.setEnabled(bool(others))
        self.combine_button.setToolTip(
            "Combine the label on the left with the chosen one; the result is stored in the "
            "label on the left" if others else "Needs a second label in this layer")

    def choice(self) -> tuple[str, int | None]:
        """(operation, other label value or ``None``)."""
        other = self.form.other.value
        return str(self.form.op.value), None if other is None else int(other)
