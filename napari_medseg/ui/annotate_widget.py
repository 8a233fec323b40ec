"""Annotate dock: the *Layers* box (image and labels layer every tool works on) and the
composition of the annotation sections below it.

Sections, one module each: *Classes* (:mod:`~napari_medseg.ui.annotate_classes`), *Brush* in mm
with intensity-constrained painting (:mod:`~napari_medseg.ui.annotate_brush`), *Interactive*
clicks and seeds (:mod:`~napari_medseg.ui.interactive_section`), *Slices*: interpolation and
sparse-slice marks (:mod:`~napari_medseg.ui.annotate_slices`), classical *Pre-segmentation*
(:mod:`~napari_medseg.ui.annotate_presegment`) and *Save* as NIfTI
(:mod:`~napari_medseg.ui.annotate_save`). The sections' widgets and methods stay reachable on
the dock under their historical names (``dock.class_table``, ``dock.method_combo``, ...).
"""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QFormLayout, QGroupBox, QWidget

from napari_medseg.ui._controls import (
    Dock,
    LayerCombo,
    button,
    scrollable_layout,
)
from napari_medseg.ui._layers import (
    add_labels_for_image,
    image_layers,
    labels_layers,
    layer_classes,
)
from napari_medseg.ui._notify import catch_errors
from napari_medseg.ui.annotate_brush import LUMINANCE_NOTE as LUMINANCE_NOTE
from napari_medseg.ui.annotate_brush import BrushSection
from napari_medseg.ui.annotate_classes import CLASS_COLUMNS as CLASS_COLUMNS
from napari_medseg.ui.annotate_classes import ClassesSection
from napari_medseg.ui.annotate_presegment import PRESEG_METHODS as PRESEG_METHODS
from napari_medseg.ui.annotate_presegment import PresegmentSection
from napari_medseg.ui.annotate_presegment import _lungs_ct as _lungs_ct
from napari_medseg.ui.annotate_save import SaveSection
from napari_medseg.ui.annotate_slices import SlicesSection
from napari_medseg.ui.annotate_slices import current_slice_axis as current_slice_axis
from napari_medseg.ui.annotate_slices import current_slice_index as current_slice_index
from napari_medseg.ui.interactive_section import InteractiveSection


class _FromSection:
    """A dock attribute that is the attribute of the same name of one of its sections."""

    def __init__(self, section: str) -> None:
        self.section = section
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, dock: Any, owner: type | None = None) -> Any:
        if dock is None:
            return self
        return getattr(getattr(dock, self.section), self.name)

    def __set__(self, dock: Any, value: Any) -> None:
        setattr(getattr(dock, self.section), self.name, value)


class AnnotateWidget(Dock):
    """Create and manage annotation labels for an image.

    The sections use the dock's ``viewer``, ``image_combo``, ``labels_combo``,
    :meth:`selected_class`, :meth:`intensity_window`, :meth:`set_status`, :meth:`set_busy`,
    ``busy`` and ``worker``.

    """

    # --- classes
    class_table = _FromSection("classes")
    classes_from_table = _FromSection("classes")
    set_class_color = _FromSection("classes")
    set_class_name = _FromSection("classes")
    _on_add_class = _FromSection("classes")
    # --- brush and intensity window
    brush_mm = _FromSection("brush")
    brush_px = _FromSection("brush")
    constrain_check = _FromSection("brush")
    low_spin = _FromSection("brush")
    high_spin = _FromSection("brush")
    window_button = _FromSection("brush")
    constrain_last_stroke = _FromSection("brush")
    _on_window_from_display = _FromSection("brush")
    # --- slices
    interp_button = _FromSection("slices")
    mark_button = _FromSection("slices")
    unmark_button = _FromSection("slices")
    mark_all_button = _FromSection("slices")
    clear_marks_button = _FromSection("slices")
    marks_label = _FromSection("slices")
    annotated_slices = _FromSection("slices")
    _on_interpolate = _FromSection("slices")
    # --- pre-segmentation
    method_combo = _FromSection("presegment")
    otsu_check = _FromSection("presegment")
    tolerance_spin = _FromSection("presegment")
    seed_button = _FromSection("presegment")
    seed_label = _FromSection("presegment")
    n_classes_spin = _FromSection("presegment")
    airways_check = _FromSection("presegment")
    target_combo = _FromSection("presegment")
    preseg_button = _FromSection("presegment")
    method_note = _FromSection("presegment")
    seed = _FromSection("presegment")
    set_seed = _FromSection("presegment")
    method_unavailable = _FromSection("presegment")
    _seed_callback = _FromSection("presegment")
    _on_presegment = _FromSection("presegment")
    # --- save
    save_button = _FromSection("save")
    save_as_button = _FromSection("save")
    save_label = _FromSection("save")
    default_save_path = _FromSection("save")
    save_labels = _FromSection("save")

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(napari_viewer, parent, follow_new_images=True)
        self.worker: Any = None  # background job on a large volume (tests wait on it)
        self.busy = False  # a labels edit or pre-segmentation is running in a worker
        layout = scrollable_layout(self)  # a standalone dock taller than the screen scrolls
        layout.addWidget(self._layers_box())
        self.classes = ClassesSection(self.labels_combo)
        layout.addWidget(self.classes)
        self.brush = BrushSection(self.image_combo, self.labels_combo)
        layout.addWidget(self.brush)
        self.interactive = InteractiveSection(self)
        layout.addWidget(self.interactive)
        self.slices = SlicesSection(self)
        layout.addWidget(self.slices)
        self.presegment = PresegmentSection(self)
        layout.addWidget(self.presegment)
        self.save = SaveSection(self.image_combo, self.labels_combo)
        layout.addWidget(self.save)
        layout.addStretch(1)

        self.labels_combo.pair_with(self.image_combo)  # labels of the chosen image only
        self.presegment.update_controls()
        self._on_labels_changed()
        self._on_image_changed()

    def _layers_box(self) -> QGroupBox:
        """Group box "Layers": the image and labels layer choice and *New labels layer*."""
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
        return box

    # ------------------------------------------------------------------ shared by the sections
    def selected_class(self) -> int:
        """Label value selected for painting (the labels layer's ``selected_label``)."""
        layer = self.labels_combo.layer()
        return int(layer.selected_label) if layer is not None else 1

    def intensity_window(self) -> tuple[float, float]:
        """The Brush section's intensity window ``(low, high)``, low <= high."""
        return self.brush.window()

    def set_status(self, text: str) -> None:
        """Show ``text`` in the dock's status line (under the Save buttons)."""
        self.save_label.setText(text)

    def show_error(self, message: str) -> None:
        """A background step failed: its one-line message replaces "Working …"."""
        from napari_medseg.ui._notify import short_message

        try:
            self.set_status(f"⚠ {short_message(message)}")
        except RuntimeError:  # the dock was closed meanwhile
            pass

    def set_busy(self, busy: bool) -> None:
        """A worker starts or ends: disable what must not run twice, say so in the status."""
        if not busy and self.save_label.text().startswith("Working"):
            self.set_status("")
        self.busy = busy
        self.slices.update_tools()
        self.presegment.update_controls()
        if busy:
            self.set_status("Working … (you can keep painting)")

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
        self.classes.labels_changed()
        self.brush.labels_changed()
        self.slices.labels_changed()

    def _on_image_changed(self, *_: Any) -> None:
        self.slices.update_tools()
        self.presegment.update_controls()
        self.brush.image_changed()
