"""Project dock: the correct-and-retrain loop (cases, accept, retrain, versions, what next).

A form over :class:`~napari_medseg.dataset.project.Project` and :func:`napari_medseg.cycle.retrain`:

* **Project**: create / open a project folder (MSD layout, usable by ``napari-medseg train``).
* **Current case**: predict the current image with the current model, correct the labels with the
  other tools, **Accept** (image + labels, sparse slice marks from the Annotate tab included).
  The labels being edited are autosaved to the project (debounced after each change, and every
  minute) with atomic writes; opening the image again restores them.
* **Model**: **Retrain** fine-tunes the current model on every accepted case in a child process
  (the viewer stays responsive; a crash or out-of-memory cannot take napari down); the version
  table shows the metrics of each version and lets the user switch back.
* **What next**: **Next case** opens the pool image the model is least sure about, **Next slices**
  jumps to the most uncertain slices of the current image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QFont
from qtpy.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_medseg.dataset.project import Project
from napari_medseg.events import Event
from napari_medseg.ui._controls import (
    LayerCombo,
    belongs_to,
    button,
    double_spin,
    hint,
    image_for,
    keep_new_images_in_view,
    run_in_worker,
)
from napari_medseg.ui._layers import (
    add_labels_for_image,
    add_volume_as_image,
    image_layers,
    labels_layers,
    layer_classes,
    medseg_metadata,
    update_medseg_metadata,
    volume_from_layer,
)
from napari_medseg.ui._notify import catch_errors, show_error_message
from napari_medseg.ui._settings import get_setting, last_folder, remember_folder, set_setting

VERSION_COLUMNS = ("Version", "Dice", "Dice new", "Cases", "Slices")
VERSION_TIPS = (
    "Model version (bold = in use)",
    "Mean Dice on validation cases, when the project has any",
    "Mean Dice of this version on the cases accepted after it was trained: cases it never saw, "
    "measured when the next version is trained",
    "Accepted cases it was trained on",
    "Annotated slices in those cases (the annotation effort)",
)
#: Milliseconds of quiet after a labels change before it is autosaved.
AUTOSAVE_DELAY_MS = 1500
#: Autosave anything unsaved at least this often (ms).
AUTOSAVE_PERIOD_MS = 60_000


def _fmt(value: Any, digits: int = 3) -> str:
    return "—" if value is None else f"{float(value):.{digits}f}"


#: Files the "Add images to pool" dialog offers: volumes and 2D pictures.
POOL_FILE_FILTER = ("Images (*.nii *.nii.gz *.png *.jpg *.jpeg *.tif *.tiff *.bmp);;"
                    "NIfTI (*.nii *.nii.gz);;All files (*)")


class ProjectWidget(QWidget):
    """Dock widget driving the annotate -> accept -> retrain -> predict loop.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        keep_new_images_in_view(napari_viewer)
        self.project: Project | None = None
        #: Worker of the running background task (tests wait on it).
        self.worker: Any = None
        #: Background tasks started and not finished yet (tests wait for 0).
        self.pending = 0
        self.retrain_worker: Any = None
        self._job: Any = None
        self._progress: Any = None
        self._watched: Any = None
        self._dirty = False
        self._eta0: float | None = None
        #: Extra :class:`~napari_medseg.training.TrainConfig` fields for Retrain (advanced
        #: users, tests), e.g. ``{"dims": 2}``.
        self.train_overrides: dict[str, Any] = {}
        self._entropy: dict[tuple[str, str | None], np.ndarray] = {}
        self.last_ranking: list[tuple[str, float]] = []
        self.last_slices: list[int] = []
        self.setMinimumWidth(390)  # room for the version table's columns
        layout = QVBoxLayout(self)

        # --- project -------------------------------------------------------------------
        box = QGroupBox("Project")
        col = QVBoxLayout(box)
        row = QHBoxLayout()
        row.addWidget(button("New project…", "Create a project folder (MSD layout) for the "
                             "cases and models of one task", self._on_new))
        row.addWidget(button("Open project…", "Open an existing project folder", self._on_open))
        col.addLayout(row)
        self.project_label = hint("No project open.")
        col.addWidget(self.project_label)
        layout.addWidget(box)

        # --- current case --------------------------------------------------------------
        box = QGroupBox("Current case")
        form = QFormLayout(box)
        self.image_combo = LayerCombo(self.viewer, image_layers, "(no image open)")
        self.image_combo.setToolTip("The image of the case")
        form.addRow("Image", self.image_combo)
        self.labels_combo = LayerCombo(self.viewer, labels_layers, "(no labels)",
                                       follow_new=True)
        self.labels_combo.setToolTip("Its (corrected) labels: what Accept stores and what is "
                                     "autosaved to the project")
        self.labels_combo.currentIndexChanged.connect(self._watch_current_labels)
        form.addRow("Labels", self.labels_combo)
        row = QHBoxLayout()
        self.predict_button = button("Predict", "Segment the image with the project's current "
                                     "model; correct the result, then Accept", self.predict_current)
        self.accept_button = button("Accept case", "Store the image and its labels in the "
                                    "project as a training case (only the slices marked as "
                                    "annotated count when there are marks)", self.accept_current)
        row.addWidget(self.predict_button)
        row.addWidget(self.accept_button)
        form.addRow(row)
        self.add_pool_button = button(
            "Add images to pool…", "Add unlabelled images (NIfTI volumes, PNG/JPEG/TIFF "
            "pictures) for 'Next case' to choose from", self._on_add_images)
        form.addRow(self.add_pool_button)
        self.case_label = hint("")
        form.addRow(self.case_label)
        layout.addWidget(box)

        # --- model ---------------------------------------------------------------------
        box = QGroupBox("Model")
        col = QVBoxLayout(box)
        form = QFormLayout()
        self.budget = double_spin(get_setting("project/budget_s", 120.0), 5.0, 86400.0,
                                  "Wall-clock time for one retraining; short keeps the loop "
                                  "quick", suffix=" s", decimals=0)
        form.addRow("Time budget", self.budget)
        col.addLayout(form)
        row = QHBoxLayout()
        self.retrain_button = button("Retrain", "Fine-tune the current model on all accepted "
                                     "cases (a new model if there is none); runs in the "
                                     "background", lambda *_: self.retrain())
        self.cancel_button = button("Cancel", "Stop retraining; the current model stays",
                                    self.cancel_retrain)
        self.cancel_button.setEnabled(False)
        row.addWidget(self.retrain_button)
        row.addWidget(self.cancel_button)
        col.addLayout(row)
        self.train_label = hint("")
        col.addWidget(self.train_label)
        self.version_table = QTableWidget(0, len(VERSION_COLUMNS))
        self.version_table.setHorizontalHeaderLabels(VERSION_COLUMNS)
        for c, tip in enumerate(VERSION_TIPS):
            self.version_table.horizontalHeaderItem(c).setToolTip(tip)
        self.version_table.verticalHeader().setVisible(False)
        self.version_table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.version_table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.version_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        header = self.version_table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeToContents)
        header.setStretchLastSection(True)
        self.version_table.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.version_table.setToolTip(
            "Model versions. Dice: on validation cases (when there are any). Dice new cases: "
            "the version's Dice on the cases accepted after it was trained (cases it never "
            "saw). Bold = in use.")
        self.version_table.setMinimumHeight(90)
        self.version_table.setMaximumHeight(160)
        col.addWidget(self.version_table)
        self.use_version_button = button("Use selected version", "Predict and retrain from "
                                         "the selected version from now on",
                                         self.use_selected_version)
        col.addWidget(self.use_version_button)
        layout.addWidget(box)

        # --- what next -----------------------------------------------------------------
        box = QGroupBox("What next")
        col = QVBoxLayout(box)
        row = QHBoxLayout()
        self.next_case_button = button("Next case", "Open the pool image the current model "
                                       "is least sure about (mean entropy)", self.next_case)
        self.next_slices_button = button("Next slices", "Jump to the slices of the current "
                                         "image the model is least sure about",
                                         self.next_slices)
        row.addWidget(self.next_case_button)
        row.addWidget(self.next_slices_button)
        col.addLayout(row)
        self.next_label = hint("")
        col.addWidget(self.next_label)
        layout.addWidget(box)
        layout.addStretch(1)

        # --- autosave ------------------------------------------------------------------
        self._autosave_timer = QTimer(self)
        self._autosave_timer.setSingleShot(True)
        self._autosave_timer.setInterval(AUTOSAVE_DELAY_MS)
        self._autosave_timer.timeout.connect(self.autosave_now)
        self._periodic = QTimer(self)
        self._periodic.setInterval(AUTOSAVE_PERIOD_MS)
        self._periodic.timeout.connect(self.autosave_now)
        self._periodic.start()
        self.labels_combo.pair_with(self.image_combo)  # labels of the chosen image only
        self.viewer.layers.events.inserted.connect(self._on_layer_inserted)
        self._update_enabled()

    def _run(self, work: Any, done: Any, action: str, **kwargs: Any) -> Any:
        """Start ``work`` in a thread worker; ``done(result)`` on the main thread."""
        self.pending += 1

        def finished() -> None:
            self.pending -= 1

        return run_in_worker(work, on_returned=done, action=action, on_finished=finished,
                             **kwargs)

    # ================================================================== project
    @catch_errors("New project")
    def _on_new(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "New project: choose an empty folder",
                                                  last_folder("project"))
        if not folder:
            return
        name, ok = QInputDialog.getText(self, "Project name", "Name of the task:",
                                        text=Path(folder).name)
        if ok:
            self.create_project(folder, name or Path(folder).name)

    @catch_errors("Open project")
    def _on_open(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open project folder",
                                                  last_folder("project"))
        if folder:
            self.open_project(folder)

    def create_project(self, folder: str | Path, name: str | None = None,
                       classes: dict | None = None, modality: str | None = None) -> Project:
        """Create a project; classes default to the current labels' class table."""
        labels = self.labels_combo.layer()
        if classes is None:
            classes = (layer_classes(labels) if labels is not None else {}) or {1: "label 1"}
        if modality is None:
            modality = "MR"
            image = self.image_combo.layer()
            if image is not None:
                volume = volume_from_layer(image)
                found = volume.modality
                # a photograph or other 2D picture says nothing of MR: keep "unknown"
                modality = found if found != "unknown" or volume.ndim == 2 else modality
        project = Project.create(folder, name or Path(folder).name, classes, modality)
        self._set_project(project)
        return project

    def open_project(self, folder: str | Path) -> Project:
        """Open a project and restore autosaved labels of images already open."""
        project = Project.open(folder)
        self._set_project(project)
        for layer in image_layers(self.viewer):
            self.restore_labels(layer)
        return project

    def _set_project(self, project: Project) -> None:
        self.project = project
        self._entropy.clear()
        remember_folder(project.root.parent, "project")
        self.refresh()

    def refresh(self) -> None:
        """Update the labels and the version table from the project."""
        p = self.project
        current = str(p.model_dir()) if p is not None and p.model_dir() is not None else ""
        if current and current != getattr(self, "_announced_model", ""):
            from napari_medseg.ui._models import model_events

            self._announced_model = current
            model_events.current.emit(current)  # Annotate's clicks use it if it has guidance
        if p is None:
            self.project_label.setText("No project open.")
        else:
            classes = ", ".join(c["name"] for c in p.classes.values())
            modality = "" if p.modality == "unknown" else f"{p.modality}: "
            self.project_label.setText(
                f"<b>{p.name}</b> ({modality}{classes})<br>folder <i>{p.root.name}</i><br>"
                f"{len(p.accepted_ids())} accepted case(s), {p.annotation_cost()} annotated "
                f"slices<br>{len(p.unlabelled_ids())} image(s) in the pool; model "
                f"<b>{p.current_model or 'none yet'}</b>")
            self.project_label.setToolTip(str(p.root))
        self._fill_versions()
        self._update_enabled()

    def _fill_versions(self) -> None:
        table = self.version_table
        models = self.project.models() if self.project else []
        current = self.project.current_model if self.project else None
        table.setRowCount(len(models))
        for r, m in enumerate(reversed(models)):
            metrics = m.get("metrics") or {}
            values = (m["version"], _fmt(metrics.get("dice_mean")),
                      _fmt(metrics.get("new_cases/dice_mean")),
                      str(len(m.get("training_cases") or [])), str(m.get("annotation_cost", "")))
            created = str(m.get("created", ""))[:16].replace("T", " ")
            tip = "\n".join([f"{m['version']}: fine-tuned from {m.get('parent') or 'nothing (new)'}",
                             f"created {created}"]
                            + ([f"note: {m['note']}"] if m.get("note") else [])
                            + [f"{k}: {v:.4g}" for k, v in sorted(metrics.items())])
            for c, text in enumerate(values):
                item = QTableWidgetItem(text)
                if m["version"] == current:
                    font = QFont()
                    font.setBold(True)
                    item.setFont(font)
                item.setToolTip(tip)
                table.setItem(r, c, item)

    def _update_enabled(self) -> None:
        has = self.project is not None
        busy = self.retrain_worker is not None
        has_model = has and self.project.current_model is not None
        self.accept_button.setEnabled(has)
        self.retrain_button.setEnabled(has and not busy)
        self.cancel_button.setEnabled(busy)
        self.predict_button.setEnabled(has_model)
        self.next_case_button.setEnabled(has)
        self.next_slices_button.setEnabled(has_model)
        self.add_pool_button.setEnabled(has)
        self.use_version_button.setEnabled(has and not busy and bool(self.project.models()))

    def _require_project(self) -> Project:
        if self.project is None:
            raise ValueError("create or open a project first")
        return self.project

    # ================================================================== case
    def _image(self) -> Any:
        layer = self.image_combo.layer()
        if layer is None:
            raise ValueError("open an image first")
        return layer

    def _labels(self) -> Any:
        layer = self.labels_combo.layer()
        if layer is None:
            raise ValueError("no labels layer: predict, or create labels in the Annotate tab")
        return layer

    @staticmethod
    def _marks(layer: Any) -> list[int] | None:
        marks = medseg_metadata(layer).get("annotated_slices")
        return [int(m) for m in marks] if marks else None

    @staticmethod
    def _marks_axis(layer: Any) -> int:
        """Array axis the slice marks of a Labels layer run along (the Annotate dock marks
        along axis 0; a case restored from a project keeps the project's axis)."""
        return int(medseg_metadata(layer).get("annotated_axis", 0))

    @catch_errors("Accept case")
    def accept_current(self) -> str:
        """Store the current image + labels (+ slice marks) as a training case; returns its id."""
        project = self._require_project()
        image_layer, labels_layer = self._image(), self._labels()
        volume = volume_from_layer(image_layer)
        labels = np.asarray(labels_layer.data)
        marks = self._marks(labels_layer)
        cid = project.accept_case(volume, labels, marks, case_id=self._case_id_hint(image_layer),
                                  slice_axis=self._marks_axis(labels_layer) if marks else None)
        self._dirty = False
        self._case_meta(image_layer, cid)
        what = f"{len(marks)} annotated slice(s)" if marks else "all slices"
        self.case_label.setText(f"Accepted case <b>{cid}</b> ({what}).")
        self.refresh()
        return cid

    @staticmethod
    def _case_id_hint(layer: Any) -> str | None:
        return medseg_metadata(layer).get("project_case")

    @staticmethod
    def _case_meta(layer: Any, case_id: str) -> None:
        update_medseg_metadata(layer, project_case=case_id)

    @catch_errors("Add images")
    def _on_add_images(self) -> None:
        self._require_project()
        files, _ = QFileDialog.getOpenFileNames(self, "Add images to the pool",
                                                last_folder("open"), POOL_FILE_FILTER)
        if files:
            self.add_images(files)
            remember_folder(files[0], "open")

    def add_images(self, paths: list[str | Path]) -> Any:
        """Add image files to the project's pool (read in the background); returns the worker."""
        project = self._require_project()

        def work() -> list[str]:
            return [project.add_unlabelled(p) for p in paths]

        def done(ids: list[str]) -> None:
            self.case_label.setText(f"Added {len(ids)} image(s) to the pool.")
            self.refresh()

        self.worker = self._run(work, done, "Add images")
        return self.worker

    @catch_errors("Predict")
    def predict_current(self) -> Any:
        """Segment the current image with the current model into a new Labels layer."""
        project = self._require_project()
        image_layer = self._image()
        model_dir, version = project.model_dir(), project.current_model
        if model_dir is None:
            raise ValueError("the project has no model yet: accept a case and retrain")
        volume = volume_from_layer(image_layer)

        def work() -> Any:
            from napari_medseg.inference.predict import predict

            return self._in_child_process(predict, str(model_dir), volume, what="Prediction",
                                          return_probabilities=False, return_entropy=True)

        def done(result: Any) -> None:
            self._entropy[(image_layer.name, version)] = result.entropy
            layer = add_labels_for_image(self.viewer, image_layer, result.labels.copy(),
                                         name=f"{image_layer.name} {version}",
                                         classes=project.classes)
            self.labels_combo.set_layer(layer)
            self.case_label.setText(f"Predicted with {version} in {result.elapsed_s:.1f} s: "
                                    "correct it, then Accept.")

        self.case_label.setText(f"Predicting with {version} …")
        self.worker = self._run(work, done, "Predict")
        return self.worker

    def _in_child_process(self, fn: Any, *args: Any, what: str, **kwargs: Any) -> Any:
        """Run a core job in a child process (:class:`~napari_medseg.jobs.ProcessJob`, as every
        model of every dock runs: no CUDA context in the viewer) and wait for its result; call
        from a worker thread. An error event becomes a ``ValueError`` with its message."""
        from napari_medseg.jobs import ProcessJob

        job = ProcessJob(fn, *args, what=what, cancel_grace_s=2.0, **kwargs)
        last = None
        for event in job.events():
            last = event
        if last is not None and last.kind == "error":
            raise ValueError(last.message)
        return job.result

    # ================================================================== retrain
    def _process_runner(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run the training call in a child process (see napari_medseg.jobs)."""
        from napari_medseg.jobs import ProcessJob

        kwargs.pop("should_stop", None)  # the job supplies its own cancel flag
        self._job = ProcessJob(fn, *args, what="Retraining", **kwargs)
        return self._job.events()

    @catch_errors("Retrain")
    def retrain(self, config: Any = None, in_process: bool = True) -> Any:
        """Start retraining in the background; returns the worker.

        Parameters
        ----------
        config : TrainConfig, optional
            Full training options (default: the time budget of the form).
        in_process : bool
            Run the training in a child process (default) rather than in this one.
        """
        from napari.qt.threading import create_worker

        from napari_medseg.cycle import retrain as core_retrain

        project = self._require_project()
        if self.retrain_worker is not None:
            raise ValueError("a retraining is already running")
        if not project.accepted_ids():
            raise ValueError("accept at least one case first")
        self.autosave_now()
        budget = float(self.budget.value())
        set_setting("project/budget_s", budget)
        runner = self._process_runner if in_process else None
        if config is None and self.train_overrides:
            from napari_medseg.cycle import default_retrain_config

            config = default_retrain_config(project, budget, **self.train_overrides)

        def body() -> Any:
            return (yield from core_retrain(project, time_budget_s=budget, config=config,
                                            runner=runner))

        worker = create_worker(body, _start_thread=False, _ignore_errors=True)
        worker.yielded.connect(self._on_retrain_event)
        worker.returned.connect(self._on_retrain_done)
        worker.errored.connect(lambda exc: show_error_message(exc, "Retrain"))
        worker.finished.connect(self._on_retrain_finished)
        self.retrain_worker = worker
        from napari.utils import progress

        self._progress = progress(total=100, desc="Retraining")
        self.train_label.setText("Retraining …")
        self._update_enabled()
        worker.start()
        return worker

    def cancel_retrain(self) -> None:
        """Ask the running retraining to stop (the current model is kept)."""
        if self._job is not None:
            self._job.cancel()
        if self.retrain_worker is not None:
            self.train_label.setText("Cancelling …")

    def _on_retrain_event(self, ev: Event) -> None:
        if not isinstance(ev, Event):
            return
        if ev.kind == "step":
            loss = f", loss {ev.loss:.3f}" if ev.loss is not None else ""
            left = f", about {ev.eta_s:.0f} s left" if ev.eta_s is not None else ""
            self.train_label.setText(f"step {ev.step}{loss}{left}")
            if ev.eta_s is not None and self._progress is not None:
                # percent of the time budget used: the first ETA is the whole run
                self._eta0 = max(self._eta0 or 0.0, float(ev.eta_s))
                pct = int(100 * (1 - float(ev.eta_s) / max(self._eta0, 1e-6)))
                delta = min(pct, 100) - int(self._progress.n)
                if delta > 0:
                    self._progress.update(delta)
        elif ev.kind == "epoch":
            loss = f"loss {ev.loss:.3f}" if ev.loss is not None else ""
            self.train_label.setText(f"epoch {ev.epoch} {loss}")
        elif ev.message:
            self.train_label.setText(ev.message)

    def _on_retrain_done(self, result: Any) -> None:
        if result is None or result.version is None:
            self.train_label.setText("Retraining stopped; the model did not change.")
        else:
            from napari.utils.notifications import show_warning

            from napari_medseg.training.verdict import training_verdict

            dice = result.metrics.get("dice_mean")
            extra = f", validation Dice {dice:.3f}" if dice is not None else ""
            verdict = training_verdict(result.train_result) if result.train_result else None
            if verdict is not None and not verdict.usable:
                text = f"Model <b>{result.version}</b> is not usable yet. {verdict.message}"
                show_warning(f"Model {result.version} is not usable yet. {verdict.message}")
            else:
                text = f"Model <b>{result.version}</b> ready ({result.elapsed_s:.0f} s{extra})."
                if verdict is not None and verdict.weak:
                    text += f" {verdict.message}"
            self.train_label.setText(text)
        self.refresh()

    def _on_retrain_finished(self) -> None:
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        self._eta0 = None
        self.retrain_worker = None
        self._job = None
        self._update_enabled()

    # ================================================================== versions
    def selected_version(self) -> str | None:
        rows = self.version_table.selectionModel().selectedRows()
        if not rows:
            return None
        item = self.version_table.item(rows[0].row(), 0)
        return item.text() if item else None

    @catch_errors("Use version")
    def use_selected_version(self) -> None:
        version = self.selected_version()
        if version is None:
            raise ValueError("select a version in the table first")
        self.use_version(version)

    def use_version(self, version: str) -> None:
        """Make ``version`` the current model."""
        self._require_project().set_current_model(version)
        self.train_label.setText(f"Using model <b>{version}</b>.")
        self.refresh()

    # ================================================================== what next
    @catch_errors("Next case")
    def next_case(self) -> Any:
        """Rank the pool by uncertainty (current model) and open the most informative image."""
        from napari_medseg.active import suggest_cases

        project = self._require_project()
        pool = project.unlabelled_ids()
        if not pool:
            raise ValueError("the pool is empty: add images to the project first")
        model_dir = project.model_dir()

        def work() -> tuple[list[tuple[str, float]], Any, Any]:
            if model_dir is None:
                cid = pool[0]
                return [(cid, 0.0)], project.load_image(cid), None
            out = self._in_child_process(suggest_cases, str(project.root), what="Ranking")
            if out is None:
                raise ValueError("the ranking was cancelled")
            ranking = out["ranking"]
            top = ranking[0][0]
            return ranking, project.load_image(top), out["predictions"].get(top)

        def done(out: tuple[list[tuple[str, float]], Any, Any]) -> None:
            ranking, volume, prediction = out
            self.last_ranking = ranking
            top = ranking[0][0]
            shown = ", ".join(f"{c} ({s:.3f})" for c, s in ranking[:5])
            self.next_label.setText(f"Most informative: {shown}" if prediction is not None else
                                    f"No model yet: opening {top}")
            image_layer = add_volume_as_image(self.viewer, volume, name=top)
            self._case_meta(image_layer, top)
            self.image_combo.set_layer(image_layer)
            if not self.restore_labels(image_layer) and prediction is not None:
                labels, entropy = prediction
                layer = add_labels_for_image(self.viewer, image_layer, labels.copy(),
                                             name=f"{top} {project.current_model}",
                                             classes=project.classes)
                self.labels_combo.set_layer(layer)
                self._entropy[(image_layer.name, project.current_model)] = entropy

        self.next_label.setText(f"Ranking {len(pool)} pool image(s) …")
        self.worker = self._run(work, done, "Next case")
        return self.worker

    @catch_errors("Next slices")
    def next_slices(self) -> Any:
        """Rank the slices (along the project's slice axis) of the current image by uncertainty
        and jump to the best."""
        from napari_medseg.active import rank_slices, slice_uncertainty, uncertainty_region

        project = self._require_project()
        image_layer = self._image()
        version = project.current_model
        if version is None:
            raise ValueError("the project has no model yet")
        labels_layer = self.labels_combo.layer()
        done_marks = self._marks(labels_layer) if labels_layer is not None else None
        if done_marks and self._marks_axis(labels_layer) != project.slice_axis:
            done_marks = None  # marks along another axis say nothing about these slices
        key = (image_layer.name, version)
        cached = self._entropy.get(key)
        volume = volume_from_layer(image_layer)
        model_dir = project.model_dir()

        axis = project.slice_axis if volume.ndim == 3 else 0

        def work() -> list[int]:
            entropy = cached
            if entropy is None:  # the model runs in a child process; ranking is cheap here
                from napari_medseg.inference.predict import predict

                result = self._in_child_process(predict, str(model_dir), volume,
                                                what="Prediction", return_probabilities=False,
                                                return_entropy=True)
                if result is None:
                    raise ValueError("the prediction was cancelled")
                entropy = result.entropy
            self._entropy[key] = entropy
            scores = slice_uncertainty(entropy, axis, uncertainty_region(entropy))
            return rank_slices(scores, n=5, exclude=done_marks or (), min_gap=2)

        def done(slices: list[int]) -> None:
            self.last_slices = slices
            if not slices:
                self.next_label.setText("The model is sure about every slice.")
                return
            self.jump_to_slice(image_layer, slices[0], axis)
            self.next_label.setText("Most uncertain slices: " + ", ".join(map(str, slices))
                                    + f" (showing {slices[0]})")

        self.worker = self._run(work, done, "Next slices")
        return self.worker

    def jump_to_slice(self, layer: Any, index: int, axis: int = 0) -> None:
        """Show slice ``index`` (along data ``axis``) of ``layer`` in the viewer."""
        coords = np.zeros(layer.ndim)
        coords[axis] = index
        world = layer.data_to_world(coords)
        dim = self.viewer.dims.ndim - layer.ndim + axis
        self.viewer.dims.set_point(dim, float(world[axis]))

    # ================================================================== autosave / restore
    def _watch_current_labels(self, *_: Any) -> None:
        layer = self.labels_combo.layer()
        if layer is self._watched:
            return
        if self._watched is not None:
            self.autosave_now()
            for name in ("paint", "data", "labels_update"):
                try:
                    getattr(self._watched.events, name).disconnect(self._on_labels_edited)
                except (AttributeError, TypeError, ValueError, RuntimeError):
                    pass
        self._watched = layer
        self._dirty = False
        if layer is not None:
            for name in ("paint", "data", "labels_update"):
                emitter = getattr(layer.events, name, None)
                if emitter is not None:
                    emitter.connect(self._on_labels_edited)

    def _on_labels_edited(self, *_: Any) -> None:
        self._dirty = True
        try:
            self._autosave_timer.start()
        except RuntimeError:  # widget deleted
            pass

    def autosave_now(self) -> Any:
        """Save the watched labels to the project now if they changed (background thread)."""
        if not self._dirty or self.project is None or self._watched is None:
            return None
        labels_layer = self._watched
        image_layer = self._image_for(labels_layer)
        if image_layer is None:
            return None
        project = self.project
        try:
            volume = volume_from_layer(image_layer)
        except ValueError:
            return None
        if np.asarray(labels_layer.data).shape != volume.shape:
            return None
        data = np.array(labels_layer.data, copy=True)
        marks = self._marks(labels_layer)
        case_hint = self._case_id_hint(image_layer)
        self._dirty = False

        def work() -> str:
            return project.autosave_labels(case_hint, data, marks, image=volume)

        def done(cid: str) -> None:
            try:
                self._case_meta(image_layer, cid)
                self.case_label.setText(f"Autosaved labels of case {cid}.")
            except RuntimeError:
                pass

        def failed(exc: BaseException) -> bool:
            self._dirty = True
            return False

        self.worker = self._run(work, done, "Autosave", on_errored=failed)
        return self.worker

    def _image_for(self, labels_layer: Any) -> Any:
        """The image the labels were made for (by its recorded layer id, so renaming either
        layer keeps the link; else the chosen image)."""
        return image_for(labels_layer, image_layers(self.viewer)) or self.image_combo.layer()

    def _on_layer_inserted(self, event: Any) -> None:
        layer = getattr(event, "value", None)
        if self.project is None or layer is None or layer not in image_layers(self.viewer):
            return
        try:
            self.restore_labels(layer)
        except Exception as exc:  # noqa: BLE001 - never break opening an image
            show_error_message(exc, "Restore labels")

    def restore_labels(self, image_layer: Any) -> bool:
        """Show the autosaved / accepted labels of ``image_layer``'s case, if the project has any.

        Returns True when a Labels layer was added.
        """
        if self.project is None:
            return False
        volume = volume_from_layer(image_layer)
        cid = self._case_id_hint(image_layer) or self.project.find_case(volume)
        if cid is None or cid not in self.project.case_ids():
            return False
        self._case_meta(image_layer, cid)
        if any(belongs_to(layer, image_layer) for layer in labels_layers(self.viewer)):
            return False  # the user already has labels for it
        labels = self.project.load_labels(cid)
        if labels is None or labels.shape != volume.shape:
            return False
        layer = add_labels_for_image(self.viewer, image_layer, labels,
                                     name=f"{image_layer.name} labels",
                                     classes=self.project.classes)
        marks = self.project.annotated_slices(cid)
        if marks:
            update_medseg_metadata(layer, annotated_slices=list(marks), annotated_axis=int(
                self.project.case_info(cid).get("slice_axis", self.project.slice_axis)))
        self.labels_combo.set_layer(layer)
        self.case_label.setText(f"Restored the saved labels of case <b>{cid}</b>.")
        return True

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt name
        self.autosave_now()
        super().closeEvent(event)


__all__ = ["ProjectWidget"]
