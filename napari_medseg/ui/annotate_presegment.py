"""The Annotate dock's *Pre-segmentation* section: classical methods that propose labels.

Threshold (intensity window or Otsu), region growing from a picked seed, k-means, a Gaussian
mixture and Lungs (CT) run on the chosen image; the result becomes a new labels layer or fills
background voxels of the current one with the selected class (one undo step). Clustering and
Lungs (CT) always run in a worker, the others above ``BACKGROUND_VOXELS``.

The option form is a magicgui :class:`~magicgui.widgets.Container` (napari's idiom for
parameter forms); plain Qt only adds what magicgui does not express: a checkable seed button,
per-item tooltips of the method list and the word-wrapped note under the form.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, Label, PushButton, SpinBox
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QGroupBox, QSizePolicy, QVBoxLayout

from napari_medseg.ui._controls import BACKGROUND_VOXELS, edit_labels, hint, run_in_worker
from napari_medseg.ui._layers import (
    add_labels_for_image,
    cells,
    intensity_array,
    is_rgb_layer,
    spatial_shape,
    volume_from_layer,
)
from napari_medseg.ui._notify import catch_errors
from napari_medseg.ui.annotate_brush import LUMINANCE_NOTE

PRESEG_METHODS = {
    "threshold": "Threshold (window or Otsu)",
    "region_grow": "Region grow from a seed point",
    "kmeans": "k-means clustering",
    "gmm": "Gaussian mixture (EM)",
    "lungs_ct": "Lungs (CT)",
}

#: Name given to a pre-segmentation's new labels layer ("<image> <name>").
PRESEG_LAYER_NAMES = {"lungs_ct": "lungs"}

#: Pre-segmentations that only make sense on one modality (others: disabled with a tooltip).
MODALITY_PRESEG_METHODS = {"lungs_ct": "CT"}

#: Pre-segmentations that take seconds whatever the image size (imports, model fitting): always
#: run in a worker.
SLOW_PRESEG_METHODS = ("kmeans", "gmm", "lungs_ct")

RESULT_TARGETS = {"new": "New labels layer", "current": "Selected class of current labels"}
RUN_TIP = "Run the chosen method on the image"

_CLUSTERING_IMPORT: list[Any] = []  # the one import thread, once started


def _import_clustering_in_background() -> None:
    """Import scikit-learn once, in a daemon thread, when k-means / GMM is chosen."""
    from napari_medseg.editing.presegment import import_clustering

    if not _CLUSTERING_IMPORT:
        thread = threading.Thread(target=import_clustering, name="medseg-import-sklearn",
                                  daemon=True)
        _CLUSTERING_IMPORT.append(thread)
        thread.start()


def _lungs_ct() -> Any | None:
    """The core's ``lungs_ct`` pre-segmentation, or None in a version without it."""
    from napari_medseg.editing import presegment

    return getattr(presegment, "lungs_ct", None)


def options_form() -> Container:
    """The magicgui form of the pre-segmentation options (widgets named as the attributes)."""
    form = Container(labels=True)
    form.extend([  # added after creation: magicgui then aligns the labels' widths
        ComboBox(name="method", label="Method",
                 choices=[(text, key) for key, text in PRESEG_METHODS.items()],
                 tooltip="Classical method that proposes labels for you to correct"),
        CheckBox(name="otsu", text="Otsu (automatic threshold)", value=True,
                 tooltip="Choose the threshold automatically; otherwise use the intensity "
                         "window above"),
        FloatSpinBox(name="tolerance", label="Tolerance", value=50.0, min=0.0, max=1e6,
                     step=5.0, tooltip="Region growing accepts neighbours whose intensity is "
                                       "within this distance of the seed"),
        Container(name="seed_row", label="Seed", layout="horizontal", labels=False, widgets=[
            PushButton(name="pick_seed", text="Pick seed point",
                       tooltip="Then click on the image to choose where region growing "
                               "starts"),
            Label(name="seed_text", value="no seed"),
        ]),
        SpinBox(name="clusters", label="Clusters", value=3, min=2, max=10,
                tooltip="Number of intensity clusters (k-means / GMM)"),
        CheckBox(name="airways", text="Exclude airways (trachea, main bronchi)", value=True,
                 tooltip="Lungs (CT): leave the trachea and main bronchi out of the lung mask"),
        ComboBox(name="target", label="Result",
                 choices=[(text, key) for key, text in RESULT_TARGETS.items()],
                 tooltip="Where the result goes; into the current labels it only fills "
                         "background voxels and can be undone with Ctrl+Z"),
        PushButton(name="run_button", text="Run pre-segmentation", tooltip=RUN_TIP),
    ])
    form.margins = (0, 0, 0, 0)
    form.seed_row.margins = (0, 0, 0, 0)
    form.tolerance.native.setDecimals(1)
    seed_text = form.seed_row.seed_text.native  # the seed text takes the free width
    seed_text.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)
    form.seed_row.native.layout().setStretch(1, 1)
    form.seed_row.pick_seed.native.setCheckable(True)
    return form


class PresegmentSection(QGroupBox):
    """Group box "Pre-segmentation": the option form, *Run pre-segmentation* and a note.

    Parameters
    ----------
    dock : AnnotateWidget
        The dock whose viewer, image / labels choice, selected class, intensity window, status
        line and busy state the section uses.

    Attributes
    ----------
    form : magicgui.widgets.Container
        The options; ``method_combo``, ``otsu_check``, ... are its widgets' Qt natives.
    seed : tuple of int or None
        Region-growing seed (voxel index, array order).
    """

    def __init__(self, dock: Any) -> None:
        super().__init__("Pre-segmentation")
        self.dock = dock
        self.viewer = dock.viewer
        self.seed: tuple[int, ...] | None = None
        self.form = options_form()
        self.method_combo = self.form.method.native
        self.otsu_check = self.form.otsu.native
        self.tolerance_spin = self.form.tolerance.native
        self.seed_button = self.form.seed_row.pick_seed.native
        self.seed_label = self.form.seed_row.seed_text.native
        self.n_classes_spin = self.form.clusters.native
        self.airways_check = self.form.airways.native
        self.target_combo = self.form.target.native
        self.preseg_button = self.form.run_button.native
        self.method_note = hint("")
        self.method_note.setVisible(False)
        layout = QVBoxLayout(self)
        layout.addWidget(self.form.native)
        layout.addWidget(self.method_note)
        self.form.method.changed.connect(self.update_controls)
        self.seed_button.toggled.connect(self._on_pick_seed)
        self.preseg_button.clicked.connect(self._on_presegment)

    # ------------------------------------------------------------------ options
    def update_controls(self, *_: Any) -> None:
        """Show / enable the options of the chosen method; say why it cannot run, if so."""
        method = self.form.method.value
        if method in ("kmeans", "gmm"):
            _import_clustering_in_background()
        self.form.otsu.visible = method == "threshold"
        self.form.tolerance.enabled = method == "region_grow"
        self.form.seed_row.pick_seed.enabled = method == "region_grow"
        self.form.clusters.enabled = method in ("kmeans", "gmm")
        self.form.airways.visible = method == "lungs_ct"
        reason = self.method_unavailable(method)
        self.preseg_button.setEnabled(reason is None and not self.dock.busy)
        image = self.dock.image_combo.layer()
        tip = RUN_TIP
        if image is not None and is_rgb_layer(image) and method != "lungs_ct":
            tip += ". " + LUMINANCE_NOTE
        self.preseg_button.setToolTip(reason or tip)
        self.method_note.setText(reason or "")
        self.method_note.setVisible(reason is not None)
        for i in range(self.method_combo.count()):
            why = self.method_unavailable(self.method_combo.itemData(i))
            self.method_combo.setItemData(i, why or "", Qt.ToolTipRole)

    def method_unavailable(self, method: str | None) -> str | None:
        """Why ``method`` cannot run on the chosen image (None when it can)."""
        needed = MODALITY_PRESEG_METHODS.get(str(method))
        if needed is None:
            return None
        image = self.dock.image_combo.layer()
        if image is None:
            return f"{PRESEG_METHODS[method]} needs a {needed} image"
        if is_rgb_layer(image):
            return f"{PRESEG_METHODS[method]} needs a {needed} image, not a colour picture"
        modality = str(volume_from_layer(image).modality or "unknown")
        if modality.upper() != needed:
            return (f"{PRESEG_METHODS[method]} needs a {needed} image "
                    f"('{image.name}' is {modality})")
        if method == "lungs_ct" and _lungs_ct() is None:
            return "Lungs (CT) is not available in this version"
        return None

    # ------------------------------------------------------------------ seed point
    def _on_pick_seed(self, on: bool) -> None:
        callbacks = self.viewer.mouse_drag_callbacks
        if on and self._seed_callback not in callbacks:
            callbacks.append(self._seed_callback)
            self.seed_label.setText("click on the image …")
        elif not on and self._seed_callback in callbacks:
            callbacks.remove(self._seed_callback)

    def _seed_callback(self, viewer: Any, event: Any) -> None:
        image = self.dock.image_combo.layer()
        if image is None:
            return
        point = np.round(image.world_to_data(event.position)).astype(int)
        self.set_seed(tuple(int(p) for p in point))
        self.seed_button.setChecked(False)

    def set_seed(self, point: tuple[int, ...]) -> None:
        """Set the region-growing seed (voxel index, array order)."""
        self.seed = tuple(int(p) for p in point)
        self.seed_label.setText("seed at voxel " + ", ".join(map(str, self.seed)))

    # ------------------------------------------------------------------ run
    def _segmenter(self, modality: str | None = None,
                   spacing: tuple[float, ...] | None = None) -> tuple[str, Any]:
        """(method key, function image -> label map) for the chosen pre-segmentation.

        k-means and the Gaussian mixture leave the air around the body at 0 (its threshold
        follows ``modality``: -500 HU for CT). ``spacing`` (mm) is for Lungs (CT).
        """
        from napari_medseg import editing

        options = self.form
        method = options.method.value
        low, high = self.dock.intensity_window()
        n_classes = int(options.clusters.value)
        if method == "threshold":
            if options.otsu.value:
                return method, lambda img: editing.threshold_segment(img, method="otsu")
            return method, lambda img: editing.threshold_segment(img, method="window", low=low,
                                                                 high=high)
        if method == "region_grow":
            if self.seed is None:
                raise ValueError("pick a seed point first (button 'Pick seed point', then click)")
            seed, tolerance = self.seed, float(options.tolerance.value)
            return method, lambda img: editing.region_grow(img, seed, tolerance=tolerance)
        if method == "kmeans":
            return method, lambda img: editing.kmeans_segment(img, n_classes, modality=modality)
        if method == "lungs_ct":
            lungs_ct = _lungs_ct()
            if lungs_ct is None:
                raise ValueError("Lungs (CT) is not available in this version")
            airways = bool(options.airways.value)
            return method, lambda img: lungs_ct(img, spacing, modality=modality or "CT",
                                                exclude_airways=airways)
        return method, lambda img: editing.gmm_segment(img, n_classes, modality=modality)

    @catch_errors("Pre-segmentation")
    def _on_presegment(self) -> Any:
        """Run the chosen pre-segmentation; returns its worker (None when done at once).

        Clustering always runs in a worker (importing and fitting takes seconds even on a small
        image); thresholds and region growing do so above ``BACKGROUND_VOXELS``. Into the
        current labels the result is one undo step.
        """
        dock = self.dock
        image = dock.image_combo.require("image")
        reason = self.method_unavailable(self.form.method.value)
        if reason is not None:
            raise ValueError(reason)
        volume = volume_from_layer(image)
        # intensity methods see one value per pixel: a colour picture's luminance
        array = intensity_array(image) if volume.rgb else volume.array
        method, segment = self._segmenter(volume.modality, volume.spacing)
        slow = method in SLOW_PRESEG_METHODS or array.size > BACKGROUND_VOXELS
        if self.form.target.value == "new":
            def labels_of(img: np.ndarray) -> tuple[np.ndarray, int]:
                result = np.asarray(segment(img))
                return result.astype(np.uint8, copy=False), int(result.max(initial=0))

            def add(result: tuple[np.ndarray, int]) -> None:
                self._add_presegmentation(image, method, *result)

            if not slow:
                add(labels_of(array))
                return None
            dock.set_busy(True)
            dock.worker = run_in_worker(labels_of, array, on_returned=add,
                                        action="Pre-segmentation",
                                        on_finished=lambda: dock.set_busy(False))
            return dock.worker
        layer = dock.labels_combo.require("Labels layer")
        if tuple(spatial_shape(layer)) != tuple(array.shape):
            raise ValueError(f"labels '{layer.name}' and image '{image.name}' differ in shape")
        label = dock.selected_class()

        def compute(current: np.ndarray) -> np.ndarray:
            result = np.asarray(segment(array))
            values = np.where(result > 0, label if result.max(initial=0) <= 1 else result, 0)
            fill = (current == 0) & (values > 0)
            return np.where(fill, values, current).astype(current.dtype)

        def done(n: int) -> None:
            dock.set_status(f"{PRESEG_METHODS[method]}: {n} background {cells(layer)} "
                            "labelled (Ctrl+Z undoes it).")

        dock.worker = edit_labels(layer, compute, done, "Pre-segmentation", dock.set_busy,
                                  background=slow, on_error=dock.show_error)
        return dock.worker

    def _add_presegmentation(self, image: Any, method: str, result: np.ndarray,
                             n_values: int | None = None) -> Any:
        from napari_medseg.ui._layers import default_classes

        if n_values is None:
            n_values = int(result.max(initial=0))
        classes = default_classes(max(n_values, 1))
        if method == "lungs_ct":
            classes = {v: {**entry, "name": "lungs" if n_values <= 1 else f"lung {v}"}
                       for v, entry in classes.items()}
        layer = add_labels_for_image(self.viewer, image, data=result.astype(np.uint8, copy=False),
                                     name=f"{image.name} {PRESEG_LAYER_NAMES.get(method, method)}",
                                     classes=classes)
        self.dock.labels_combo.set_layer(layer)
        self.dock.set_status(f"{PRESEG_METHODS.get(method, method)}: new labels layer "
                             f"'{layer.name}'.")
        return layer
