"""Infer dock: segment the current image (or a folder of NIfTI files) with a trained model.

Inference runs through :func:`napari_medseg.inference.predict` in a child process
(:mod:`napari_medseg.jobs`): the viewer stays responsive, GPU memory is returned when it ends,
and a failure becomes one notification. The result is a Labels layer named after the model,
coloured with the model's classes and placed exactly on the image (same scale, translate and
geometry metadata); optionally an uncertainty (entropy) and a foreground-probability map.

This module is the dock itself: it stacks the sections and runs the jobs. The sections live in
:mod:`~napari_medseg.ui.infer_models` (model list and card), :mod:`~napari_medseg.ui.infer_image`
(image, channels, options), :mod:`~napari_medseg.ui.infer_folder` (folder runs); the export in
:mod:`~napari_medseg.ui.infer_export`, the result layers in :mod:`~napari_medseg.ui.infer_results`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QLabel, QWidget

from napari_medseg.events import Event
from napari_medseg.jobs import ProcessJob
from napari_medseg.ui._controls import Dock, scrollable_layout
from napari_medseg.ui._layers import volume_from_layer
from napari_medseg.ui._models import ModelEntry
from napari_medseg.ui._notify import catch_errors
from napari_medseg.ui._runner import JobRunner
from napari_medseg.ui._settings import get_setting, set_setting
from napari_medseg.ui.infer_export import EXPORT_FORMATS, ask_export_target, start_export
from napari_medseg.ui.infer_folder import FOLDER_TIP, FolderSection
from napari_medseg.ui.infer_image import DEVICES, SEGMENT_TIP, TTA_TOOLTIP, ImageSection
from napari_medseg.ui.infer_models import ModelCombo, ModelSection, card_classes, check_model_fits
from napari_medseg.ui.infer_results import add_result_layers, prepare_prediction

logger = logging.getLogger("napari_medseg")

__all__ = ["CANCEL_GRACE_S", "DEVICES", "TTA_TOOLTIP", "InferWidget", "ModelCombo",
           "card_classes", "check_model_fits", "prepare_prediction"]

#: Seconds a cancelled segmentation gets to stop by itself before its process is ended.
CANCEL_GRACE_S = 1.5


def _format_eta(seconds: float) -> str:
    seconds = max(float(seconds), 0.0)
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


def folder_summary(written: list[str], skipped: list[dict[str, str]], out: Any) -> str:
    """One sentence on a folder run: how many label files were written where, and which
    inputs were skipped (with the first one's reason)."""
    text = f"Wrote {len(written)} label file(s) to {out}."
    if skipped:
        names = ", ".join(item["skipped"] for item in skipped)
        text += (f" Skipped {len(skipped)} image(s): {names} (first reason: "
                 f"{skipped[0]['reason']})")
    return text


class InferWidget(Dock):
    """Segment images with a trained model.

    Attributes
    ----------
    last_layers : list
        Layers added by the last run (labels first).
    last_event : Event or None
        Terminal event of the last run.
    last_written, last_skipped : list
        Files written by the last folder run (paths), and the inputs it skipped
        (``{"skipped": name, "reason": text}``).
    model_section, image_section, folder_section : the dock's group boxes; their controls are
        also attributes of the dock (``model_combo``, ``tta_check``, ``run_button``,
        ``input_edit`` ...).
    """

    #: Export formats offered by Export…: label -> (format name, file suffix or "" = folder).
    EXPORT_FORMATS = EXPORT_FORMATS

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(napari_viewer, parent, follow_new_images=True)
        self.last_layers: list[Any] = []
        self.last_event: Event | None = None
        self.last_written: list[str] = []
        self.last_skipped: list[dict[str, str]] = []
        self.export_worker: Any = None
        self._pending: dict[str, Any] = {}
        self.runner = JobRunner(self)
        self.runner.event.connect(self._on_event)
        self.runner.done.connect(self._on_done)
        self.runner.running_changed.connect(self._set_running)

        layout = scrollable_layout(self)
        self.model_section = ModelSection(self._choose_export, lambda: self.runner.running)
        self.image_section = ImageSection(self.viewer, self._on_run, self._on_cancel)
        self.folder_section = FolderSection(self._on_run_folder)
        for section in (self.model_section, self.image_section, self.folder_section):
            layout.addWidget(section)
        self.status_label = QLabel("Ready.")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.status = self.status_label  # errors of the buttons show here too (catch_errors)
        self.model_section.status = self.folder_section.status = self.status_label
        layout.addWidget(self.status_label)
        layout.addStretch(1)
        self._expose_controls()

        self.image_combo.currentIndexChanged.connect(lambda *_: self._update_channels())
        self.image_combo.currentIndexChanged.connect(lambda *_: self._update_run_buttons())
        for name in ("inserted", "removed"):
            getattr(self.viewer.layers.events, name).connect(lambda *_: self._update_channels())
        self.model_combo.currentIndexChanged.connect(self._show_model_info)
        last = get_setting("infer/model", "")
        self.refresh_models()
        if last and Path(last).is_dir():
            self.model_combo.select_path(last)
        self._show_model_info()

    def _expose_controls(self) -> None:
        """The sections' controls as attributes of the dock (tests and other docks use them)."""
        m, i, f = self.model_section, self.image_section, self.folder_section
        self.model_combo, self.browse_model_button = m.model_combo, m.browse_model_button
        self.export_button, self.model_info = m.export_button, m.model_info
        self.image_combo, self.channel_list, self.channels_label = (
            i.image_combo, i.channel_list, i.channels_label)
        self.device_combo, self.tta_check = i.device_combo, i.tta_check
        self.uncertainty_check, self.probability_check = i.uncertainty_check, i.probability_check
        self.run_button, self.cancel_button = i.run_button, i.cancel_button
        self.input_edit, self.output_edit = f.input_edit, f.output_edit
        self.folder_button = f.folder_button

    # ------------------------------------------------------------------ models
    def refresh_models(self) -> None:
        """Re-read the models folder into the model list."""
        self.model_section.refresh()

    def selected_model(self) -> ModelEntry | None:
        """The chosen model directory and its card (None when there is none)."""
        return self.model_section.selected_model()

    def _card(self) -> Any:
        entry = self.selected_model()
        return entry.card if entry is not None else None

    def _update_channels(self) -> None:
        """Offer the extra channels a multi-channel model needs (hidden for one-image models)."""
        try:
            self.image_section.update_channels(self._card())
        except RuntimeError:  # widget deleted
            pass

    def _show_model_info(self, *_: Any) -> None:
        entry = self.selected_model()
        card = entry.card if entry is not None else None
        self.image_section.update_channels(card)
        self.image_section.describe_tta(card)
        self.model_section.show_entry(entry)
        self._update_run_buttons()

    def _update_run_buttons(self) -> None:
        """Segment needs a model and an image; a folder run needs the model (a broken model
        stays clickable: the click says what is wrong with it)."""
        if self.runner.running:
            return
        usable = self.selected_model() is not None
        self.run_button.setEnabled(usable and self.image_combo.layer() is not None)
        self.folder_button.setEnabled(usable)
        why = "" if usable else " (choose a model first: train one, or Browse…)"
        self.run_button.setToolTip(SEGMENT_TIP + (why or (
            "" if self.image_combo.layer() is not None else " (open an image first)")))
        self.folder_button.setToolTip(FOLDER_TIP + why)

    @catch_errors("Export model")
    def _choose_export(self) -> None:
        entry = self._require_model()
        target = ask_export_target(self, entry)
        if target is not None:
            self.export_model_to(*target)

    def export_model_to(self, out: str | Path, fmt: str) -> Any:
        """Export the chosen model as ``fmt`` to ``out`` in a child process; returns the worker."""
        entry = self._require_model()
        self.export_worker = start_export(entry, out, fmt, self.status_label.setText)
        return self.export_worker

    # ------------------------------------------------------------------ runs
    def _set_running(self, running: bool) -> None:
        self.image_section.set_running(running)
        for w in (self.folder_button, self.model_combo, self.browse_model_button):
            w.setEnabled(not running)
        if not running:
            self.model_combo.setEnabled(self.model_combo.currentData() is not None)
            self._show_model_info()  # the TTA option follows the selected model again

    def _require_model(self) -> ModelEntry:
        entry = self.selected_model()
        if entry is None:
            raise ValueError("no model chosen: train one in the Train dock or Browse… for a "
                             "model folder")
        if entry.card is None:
            raise ValueError(entry.error)
        set_setting("infer/model", str(entry.path))
        self.image_section.remember_run_options()
        return entry

    @catch_errors("Segment image")
    def _on_run(self) -> None:
        if self.runner.running:
            return
        from napari.utils.notifications import show_warning

        from napari_medseg.inference import predict

        entry = self._require_model()
        image_layer = self.image_combo.require("image")
        volume = volume_from_layer(image_layer)
        extras = self.image_section.extra_layers(image_layer)
        for warning in check_model_fits(entry.card, volume, len(extras)):
            show_warning(warning)
        volume = volume.with_array(np.array(volume.array, copy=True))  # a snapshot for the child
        inputs: Any = volume
        if extras:
            inputs = [volume] + [(lambda v: v.with_array(np.array(v.array, copy=True)))(
                volume_from_layer(layer)) for layer in extras]
        want_entropy = self.uncertainty_check.isChecked()
        want_probability = self.probability_check.isChecked()
        self.image_section.remember_map_options()
        self._pending = {"kind": "image", "model": entry, "image_layer": image_layer,
                         "volume": volume, "entropy": want_entropy,
                         "probability": want_probability}
        job = ProcessJob(predict, str(entry.path), inputs, tta=self.tta_check.isChecked(),
                         device=self.device_combo.currentText(),
                         return_probabilities=want_probability, return_entropy=want_entropy,
                         what="Segmentation")
        self.last_layers = []
        self.status_label.setText(f"Segmenting '{image_layer.name}' with {entry.name}…")
        self.runner.start(job, f"Segmenting {image_layer.name}",
                          prepare=lambda r: prepare_prediction(r, want_probability, want_entropy))

    @catch_errors("Segment folder")
    def _on_run_folder(self) -> None:
        if self.runner.running:
            return
        from napari_medseg.inference import predict_folder

        entry = self._require_model()
        src, dst = self.folder_section.folders()
        self._pending = {"kind": "folder", "model": entry, "out": dst}
        job = ProcessJob(predict_folder, str(entry.path), src, dst,
                         tta=self.tta_check.isChecked(), device=self.device_combo.currentText(),
                         what="Segmentation")
        self.last_written, self.last_skipped = [], []
        self.status_label.setText(f"Segmenting the images in {src}…")
        self.runner.start(job, f"Segmenting folder {Path(src).name}")

    def _on_cancel(self) -> None:
        """Stop the segmentation: it keeps nothing, so a child that does not stop by itself
        within :data:`CANCEL_GRACE_S` is ended."""
        if self.runner.running:
            self.runner.cancel(grace_s=CANCEL_GRACE_S)
            self.status_label.setText("Cancelling…")

    def _on_event(self, ev: Event) -> None:
        """Status line and progress bar: windows done / total and the time left."""
        if ev.kind == "step" and self._pending.get("kind") == "folder" and isinstance(
                ev.result, list):
            self.last_written.extend(ev.result)  # known even when a later image fails
        if ev.kind == "step" and ev.total:
            if self._pending.get("kind") == "image":
                text = f"{ev.step}/{ev.total} windows"
            else:
                text = f"Image {ev.step}/{ev.total}"
                if ev.message:
                    text += f": {ev.message}"
            if ev.eta_s is not None and ev.step < ev.total:
                text += f" · ~{_format_eta(ev.eta_s)} left"
            self.status_label.setText(text)
            self.runner.describe(text)
        elif ev.kind == "message" and isinstance(ev.result, dict) and "skipped" in ev.result:
            self.last_skipped.append(ev.result)  # said once at the end, logged one per file
            logger.warning("Segment folder: %s", ev.message)
        elif ev.kind in ("start", "message") and ev.message:
            self.status_label.setText(ev.message)

    def _on_done(self, ev: Event) -> None:
        from napari.utils.notifications import show_error, show_info, show_warning

        self.last_event = ev
        pending, self._pending = self._pending, {}
        if ev.kind == "error":
            tb = ev.result.get("traceback") if isinstance(ev.result, dict) else None
            if tb:
                logger.debug("inference failed in the child process:\n%s", tb)
            text = ev.message
            if pending.get("kind") == "folder" and self.last_written:
                text += (f" ({len(self.last_written)} label file(s) had been written to "
                         f"{pending.get('out')}.)")
            self.status_label.setText(text)
            show_error(text)
            return
        if ev.kind == "cancelled":
            text = "Segmentation cancelled."
            if pending.get("kind") == "folder" and self.last_written:
                text += (f" {len(self.last_written)} label file(s) had been written to "
                         f"{pending.get('out')}.")
            self.status_label.setText(text)
            return
        result = self.runner.last_result
        if result is None:
            result = ev.result
        try:
            if pending.get("kind") == "image":
                self._add_result_layers(result, pending)
            else:
                self.last_written = [str(p) for p in (result or [])]
                text = folder_summary(self.last_written, self.last_skipped, pending.get("out"))
                self.status_label.setText(text)
                (show_warning if self.last_skipped else show_info)(text)
        except Exception as exc:  # noqa: BLE001 - one notification, never a traceback wall
            from napari_medseg.ui._notify import show_error_message

            show_error_message(exc, "Show segmentation")

    def _add_result_layers(self, result: Any, pending: dict[str, Any]) -> None:
        """Add the labels now and each optional map on a later event-loop turn
        (:func:`~napari_medseg.ui.infer_results.add_result_layers`) into ``last_layers``."""
        self.last_layers = []
        add_result_layers(self.viewer, result, pending, self.runner.last_prepared,
                          self.last_layers, self.status_label.setText)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        if self.runner.running:
            self.runner.cancel()
        super().closeEvent(event)
