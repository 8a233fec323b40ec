"""The Infer dock's *Segment an open image* section: the image, its extra channels, the run
options and the Segment / Cancel buttons.

The options are magicgui widgets (a ``ComboBox`` for the device, a ``Container`` of
``CheckBox`` es for test-time augmentation and the extra maps), embedded through ``.native``; the
image and channel choosers are the dock's own Qt layer widgets. The test-time augmentation
option names the mirroring the chosen model was trained with (:meth:`ImageSection.describe_tta`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from magicgui.widgets import CheckBox, ComboBox, Container
from qtpy.QtWidgets import QFormLayout, QGroupBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from napari_medseg.ui._controls import ChannelList, LayerCombo, button
from napari_medseg.ui._layers import image_layers
from napari_medseg.ui._settings import get_setting, set_setting

DEVICES = ("auto", "cpu", "cuda", "mps")

TTA_TEXT = "Test-time augmentation (mirroring)"
TTA_TOOLTIP = ("Average predictions over mirrored copies (along the axes the model was trained "
               "with: left-right only for 3D models trained on oriented scans, 2x slower; every "
               "axis otherwise, 4x (2D) or 8x (3D) slower)")


def _setting_choice(key: str, choices: tuple[str, ...], default: str) -> str:
    value = str(get_setting(key, default))
    return value if value in choices else default


#: Tooltip of "Segment image".
SEGMENT_TIP = "Segment the chosen image with the model"

class ImageSection(QGroupBox):
    """Group box *Segment an open image*.

    Parameters
    ----------
    viewer : napari.Viewer
    on_run, on_cancel : callable
        Slots of the *Segment image* and *Cancel* buttons.

    Attributes
    ----------
    image_combo, channel_list, channels_label : the image and its extra channels (Qt)
    device, tta, uncertainty, probability : the magicgui option widgets
    device_combo, tta_check, uncertainty_check, probability_check : their Qt widgets
    run_button, cancel_button : QPushButton
    """

    def __init__(self, viewer: Any, on_run: Callable[..., Any], on_cancel: Callable[..., Any],
                 parent: QWidget | None = None) -> None:
        super().__init__("Segment an open image", parent)
        self.viewer = viewer
        v = QVBoxLayout(self)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        self.image_combo = LayerCombo(viewer, image_layers, "(open an image first)")
        self.image_combo.setToolTip("The image to segment; the result is placed on its grid")
        form.addRow("Image", self.image_combo)
        self.channel_list = ChannelList(viewer, image_layers)
        self.channels_label = QLabel("Extra channels")
        form.addRow(self.channels_label, self.channel_list)

        # ---- options (magicgui): the Device row stays in the form, aligned with Image
        self.device = ComboBox(choices=DEVICES, value=_setting_choice("device", DEVICES, "auto"),
                               tooltip="auto = NVIDIA GPU if present, else Apple GPU, else CPU")
        form.addRow("Device", self.device.native)
        v.addLayout(form)
        self.tta = CheckBox(text=TTA_TEXT, value=bool(get_setting("infer/tta", False)),
                            tooltip=TTA_TOOLTIP)
        self.uncertainty = CheckBox(
            text="Add uncertainty map (entropy)", value=bool(get_setting("infer/uncertainty", True)),
            tooltip="Bright where the model is unsure between classes: check those regions first")
        self.probability = CheckBox(
            text="Add foreground probability map",
            value=bool(get_setting("infer/probability", False)),
            tooltip="Probability (0-1) that a voxel is any labelled class")
        self.options = Container(widgets=[self.tta, self.uncertainty, self.probability],
                                 labels=False)
        self.options.margins = (0, 0, 0, 0)
        v.addWidget(self.options.native)
        self.device_combo = self.device.native
        self.tta_check = self.tta.native
        self.uncertainty_check = self.uncertainty.native
        self.probability_check = self.probability.native

        row = QHBoxLayout()
        self.run_button = button("Segment image", SEGMENT_TIP, on_run)
        self.cancel_button = button("Cancel", "Stop the running segmentation", on_cancel)
        self.cancel_button.setEnabled(False)
        row.addWidget(self.run_button, 2)
        row.addWidget(self.cancel_button, 1)
        v.addLayout(row)

    # ------------------------------------------------------------------ state
    def remember_run_options(self) -> None:
        """Store device and TTA (shared with folder runs) for the next session."""
        set_setting("device", self.device_combo.currentText())
        set_setting("infer/tta", self.tta_check.isChecked())

    def remember_map_options(self) -> None:
        """Store the uncertainty / probability choices for the next session."""
        set_setting("infer/uncertainty", self.uncertainty_check.isChecked())
        set_setting("infer/probability", self.probability_check.isChecked())

    def set_running(self, running: bool) -> None:
        """Lock the choices while a segmentation runs (the caller re-describes TTA after)."""
        for w in (self.run_button, self.image_combo, self.device_combo, self.tta_check,
                  self.uncertainty_check, self.probability_check):
            w.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if not running:
            self.image_combo.setEnabled(bool(self.image_combo.layers()))

    def extra_layers(self, image_layer: Any) -> list[Any]:
        """The extra channel layers to feed with ``image_layer`` (none while hidden)."""
        if not self.channel_list.isVisibleTo(self):
            return []
        return self.channel_list.checked_layers(image_layer)

    def update_channels(self, card: Any) -> None:
        """Offer the extra channels a multi-channel model needs (hidden for one-image models)."""
        try:
            image = self.image_combo.layer()
            self.channel_list.set_images([image])
            own = 3 if image is not None and getattr(image, "rgb", False) else 1
            wanted = card is not None and card.in_channels > own
            self.channel_list.setVisible(wanted)
            self.channels_label.setVisible(wanted)
            if wanted and not self.channel_list.checked_keys():
                self.channel_list.set_checked(list(card.channel_names[own:]))
        except RuntimeError:  # widget deleted
            pass

    def describe_tta(self, card: Any) -> None:
        """Name the mirroring this model's test-time augmentation will use (its card's axes)."""
        check = self.tta_check
        if card is None:  # no model, or one whose card cannot be read: the generic option
            check.setText(TTA_TEXT)
            check.setToolTip(TTA_TOOLTIP)
            check.setEnabled(True)
            return
        axes = card.mirror_axes
        if axes is None:
            text, why = f"all axes, {2 ** int(card.dims)}×", "along every axis"
        elif len(axes) == 0:
            text, why = "off for this model", "not at all (trained without mirroring)"
        elif len(axes) == 1:
            text, why = "left-right, 2×", "left-right only"
        else:
            text, why = f"{len(axes)} axes, {2 ** len(axes)}×", f"along {len(axes)} axes"
        check.setToolTip(
            "Average the predictions over mirrored copies of the image, as the model saw them in "
            f"training: this model was mirrored {why}."
            + (" Slower by the factor shown; usually a little more accurate." if axes != [] else ""))
        check.setText(f"Test-time augmentation ({text})")
        check.setEnabled(axes is None or len(axes) > 0)
