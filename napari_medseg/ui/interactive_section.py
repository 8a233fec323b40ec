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
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
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
    layer_key,
    run_in_worker,
    same_layer,
)
from napari_medseg.ui._layers import (
    add_labels_for_image,
    is_rgb_layer,
    layer_transform_kwargs,
    length_unit,
    medseg_metadata,
    spatial_shape,
    update_medseg_metadata,
    volume_from_layer,
)
from napari_medseg.ui._notify import catch_errors, show_error_message

#: Seed value of background strokes (``napari_medseg.interactive.BACKGROUND_SEED``; the core
#: is imported lazily: it pulls in torch, which would slow the dock's start by seconds).
BACKGROUND_SEED = 1

#: Default crop margin of a click (``interactive.refine.DEFAULT_CROP_MARGIN_MM``).
DEFAULT_REACH_MM = 15.0

#: Combo entry of the training-free method (no model).
TRAINING_FREE = ""
TRAINING_FREE_TEXT = "Training-free (grow from clicks)"
CLICK_COLOURS = {True: "#33dd55", False: "#ff3344"}
SEED_BACKGROUND = {"name": "background (scribble)", "color": "#8c8c8c"}
#: Seconds after a stroke before *Auto-update* grows (strokes in quick succession: one run).
AUTO_UPDATE_DELAY_S = 0.3
SECTION_HELP = ("Click adds to the class · Shift+click removes · a box takes the object inside "
                "· Ctrl+Z undoes")
#: Edge colour of the box prompt.
BOX_COLOUR = "#ffd700"
SEEDS_HELP = "Scribble 1 on the background, k+1 on class k; then Grow"


def depth_along_ray(samples: np.ndarray, intensities: np.ndarray, labels: np.ndarray,
                    label: int, positive: bool) -> np.ndarray:
    """Pick where a click in the 3D view lands on its ray through the volume.

    Parameters
    ----------
    samples : np.ndarray
        ``(N, ndim)`` voxel coordinates along the ray, nearest the camera first.
    intensities, labels : np.ndarray
        ``(N,)`` image intensity (luminance) and label value at each sample.
    label : int
        The class being edited.
    positive : bool
        Polarity of the click.

    Returns
    -------
    np.ndarray
        The chosen coordinate: a negative click lands on the first voxel of ``label`` it
        meets (what the user sees of the labels); a positive click on the brightest sample
        that is not inside another class (what a maximum-intensity rendering shows).
    """
    samples = np.asarray(samples, float)
    if not positive:
        hit = np.flatnonzero(np.asarray(labels) == label)
        if hit.size:
            return samples[hit[0]]
    values = np.asarray(intensities, float).copy()
    values[(np.asarray(labels) != 0) & (np.asarray(labels) != label)] = -np.inf
    if not np.isfinite(values).any():
        return samples[len(samples) // 2]
    return samples[int(np.nanargmax(values))]


def _guidance_of(card: Any) -> dict[str, Any] | None:
    """The card's click guidance (:func:`napari_medseg.interactive.guidance_of`), imported late.

    Cards that record no guidance anywhere are answered without importing the core (torch).
    """
    if not getattr(card, "guidance", None) and \
            not (getattr(card, "train_config", None) or {}).get("guidance"):
        return None
    from napari_medseg.interactive import guidance_of

    return guidance_of(card)


class InteractiveSection(QGroupBox):
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
        self.refresh_models()

    def _on_current_model(self, path: str) -> None:
        """A project's current model changed: use it for clicks if it has click guidance."""
        try:
            self.use_model(path)
        except (ValueError, OSError):
            pass  # no guidance channels: the method stays as it is

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

    # ------------------------------------------------------------------ model
    def _safe_refresh_models(self) -> None:
        try:
            self.refresh_models()
        except RuntimeError:  # widget deleted
            pass

    def refresh_models(self) -> None:
        """List the click-guided models of the models folder (and the one chosen in Infer)."""
        from napari_medseg.ui._models import list_models, read_model_entry
        from napari_medseg.ui._settings import get_setting

        guidance_of = _guidance_of
        current = self.model_combo.currentData()
        entries = [e for e in list_models() if e.card is not None and guidance_of(e.card)]
        infer_choice = get_setting("infer/model", "")
        if infer_choice and Path(infer_choice).is_dir() and \
                all(str(e.path) != infer_choice for e in entries):
            entry = read_model_entry(infer_choice)
            if entry.card is not None and guidance_of(entry.card):
                entries.insert(0, entry)
        for path in list(self._extra_paths()):
            if all(str(e.path) != path for e in entries):
                entry = read_model_entry(path)
                if entry.card is not None:
                    entries.append(entry)
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        self.model_combo.addItem(TRAINING_FREE_TEXT, TRAINING_FREE)
        for e in entries:
            self.model_combo.addItem(f"{e.name} (click-guided, {e.card.dims}D)", str(e.path))
        index = self.model_combo.findData(current) if current else -1
        if index < 0 and infer_choice:
            index = self.model_combo.findData(infer_choice)
        self.model_combo.setCurrentIndex(max(index, 0))
        self.model_combo.blockSignals(False)
        self._update_status()

    def _extra_paths(self) -> list[str]:
        return list(getattr(self, "_extra", []))

    def use_model(self, path: str | Path) -> None:
        """Use the model folder ``path`` for clicks when its card has click guidance.

        Raises
        ------
        ValueError
            When the folder holds no readable model or one without guidance channels.
        """
        from napari_medseg.ui._models import read_model_entry

        guidance_of = _guidance_of
        entry = read_model_entry(path)
        if entry.card is None:
            raise ValueError(entry.error or f"{path} holds no model")
        if not guidance_of(entry.card):
            raise ValueError(f"The model '{entry.name}' has no click guidance channels; clicks "
                             "keep using the training-free method.")
        self._extra = [*self._extra_paths(), str(entry.path)]
        self.refresh_models()
        self.model_combo.setCurrentIndex(self.model_combo.findData(str(entry.path)))

    @catch_errors("Click model")
    def _on_browse_model(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Click-guided model folder")
        if folder:
            self.use_model(folder)

    def model_path(self) -> str | None:
        """The chosen click-guided model folder, None for the training-free method."""
        return self.model_combo.currentData() or None

    def method_text(self) -> str:
        """What the clicks use now, in the status line's words."""
        path = self.model_path()
        if path is None:
            return "No click-guided model: clicks grow with the random walker."
        return f"Clicks use the click-guided model '{Path(path).name}'."

    def _update_status(self, *_: Any) -> None:
        self.model_label.setText(self.method_text())

    def _load_model(self, path: str | None) -> tuple[Any, Any]:
        """(model, card) for ``path`` (cached; runs in the worker), (None, None) without."""
        if path is None:
            return None, None
        if path not in self._models:
            from napari_medseg.inference import load_model, resolve_device
            from napari_medseg.ui._settings import get_setting

            device = resolve_device(get_setting("device", "auto"))
            self._models[path] = (*load_model(path, device=device), device)
        model, card, _device = self._models[path]
        return model, card

    # ------------------------------------------------------------------ clicks layer
    def _image(self) -> Any:
        return self.dock.image_combo.require("image")

    def _labels(self) -> Any:
        return self.dock.labels_combo.require("Labels layer")

    def _layer_alive(self, layer: Any) -> bool:
        return layer is not None and any(same_layer(layer, ly) for ly in self.viewer.layers)

    @catch_errors("Start clicking")
    def _on_start_clicks(self) -> Any:
        return self.start_clicks()

    def start_clicks(self) -> Any:
        """Create (or reuse) the 'clicks' Points layer on the image and select add mode."""
        import pandas as pd

        image = self._image()
        self._labels()  # a target is needed before clicking
        layer = self.clicks_layer
        if not self._layer_alive(layer) or layer.ndim != len(spatial_shape(image)) or \
                medseg_metadata(layer).get("image_key") != layer_key(image):
            ndim = len(spatial_shape(image))
            features = pd.DataFrame({"positive": pd.Series([], dtype=bool),
                                     "label": pd.Series([], dtype=int)})
            size = max(3.0, min(spatial_shape(image)[-2:]) / 40.0)  # voxels
            layer = self.viewer.add_points(
                np.empty((0, ndim)), ndim=ndim, name="clicks", features=features,
                face_color="positive", face_color_cycle=CLICK_COLOURS, border_color="white",
                border_width=0.1, size=size,
                metadata={"medseg": {"role": "prompts", "image_key": layer_key(image)}},
                **layer_transform_kwargs(image))
            layer.mouse_drag_callbacks.insert(0, self._on_press)
            layer.events.data.connect(self._on_points_changed)
            # the clicks layer is active while clicking: its Ctrl+Z undoes the labels' last
            # step (and forgets the last click), as on the Labels layer itself
            from napari.utils.key_bindings import KeyCode, KeyMod

            layer.bind_key(KeyMod.CtrlCmd | KeyCode.KeyZ, self._undo_click, overwrite=True)
            layer.bind_key(KeyMod.CtrlCmd | KeyMod.Shift | KeyCode.KeyZ, self._redo_click,
                           overwrite=True)
            self.clicks_layer = layer
        self._update_defaults()
        self.reach_spin.setSuffix(f" {length_unit(image)}")
        self.viewer.layers.selection.active = layer
        layer.mode = "add"
        self.status.setText("Click on the image (Shift+click removes).")
        return layer

    def _update_defaults(self) -> None:
        """New points take the current polarity and class."""
        layer = self.clicks_layer
        if not self._layer_alive(layer):
            return
        try:
            layer.feature_defaults = {"positive": not self.negative_check.isChecked(),
                                      "label": int(self.dock.selected_class())}
        except RuntimeError:
            pass

    def _on_press(self, layer: Any, event: Any) -> None:
        """Before napari adds the point: its polarity (Shift) and, in 3D, the ray."""
        shift = "Shift" in {str(getattr(m, "name", m)) for m in (event.modifiers or [])}
        negative = shift or self.negative_check.isChecked()
        self._press = {"position": tuple(event.position),
                       "view_direction": getattr(event, "view_direction", None),
                       "dims_displayed": list(getattr(event, "dims_displayed", []) or []),
                       "positive": not negative}
        layer.feature_defaults = {"positive": not negative,
                                  "label": int(self.dock.selected_class())}

    def clicks(self, label: int | None = None) -> list[tuple[tuple[float, ...], bool]]:
        """Clicks of class ``label`` (default: the selected class): ``(voxel, positive)``."""
        layer = self.clicks_layer
        if not self._layer_alive(layer) or not len(layer.data):
            return []
        label = int(self.dock.selected_class()) if label is None else int(label)
        feats = layer.features
        out = []
        for coord, positive, value in zip(np.asarray(layer.data), feats["positive"],
                                          feats["label"], strict=True):
            if int(value) == label:
                out.append((tuple(float(c) for c in coord), bool(positive)))
        return out

    def _undo_click(self, layer: Any = None) -> None:
        """Ctrl+Z on the clicks layer: undo the labels' last step and drop the last click."""
        labels = self.dock.labels_combo.layer()
        if labels is None:
            return
        self.generation += 1  # a result still computing would redo what was undone
        labels.undo()
        points = self.clicks_layer
        if self._layer_alive(points) and len(points.data):
            points.remove([len(points.data) - 1])
        self.status.setText("Undone (the last click was removed).")

    def _redo_click(self, layer: Any = None) -> None:
        """Ctrl+Shift+Z on the clicks layer: redo the labels' last undone step."""
        labels = self.dock.labels_combo.layer()
        if labels is not None:
            labels.redo()

    def _on_points_changed(self, event: Any) -> None:
        action = str(getattr(event, "action", ""))
        if not action.lower().endswith("added") or \
                not same_layer(getattr(event, "source", None), self.clicks_layer):
            return
        try:
            if self.viewer.dims.ndisplay == 3 and self._press.get("view_direction") is not None:
                self._place_in_depth()
            self.request_refine()
        except Exception as exc:  # noqa: BLE001 - a notification, never a traceback
            self.status.setText(f"⚠ {show_error_message(exc, 'Click')}")

    def _place_in_depth(self) -> None:
        """Move the last point (3D view) to where its ray meets the object."""
        image, labels = self._image(), self._labels()
        press = self._press
        start, end = image.get_ray_intersections(press["position"], press["view_direction"],
                                                 press["dims_displayed"], world=True)
        if start is None or end is None:
            return
        n = int(np.ceil(np.linalg.norm(np.asarray(end) - np.asarray(start)))) * 2 + 2
        samples = np.linspace(start, end, n)
        shape = spatial_shape(image)
        idx = np.clip(np.round(samples).astype(int), 0, np.asarray(shape) - 1)
        where = tuple(idx.T)
        data = np.asarray(image.data[where], float)
        intensities = data[..., :3].mean(-1) if is_rgb_layer(image) else data
        values = np.asarray(labels.data)[where]
        point = depth_along_ray(samples, intensities, values, int(self.dock.selected_class()),
                                bool(press["positive"]))
        layer = self.clicks_layer
        data_pts = np.asarray(layer.data).copy()
        data_pts[-1] = point
        with layer.events.data.blocker():
            layer.data = data_pts

    @catch_errors("Clear clicks")
    def _on_clear_clicks(self) -> None:
        layer = self.clicks_layer
        if self._layer_alive(layer):
            with layer.events.data.blocker():
                layer.data = np.empty((0, layer.ndim))
        self.generation += 1  # a result still computing is dropped
        self.status.setText("Clicks cleared.")

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

        self.status.setText("Working …")
        worker = run_in_worker(job, on_returned=returned, action=action,
                               on_finished=self._job_finished)
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

    def request_refine(self) -> int:
        """Update the selected class from its clicks (in a worker); the request's generation."""
        return self._submit(self._start_refine)

    def _start_refine(self) -> Any:
        image, labels = self._image(), self._labels()
        label = int(self.dock.selected_class())
        clicks = self.clicks(label)
        if not clicks:
            raise ValueError("click on the image first")
        volume = volume_from_layer(image)
        data = labels.data
        path = self.model_path()
        refine = self.refine
        reach = float(self.reach_spin.value())
        if refine is None:
            from napari_medseg.interactive import refine_with_clicks as refine

        def work() -> Any:
            model, card = self._load_model(path)
            device = self._models[path][2] if path is not None else "cpu"
            snapshot = np.array(data, copy=True)
            return refine(model, card, volume, snapshot, label, clicks, crop_margin_mm=reach,
                          device=device)

        n_clicks = len(clicks)

        def describe(n: int, seconds: float) -> str:
            how = "model" if path else "training-free"
            return (f"Click {n_clicks} ({how}): {n} voxels of class {label} changed, "
                    f"{seconds * 1000:.0f} ms (Ctrl+Z undoes it).")

        return self._run(work, describe, "Click")

    # ------------------------------------------------------------------ box
    @catch_errors("Draw a box")
    def _on_start_box(self) -> Any:
        return self.start_box()

    def start_box(self) -> Any:
        """Create (or reuse) the 'box' Shapes layer on the image, in rectangle mode."""
        image = self._image()
        self._labels()  # a target is needed before drawing
        ndim = len(spatial_shape(image))
        layer = self.box_layer
        if not self._layer_alive(layer) or layer.ndim != ndim or \
                medseg_metadata(layer).get("image_key") != layer_key(image):
            layer = self.viewer.add_shapes(
                ndim=ndim, name="box", edge_color=BOX_COLOUR, face_color="transparent",
                edge_width=max(1.0, min(spatial_shape(image)[-2:]) / 200.0),
                metadata={"medseg": {"role": "prompts", "image_key": layer_key(image)}},
                **layer_transform_kwargs(image))
            layer.events.data.connect(self._on_box_drawn)
            self.box_layer = layer
        self.viewer.layers.selection.active = layer
        layer.mode = "add_rectangle"
        self.status.setText("Drag a box around one object: it becomes the selected class.")
        return layer

    def _on_box_drawn(self, event: Any) -> None:
        action = str(getattr(event, "action", ""))
        if not action.lower().endswith("added") or not self._layer_alive(self.box_layer) \
                or not len(self.box_layer.data):
            return
        try:
            corners = np.asarray(self.box_layer.data[-1], float)
            self.request_box(corners.min(0), corners.max(0))
        except Exception as exc:  # noqa: BLE001 - a notification, never a traceback
            self.status.setText(f"⚠ {show_error_message(exc, 'Box')}")

    def request_box(self, low: Sequence[float], high: Sequence[float]) -> int:
        """Segment the object in the box from ``low`` to ``high`` (voxel indices of the image,
        array order) into the selected class, in a worker; the request's generation."""
        corners = (tuple(float(v) for v in low), tuple(float(v) for v in high))
        return self._submit(lambda: self._start_box(corners))

    def _start_box(self, corners: tuple[tuple[float, ...], tuple[float, ...]]) -> Any:
        from napari_medseg.interactive import refine_with_box

        image, labels = self._image(), self._labels()
        label = int(self.dock.selected_class())
        volume = volume_from_layer(image)
        data = labels.data
        path = self.model_path()

        def work() -> Any:
            model, card = self._load_model(path)
            device = self._models[path][2] if path is not None else "cpu"
            return refine_with_box(model, card, volume, np.array(data, copy=True), label,
                                   corners, device=device)

        def describe(n: int, seconds: float) -> str:
            how = "model" if path else "training-free"
            return (f"Box ({how}): {n} voxels of class {label} changed, "
                    f"{seconds * 1000:.0f} ms (Ctrl+Z undoes it).")

        return self._run(work, describe, "Box")

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
            return (f"Grow from seeds: {n} voxels changed in {seconds:.1f} s "
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
