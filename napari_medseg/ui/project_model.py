"""Project dock, "Model" box: retrain on the accepted cases, and the table of model versions.

**Retrain** runs :func:`napari_medseg.cycle.retrain` whole in a child process (a
:class:`~napari_medseg.jobs.ProcessJob` on this box's :class:`~napari_medseg.ui._runner.JobRunner`):
the scoring of the current model on the newly accepted cases and the fine-tuning, so the viewer
stays responsive and a crash or out-of-memory cannot take napari down. The version table shows
the metrics of each version and lets the user switch back to one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtGui import QFont
from qtpy.QtWidgets import (
    QAbstractItemView,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_medseg.dataset.project import Project
from napari_medseg.events import Event
from napari_medseg.jobs import ProcessJob
from napari_medseg.ui._controls import button, double_spin, enable_unless, hint
from napari_medseg.ui._notify import catch_errors
from napari_medseg.ui._runner import JobRunner
from napari_medseg.ui._settings import get_setting, set_setting
from napari_medseg.ui.project_jobs import retrain_project
from napari_medseg.ui.project_state import ProjectState, job_failed

VERSION_COLUMNS = ("Version", "Dice", "Dice new", "Cases", "Slices")
VERSION_TIPS = (
    "Model version (bold = in use)",
    "Mean Dice on validation cases, when the project has any",
    "Mean Dice of this version on the cases accepted after it was trained: cases it never saw, "
    "measured when the next version is trained",
    "Accepted cases it was trained on",
    "Annotated slices in those cases (the annotation effort)",
)


_RETRAIN_TIP = ("Fine-tune the current model on all accepted cases (a new model if there is "
                "none); runs in the background")


def _fmt(value: Any, digits: int = 3) -> str:
    return "—" if value is None else f"{float(value):.{digits}f}"


def _version_table() -> QTableWidget:
    table = QTableWidget(0, len(VERSION_COLUMNS))
    table.setHorizontalHeaderLabels(VERSION_COLUMNS)
    for c, tip in enumerate(VERSION_TIPS):
        table.horizontalHeaderItem(c).setToolTip(tip)
    table.verticalHeader().setVisible(False)
    table.setSelectionBehavior(QAbstractItemView.SelectRows)
    table.setSelectionMode(QAbstractItemView.SingleSelection)
    table.setEditTriggers(QAbstractItemView.NoEditTriggers)
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeToContents)
    header.setStretchLastSection(True)
    table.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
    table.setToolTip(
        "Model versions. Dice: on validation cases (when there are any). Dice new cases: "
        "the version's Dice on the cases accepted after it was trained (cases it never "
        "saw). Bold = in use.")
    table.setMinimumHeight(90)
    table.setMaximumHeight(160)
    return table


class ModelBox(QGroupBox):
    """Time budget, Retrain / Cancel, the version table and "Use selected version".

    Parameters
    ----------
    state : ProjectState
    before_retrain : callable
        Called before a retraining starts (the dock saves the labels being edited).
    """

    def __init__(self, state: ProjectState, before_retrain: Callable[[], Any],
                 parent: QWidget | None = None) -> None:
        super().__init__("Model", parent)
        self.state = state
        self._before_retrain = before_retrain
        #: Extra :class:`~napari_medseg.training.TrainConfig` fields for Retrain (advanced
        #: users, tests), e.g. ``{"dims": 2}``.
        self.train_overrides: dict[str, Any] = {}
        col = QVBoxLayout(self)
        form = QFormLayout()
        self.budget = double_spin(get_setting("project/budget_s", 120.0), 5.0, 86400.0,
                                  "Wall-clock time for one retraining; short keeps the loop "
                                  "quick", suffix=" s", decimals=0)
        form.addRow("Time budget", self.budget)
        col.addLayout(form)
        row = QHBoxLayout()
        self.retrain_button = button("Retrain", _RETRAIN_TIP, lambda *_: self.retrain())
        self.cancel_button = button("Cancel", "Stop retraining; the current model stays",
                                    self.cancel_retrain)
        self.cancel_button.setEnabled(False)
        row.addWidget(self.retrain_button)
        row.addWidget(self.cancel_button)
        col.addLayout(row)
        self.train_label = hint("")
        col.addWidget(self.train_label)
        self.version_table = _version_table()
        col.addWidget(self.version_table)
        self.use_version_button = button("Use selected version", "Predict and retrain from "
                                         "the selected version from now on",
                                         self.use_selected_version)
        col.addWidget(self.use_version_button)

        self.runner = JobRunner(self)  # Retrain
        self.runner.event.connect(self._on_retrain_event)
        self.runner.done.connect(self._on_retrain_done)
        self.runner.running_changed.connect(lambda *_: self.update_enabled())
        self._project: Project | None = None

    @property
    def retrain_worker(self) -> Any:
        """Worker of the running retraining, or None."""
        return self.runner.worker

    def update_enabled(self) -> None:
        p = self.state.project
        busy = self.runner.running
        enable_unless(self.retrain_button, "create or open a project first" if p is None else (
            "accept at least one case first" if not p.accepted_ids() else None) or (
            "a retraining is running" if busy else None), _RETRAIN_TIP)
        self.cancel_button.setEnabled(busy)
        self.use_version_button.setEnabled(p is not None and not busy and bool(p.models()))

    # -- retrain ---------------------------------------------------------------------------
    @catch_errors("Retrain")
    def retrain(self, config: Any = None, in_process: bool = True) -> Any:
        """Start retraining in a child process; returns the worker that follows it.

        Parameters
        ----------
        config : TrainConfig, optional
            Full training options (default: the time budget of the form).
        in_process : bool
            Kept for compatibility and ignored: the whole retraining (scoring the current
            model, training) always runs in a child process.
        """
        del in_process
        project = self.state.require_project()
        if self.runner.running:
            raise ValueError("a retraining is already running")
        if not project.accepted_ids():
            raise ValueError("accept at least one case first")
        self._before_retrain()
        budget = float(self.budget.value())
        set_setting("project/budget_s", budget)
        if config is None and self.train_overrides:
            from napari_medseg.cycle import default_retrain_config

            config = default_retrain_config(project, budget, **self.train_overrides)
        job = ProcessJob(retrain_project, str(project.root), time_budget_s=budget,
                         config=config, what="Retraining")
        self._project = project
        self.train_label.setText("Retraining …")
        return self.runner.start(job, "Retraining")

    def cancel_retrain(self) -> None:
        """Ask the running retraining to stop (the current model is kept)."""
        if self.runner.running:
            self.runner.cancel()
            self.train_label.setText("Cancelling …")

    def _on_retrain_event(self, ev: Event) -> None:
        if not isinstance(ev, Event):
            return
        if ev.kind == "step":
            loss = f", loss {ev.loss:.3f}" if ev.loss is not None else ""
            left = f", about {ev.eta_s:.0f} s left" if ev.eta_s is not None else ""
            text = f"step {ev.step}{loss}{left}"
            self.train_label.setText(text)
            self.runner.describe(text)
        elif ev.kind == "epoch":
            loss = f"loss {ev.loss:.3f}" if ev.loss is not None else ""
            self.train_label.setText(f"epoch {ev.epoch} {loss}")
        elif ev.message:
            self.train_label.setText(ev.message)

    @catch_errors("Retrain")
    def _on_retrain_done(self, ev: Event) -> None:
        project, self._project = self._project, None
        if project is not None:
            project.reload()  # the child registered the new version in project.json
        result = self.runner.last_result
        if ev.kind == "error":
            self.train_label.setText(job_failed(ev, "") or "Retraining failed.")
        elif result is None or getattr(result, "version", None) is None:
            self.train_label.setText("Retraining stopped; the model did not change.")
        else:
            self.train_label.setText(self._ready_text(result))
        self.state.changed.emit()

    @staticmethod
    def _ready_text(result: Any) -> str:
        from napari.utils.notifications import show_warning

        from napari_medseg.training.verdict import training_verdict

        dice = result.metrics.get("dice_mean")
        extra = f", validation Dice {dice:.3f}" if dice is not None else ""
        verdict = training_verdict(result.train_result) if result.train_result else None
        if verdict is not None and not verdict.usable:
            if not getattr(result, "made_current", True):
                show_warning(f"Model {result.version} learnt too little; {result.parent} stays "
                             "in use. Retrain with a longer time budget.")
                return (f"Model <b>{result.version}</b> learnt too little, so "
                        f"<b>{result.parent}</b> stays in use. {verdict.message}")
            show_warning(f"Model {result.version} is not usable yet. Retrain with a longer "
                         "time budget.")
            return f"Model <b>{result.version}</b> is not usable yet. {verdict.message}"
        text = f"Model <b>{result.version}</b> ready ({result.elapsed_s:.0f} s{extra})."
        if verdict is not None and verdict.weak:
            text += f" {verdict.message}"
        return text

    # -- versions --------------------------------------------------------------------------
    def fill_versions(self, project: Project | None) -> None:
        """One row per model version of ``project``, newest first; bold = in use."""
        table = self.version_table
        models = project.models() if project else []
        current = project.current_model if project else None
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
        self.state.require_project().set_current_model(version)
        self.train_label.setText(f"Using model <b>{version}</b>.")
        self.state.changed.emit()


__all__ = ["VERSION_COLUMNS", "VERSION_TIPS", "ModelBox"]
