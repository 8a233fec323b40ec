"""Train dock: fine-tune or train a U-Net on open (image, labels) pairs or a dataset folder.

The form collects the data and a few choices, then hands a copy of the voxels to
:func:`napari_medseg.training.train` running in a child process (:mod:`napari_medseg.jobs`), so
the viewer stays responsive, GPU memory is freed when training ends and a crash cannot take
napari (or the user's labels) down. Progress arrives as events: a napari progress bar, a live
loss / validation-Dice plot and a status line. The finished model is saved in the models folder
and appears in the Infer dock.

This module is the dock itself: it stacks the sections and runs the job. The sections live in
:mod:`~napari_medseg.ui.train_data` (training data, channels), :mod:`~napari_medseg.ui.train_model`
(name, start from, network, models folder), :mod:`~napari_medseg.ui.train_options` (time budget,
epochs, device: magicgui widgets) and :mod:`~napari_medseg.ui.train_progress` (status, curves).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QGroupBox, QHBoxLayout, QVBoxLayout, QWidget

from napari_medseg.events import Event
from napari_medseg.jobs import ProcessJob
from napari_medseg.ui._controls import Dock, button, scrollable_layout
from napari_medseg.ui._models import model_events, models_folder, unique_model_dir
from napari_medseg.ui._notify import catch_errors
from napari_medseg.ui._runner import JobRunner
from napari_medseg.ui.train_data import DataSection, find_training_pairs
from napari_medseg.ui.train_model import ElidedLabel, ModelSection
from napari_medseg.ui.train_options import DEVICES, TrainOptions, device_description
from napari_medseg.ui.train_progress import TrainProgress, outcome

logger = logging.getLogger("napari_medseg")

__all__ = ["DEVICES", "ElidedLabel", "TrainWidget", "device_description", "find_training_pairs"]


class TrainWidget(Dock):
    """Train or fine-tune a segmentation model from the viewer.

    Attributes
    ----------
    config_overrides : dict
        Extra :class:`~napari_medseg.training.config.TrainConfig` fields (advanced use, tests:
        e.g. a tiny network).
    last_result : object
        The last :class:`~napari_medseg.training.config.TrainResult` (or None).
    data_section, model_section, options, progress : the dock's parts; their controls are
        also attributes of the dock (``pair_list``, ``dims_combo``, ``budget_spin``,
        ``device_label``, ``status_label``, ``plot`` ...).
    """

    #: Emitted with the model folder when a training run saved a model.
    model_saved = Signal(str)

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(napari_viewer, parent)
        self.config_overrides: dict[str, Any] = {}
        self.last_result: Any = None
        self.last_event: Event | None = None
        self._out_dir: Path | None = None
        self.runner = JobRunner(self)
        self.runner.event.connect(self._on_event)
        self.runner.done.connect(self._on_done)
        self.runner.running_changed.connect(self._set_running)

        layout = scrollable_layout(self)
        self.data_section = DataSection(self.viewer)
        self.model_section = ModelSection()
        layout.addWidget(self.data_section)
        layout.addWidget(self.model_section)
        layout.addWidget(self._build_run_box())
        layout.addStretch(1)
        self._expose_controls()

        self.data_section.changed.connect(self._on_init_changed)
        self.data_section.changed.connect(self._update_start)
        self.init_combo.currentIndexChanged.connect(self._on_init_changed)
        model_events.saved.connect(self._on_any_model_saved)
        self.refresh_pairs()
        self.refresh_models()
        self.data_section.update_source()
        self._update_start()
        self.options.probe_device()

    def _build_run_box(self) -> QGroupBox:
        box = QGroupBox("Run")
        v = QVBoxLayout(box)
        self.options = TrainOptions()
        v.addWidget(self.options)
        buttons = QHBoxLayout()
        self.start_button = button("Start training", "Train with the settings above",
                                   self._on_start)
        self.cancel_button = button(
            "Cancel", "Stop training; the best model so far is kept, earlier models are "
            "untouched", self._on_cancel)
        self.cancel_button.setEnabled(False)
        buttons.addWidget(self.start_button, 2)
        buttons.addWidget(self.cancel_button, 1)
        v.addLayout(buttons)
        self.progress = TrainProgress(theme=getattr(self.viewer, "theme", None))
        v.addWidget(self.progress)
        return box

    def _expose_controls(self) -> None:
        """The sections' controls as attributes of the dock (tests and other docks use them)."""
        d, m, o, p = self.data_section, self.model_section, self.options, self.progress
        self.layers_radio, self.folder_radio = d.layers_radio, d.folder_radio
        self.pair_list, self.channels_label, self.channel_list = (
            d.pair_list, d.channels_label, d.channel_list)
        self.folder_edit, self.folder_button = d.folder_edit, d.folder_button
        self.name_edit, self.init_combo = m.name_edit, m.init_combo
        self.dims_combo, self.models_label = m.dims_combo, m.models_label
        self.budget_spin, self.epochs_spin = o.budget.native, o.epochs.native
        self.device_combo, self.device_label = o.device.native, o.device_label
        self.status_label, self.plot = p.status_label, p.plot

    # ------------------------------------------------------------------ state
    def _update_start(self, *_: Any) -> None:
        """Start waits for training data (a ticked pair or a dataset folder); says why."""
        try:
            missing = self.data_section.missing()
        except RuntimeError:  # widget already deleted
            return
        self.start_button.setEnabled(not self.runner.running and not missing)
        self.start_button.setToolTip(missing or "Train with the settings above")

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.data_section.set_running(running)
        self.model_section.set_running(running)
        self.options.set_running(running)
        if not running:
            self._on_init_changed()
            self._update_start()

    def refresh_pairs(self) -> None:
        """Rebuild the checklist of (image, labels) pairs, keeping unchecked choices."""
        self.data_section.refresh_pairs()

    def checked_pairs(self) -> list[tuple[Any, Any]]:
        """The (image, labels) pairs currently checked."""
        return self.data_section.checked_pairs()

    def refresh_models(self) -> None:
        """Refresh the 'Start from' list and the models-folder label."""
        self.model_section.refresh_models()

    def _on_init_changed(self, *_: Any) -> None:
        """Fine-tuning keeps the chosen model's network; 2D pictures need a 2D network."""
        self.model_section.sync_dims(self.data_section.pictures_2d(), self.runner.running)

    def _on_any_model_saved(self, path: str) -> None:
        try:
            self.refresh_models()
        except RuntimeError:
            pass

    # ------------------------------------------------------------------ actions
    def _collect_cases(self) -> Any:
        """Copy the checked pairs into a :class:`~napari_medseg.dataset.Dataset` (main thread)."""
        return self.data_section.collect_cases(self.name_edit.text().strip() or "napari")

    def build_config(self) -> Any:
        """The :class:`~napari_medseg.training.config.TrainConfig` the form describes."""
        from napari_medseg.training.config import TrainConfig

        values = {"dims": int(self.dims_combo.currentData()), **self.options.values()}
        values.update(self.config_overrides)
        return TrainConfig(**values)

    @catch_errors("Start training")
    def _on_start(self) -> None:
        if self.runner.running:
            return
        from napari_medseg.training import train

        config = self.build_config()
        if self.layers_radio.isChecked():
            dataset: Any = self._collect_cases()
            source = f"{len(dataset.cases)} open pair(s)"
        else:
            dataset = self.data_section.dataset_folder()
            source = Path(dataset).name
        out_dir = unique_model_dir(models_folder(), self.model_section.model_name())
        init_model = self.init_combo.currentData()
        self._remember_form()
        self._out_dir = out_dir
        self.last_result = None
        self.last_event = None
        job = ProcessJob(train, config, dataset=dataset, out_dir=str(out_dir),
                         init_model=init_model, what="Training")
        self.progress.begin(config.steps_per_epoch,
                            f"Starting training on {source} (loading PyTorch)…")
        self.runner.start(job, f"Training {out_dir.name}")

    def _remember_form(self) -> None:
        self.model_section.remember()
        self.options.remember()

    def _on_cancel(self) -> None:
        if self.runner.running:
            self.runner.cancel()
            self.status_label.setText("Cancelling… (the best model so far is kept)")
            self.cancel_button.setEnabled(False)

    def cancel_and_wait(self, timeout_s: float = 60.0) -> None:
        """Cancel a running training and block until its worker ended (for closing/tests)."""
        import time

        from qtpy.QtWidgets import QApplication

        if not self.runner.running:
            return
        self.runner.cancel()
        t0 = time.monotonic()
        while self.runner.running and time.monotonic() - t0 < timeout_s:
            QApplication.processEvents()
            time.sleep(0.02)

    # ------------------------------------------------------------------ events
    def _on_event(self, ev: Event) -> None:
        self.progress.on_event(ev)

    def _on_done(self, ev: Event) -> None:
        from napari.utils.notifications import show_error, show_info, show_warning

        self.last_event = ev
        result = self.runner.last_result
        if result is None and ev.kind != "error":
            result = ev.result
        self.last_result = result
        if ev.kind not in ("finished", "cancelled"):
            tb = ev.result.get("traceback") if isinstance(ev.result, dict) else None
            if tb:
                logger.debug("training failed in the child process:\n%s", tb)
        text, level = outcome(ev, result)
        self.status_label.setText(text)
        {"info": show_info, "warning": show_warning, "error": show_error}[level](text)
        model_dir = getattr(result, "model_dir", None)
        if model_dir is not None and Path(model_dir).is_dir():
            self.refresh_models()
            self.model_saved.emit(str(model_dir))
            model_events.saved.emit(str(model_dir))

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        if self.runner.running:
            self.runner.cancel()
        super().closeEvent(event)
