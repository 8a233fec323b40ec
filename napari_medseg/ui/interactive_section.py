"""The Annotate dock's *Interactive* section: clicks, boxes and scribbles become labels.

* **Clicks** (a napari Points layer "clicks" in add mode): a left click adds the object under it
  to the selected class of the current Labels layer, a Shift+click (or a click with *Remove*
  on) removes a false region. Each click runs
  :func:`~napari_medseg.interactive.refine_with_clicks` (a click-guided model on a crop, or the
  training-free random walker) in a background worker; the result is written as ONE step of
  the layer's undo history (Ctrl+Z), touching only voxels of that class and background. A click
  that arrives while one is computing supersedes it (generation counter: an older result is
  dropped, the newest clicks are computed next).
* **Box** (a napari Shapes layer "box" in rectangle mode): a box dragged around one object
  (on the current slice of a volume) runs :func:`~napari_medseg.interactive.refine_with_box`
  in the worker: the object inside becomes the selected class, nothing outside the box changes.
* **Grow from seeds**: a "seeds" Labels layer on the image grid (value 1 = background strokes,
  value ``v + 1`` = strokes of class ``v``); *Grow* runs
  :func:`~napari_medseg.interactive.grow_from_seeds` on a box around the strokes and writes the
  result into the current labels as one undoable edit (optionally after every stroke).

Split by concern: pure helpers and constants in :mod:`~napari_medseg.ui.interactive_helpers`,
the model chooser in :mod:`~napari_medseg.ui.interactive_models`, the click and box prompts in
:mod:`~napari_medseg.ui.interactive_prompts`; this module keeps the section's widgets, the job
plumbing (``_submit``, ``_run``, :meth:`InteractiveSection.apply_patch`, generations) and
grow-from-seeds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QWidget,
)

from napari_medseg.ui._controls import (
    button,
    double_spin,
    hint,
    run_in_worker,
)
from napari_medseg.ui._layers import (
    add_labels_for_image,
    cells,
    is_rgb_layer,
    spatial_shape,
    update_medseg_metadata,
    volume_from_layer,
)
from napari_medseg.ui._notify import catch_errors, show_error_message
from napari_medseg.ui.interactive_helpers import (  # noqa: F401 - re-exported
    AUTO_UPDATE_DELAY_S,
    BACKGROUND_SEED,
    BOX_COLOUR,
    CLICK_COLOURS,
    DEFAULT_REACH_MM,
    SECTION_HELP,
    SEED_BACKGROUND,
    SEEDS_HELP,
    TRAINING_FREE,
    TRAINING_FREE_TEXT,
    _guidance_of,
    depth_along_ray,
)
from napari_medseg.ui.interactive_models import ModelChooserMixin
from napari_medseg.ui.interactive_prompts import PromptsMixin


class InteractiveSection(ModelChooserMixin, PromptsMixin, QGroupBox):
    """Group box with click prompts and grow-from-seeds for an :class:`AnnotateWidget`.

    Parameters
    ----------
    dock : AnnotateWidget
        The dock whose image, labels and class selection the section uses.

    Attributes
    ----------
    refine : callable or None
        Replaces ``refine_with_clicks`` when set (tests put a slow fake here).
    grow : callable or None
        Replaces ``grow_from_seeds`` when set.
    worker : FunctionWorker or None
        The click or grow job running now (tests wait on it).
    generation : int
        Number of updates requested so far; a result of an older one is dropped.
    """

    def __init__(self, dock: Any) -> None:
        super().__init__("Interactive (clicks, box, grow from seeds)")
        self.dock = dock
        self.viewer = dock.viewer
        self.refine: Callable[..., Any] | None = None
        self.grow: Callable[..., Any] | None = None
        self.worker: Any = None
        self.generation = 0
        self.applied_generation = 0
        self._pending: Callable[[], Any] | None = None
        self._press: dict[str, Any] = {}
        self._models: dict[str, Any] = {}  # model folder -> (model, card), loaded in a worker
        self.clicks_layer: Any = None
        self.box_layer: Any = None
        self.seeds_layer: Any = None
        self._seed_timer = QTimer(self)
        self._seed_timer.setSingleShot(True)
        self._seed_timer.setInterval(int(AUTO_UPDATE_DELAY_S * 1000))
        self._seed_timer.timeout.connect(self._on_auto_grow)

        form = QFormLayout(self)
        # --- model ---------------------------------------------------------------------
        self.model_combo = QComboBox()
        self.model_combo.setToolTip("What turns clicks into labels: a click-guided model (its "
                                    "card has guidance channels) or the training-free method")
        self.model_combo.currentIndexChanged.connect(self._update_status)
        form.addRow("Method", self._row(self.model_combo, button(
            "…", "Use a click-guided model folder (e.g. a project's model)",
            self._on_browse_model)))
        self.model_label = hint("")
        form.addRow(self.model_label)
        # --- clicks --------------------------------------------------------------------
        self.clicks_button = button("Start clicking", "Create (or show) the 'clicks' layer "
                                    "and switch it to adding points", self._on_start_clicks)
        self.negative_check = QCheckBox("Remove")
        self.negative_check.setToolTip("Clicks remove a false region (same as Shift+click); "
                                       "off: clicks add the object")
        self.negative_check.toggled.connect(lambda *_: self._update_defaults())
        self.clear_button = button("Clear", "Forget the clicks (the labels stay as they are); "
                                   "the next click starts a new object", self._on_clear_clicks)
        form.addRow("Clicks", self._row(self.clicks_button, self.negative_check,
                                        self.clear_button))
        self.reach_spin = double_spin(DEFAULT_REACH_MM, 2.0, 500.0, "How far (mm) beyond the "
                                      "clicks and the class's current extent a click may "
                                      "change labels (the crop that is computed)", " mm")
        # in pixels on a picture without pixel size; set per image by ``update_reach``
        self._reach_default, self._reach_unit, self._reach_for = DEFAULT_REACH_MM, "mm", None
        form.addRow("Reach", self.reach_spin)
        self.box_button = button("Draw a box", "Create (or show) the 'box' layer in rectangle "
                                 "mode: drag a box around one object (on the current slice of "
                                 "a volume); the object inside becomes the selected class",
                                 self._on_start_box)
        form.addRow("Box", self.box_button)
        help_label = hint(SECTION_HELP)
        # a word-wrapped label in a form row is not given the height of its lines by Qt
        help_label.setMinimumHeight(2 * help_label.fontMetrics().lineSpacing() + 2)
        form.addRow(help_label)
        # --- seeds ---------------------------------------------------------------------
        self.seeds_button = button("Start seeds layer", "Create (or show) a Labels layer for "
                                   "scribbles: 1 = background, k+1 = class k",
                                   self._on_start_seeds)
        self.grow_button = button("Grow", "Segment a box around the scribbles (random walker) "
                                  "into the current labels; one undo step", self._on_grow)
        self.auto_check = QCheckBox("Auto")
        self.auto_check.setToolTip("Auto-update: grow again after every stroke in the seeds "
                                   "layer")
        form.addRow("Seeds", self._row(self.seeds_button, self.grow_button, self.auto_check))
        form.addRow(hint(SEEDS_HELP))
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setStyleSheet("font-size: small;")
        self.status.setMinimumHeight(2 * self.status.fontMetrics().lineSpacing() + 4)
        form.addRow(self.status)

        from napari_medseg.ui._models import model_events

        model_events.saved.connect(lambda *_: self._safe_refresh_models())
        model_events.current.connect(self._on_current_model)
        dock.labels_combo.currentIndexChanged.connect(lambda *_: self._update_defaults())
        dock.labels_combo.currentIndexChanged.connect(lambda *_: self._update_buttons())
        self.refresh_models()
        self._update_buttons()

    def _update_buttons(self) -> None:
        """Clicks, boxes and seeds write into a Labels layer: they wait for one."""
        has_labels = self.dock.labels_combo.layer() is not None
        for b in (self.clicks_button, self.box_button, self.seeds_button, self.grow_button):
            b.setEnabled(has_labels)
        self.auto_check.setEnabled(has_labels)

    @staticmethod
    def _row(first: QWidget, *others: QWidget) -> QWidget:
        """Widgets side by side, the first one stretching."""
        w = QWidget()
        row = QHBoxLayout(w)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(first, 1)
        for other in others:
            row.addWidget(other)
        return w

    # ------------------------------------------------------------------ jobs
    def _submit(self, start: Callable[[], Any]) -> int:
        """Run ``start`` now, or after the running job (which it supersedes)."""
        self.generation += 1
        if self.worker is not None:
            self._pending = start
            self.status.setText("Working … (newer input: the running update will be dropped)")
            return self.generation
        self.worker = start()
        return self.generation

    def _job_finished(self) -> None:
        self.worker = None
        pending, self._pending = self._pending, None
        if pending is not None:
            try:
                self.worker = pending()
            except Exception as exc:  # noqa: BLE001
                self.status.setText(f"⚠ {show_error_message(exc, 'Interactive')}")

    def _run(self, work: Callable[[], Any], describe: Callable[[int, float], str],
             action: str) -> Any:
        """Start ``work() -> EditPatch | None`` for the current generation; apply if newest."""
        gen = self.generation
        labels = self._labels()

        def job() -> tuple[Any, float]:
            t0 = time.perf_counter()
            patch = work()
            return patch, time.perf_counter() - t0

        def returned(result: tuple[Any, float]) -> None:
            patch, seconds = result
            if gen != self.generation:
                return  # superseded by a newer click or stroke
            self.apply_patch(labels, patch, gen, lambda n: describe(n, seconds))

        def errored(exc: BaseException) -> None:
            if gen == self.generation:  # the status line says why, not "Working …"
                self.status.setText(f"⚠ {action} failed: {exc}")

        self.status.setText("Working …")
        worker = run_in_worker(job, on_returned=returned, action=action,
                               on_finished=self._job_finished, on_errored=errored)
        return worker

    def apply_patch(self, layer: Any, patch: Any, gen: int,
                    describe: Callable[[int], str]) -> None:
        """Write ``patch`` into ``layer`` as one undo step (main thread)."""
        from napari_medseg.ui._edit_apply import EditWriter

        def done(n: int) -> None:
            self.applied_generation = gen
            self.status.setText(describe(n))

        def failed(exc: BaseException) -> None:
            self.status.setText(f"⚠ {show_error_message(exc, 'Interactive')}")

        if patch is None:
            done(0)
            return
        EditWriter(layer, patch, done, failed).start()


    # ------------------------------------------------------------------ seeds
    @catch_errors("Start seeds layer")
    def _on_start_seeds(self) -> Any:
        return self.start_seeds()

    def seed_classes(self) -> dict[int, dict[str, str]]:
        """Class table of the seeds layer: 1 = background, ``v + 1`` = class ``v``."""
        table = {BACKGROUND_SEED: dict(SEED_BACKGROUND)}
        for value, entry in self.dock.classes_from_table().items():
            table[int(value) + 1] = {"name": f"{entry['name']} (scribble)",
                                     "color": entry["color"]}
        return table

    def start_seeds(self) -> Any:
        """Create (or show) the seeds Labels layer on the image grid, in paint mode."""
        image = self._image()
        layer = self.seeds_layer
        if not self._layer_alive(layer) or spatial_shape(layer) != spatial_shape(image):
            layer = add_labels_for_image(self.viewer, image, name=f"{image.name} seeds",
                                         classes=self.seed_classes(), role="seeds")
            update_medseg_metadata(layer, interactive="seeds")
            layer.events.paint.connect(self._on_seed_paint)
            self.seeds_layer = layer
        else:
            from napari_medseg.ui._layers import set_layer_classes

            set_layer_classes(layer, self.seed_classes())
        label = int(self.dock.selected_class())
        layer.selected_label = label + 1
        layer.brush_size = max(int(self.dock.labels_combo.layer().brush_size), 1) \
            if self.dock.labels_combo.layer() is not None else layer.brush_size
        self.viewer.layers.selection.active = layer
        layer.mode = "paint"
        self.status.setText(f"Paint background with 1 and class {label} with {label + 1}, "
                            "then Grow.")
        return layer

    def _on_seed_paint(self, event: Any = None) -> None:
        if self.auto_check.isChecked():
            self._seed_timer.start()

    def _on_auto_grow(self) -> None:
        try:
            self.request_grow()
        except Exception as exc:  # noqa: BLE001
            self.status.setText(f"⚠ {show_error_message(exc, 'Grow from seeds')}")

    @catch_errors("Grow from seeds")
    def _on_grow(self) -> Any:
        return self.request_grow()

    def request_grow(self) -> int:
        """Grow the scribbles into the current labels (in a worker); the generation."""
        if not self._layer_alive(self.seeds_layer):
            raise ValueError("start a seeds layer and paint a few strokes first")
        seeds = np.asarray(self.seeds_layer.data)
        if len(np.unique(seeds[seeds > 0])) < 2:
            raise ValueError("paint strokes of the background (1) and of at least one class "
                             "before growing")
        return self._submit(self._start_grow)

    def _start_grow(self) -> Any:
        from napari_medseg.editing import EditPatch

        image, labels = self._image(), self._labels()
        if spatial_shape(image) != spatial_shape(labels):
            raise ValueError("the labels and the image differ in shape")
        volume = volume_from_layer(image)
        seeds_data = np.asarray(self.seeds_layer.data)
        label_data = labels.data
        grow = self.grow
        if grow is None:
            from napari_medseg.interactive import grow_from_seeds as grow
        from napari_medseg.interactive.seeds import DEFAULT_MARGIN_MM, seed_box

        rgb = is_rgb_layer(image)

        def work() -> Any:
            seeds = np.array(seeds_data, copy=True).astype(np.int32)
            box = seed_box(seeds, volume.spacing, DEFAULT_MARGIN_MM)
            if box is None:
                return None
            grown = grow(volume.array, seeds, volume.spacing, roi=box,
                         background=BACKGROUND_SEED, channel_axis=-1 if rgb else None)
            classes = [int(v) - 1 for v in np.unique(seeds) if v > BACKGROUND_SEED]
            old = np.array(label_data[box], copy=True)
            result = np.where(grown[box] > BACKGROUND_SEED, grown[box] - 1, 0)
            # only background and the scribbled classes change; other classes are kept
            editable = np.isin(old, [0, *classes])
            new = np.where(editable, result, old).astype(old.dtype)
            if np.array_equal(new, old):
                return None
            return EditPatch(bbox=box, old=old, new=new)

        def describe(n: int, seconds: float) -> str:
            return (f"Grow from seeds: {n} {cells(labels)} changed in {seconds:.1f} s "
                    "(Ctrl+Z on the labels undoes it).")

        return self._run(work, describe, "Grow from seeds")

    def wait(self, qtbot: Any, timeout_ms: int = 20_000) -> None:
        """Test helper: wait until no job is running or pending."""
        qtbot.waitUntil(lambda: self.worker is None and self._pending is None,
                        timeout=timeout_ms)


def section_for(dock: Any, parent: QWidget | None = None) -> InteractiveSection:
    """Build the Interactive section of ``dock`` (an AnnotateWidget)."""
    section = InteractiveSection(dock)
    if parent is not None:
        section.setParent(parent)
    return section
