"""Project dock: the state its sections share, and how they start background work.

:class:`ProjectState` holds the open :class:`~napari_medseg.dataset.project.Project`, the
entropy maps already computed per (image, model version) and the count of background tasks
(tests wait for it to drop to 0). Two ways to run work off the main thread:

* :meth:`ProjectState.start_job`: a model (prediction, ranking, training) always runs in a child
  process, a :class:`~napari_medseg.jobs.ProcessJob` driven by a section's
  :class:`~napari_medseg.ui._runner.JobRunner`;
* :meth:`ProjectState.run`: file I/O and cheap numpy (autosave, adding pool images, ranking
  slices on a cached entropy map) in a napari thread worker.

Also the few helpers that read and write a layer's project metadata (its case id, its slice
marks).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from typing import Any

import numpy as np
from qtpy.QtCore import QObject, Signal

from napari_medseg.dataset.project import Project
from napari_medseg.events import Event
from napari_medseg.jobs import ProcessJob
from napari_medseg.ui._controls import run_in_worker
from napari_medseg.ui._layers import medseg_metadata, update_medseg_metadata
from napari_medseg.ui._notify import show_error_message
from napari_medseg.ui._runner import JobRunner
from napari_medseg.ui._settings import remember_folder

logger = logging.getLogger("napari_medseg")

#: Seconds a prediction or ranking gets to stop by itself after a cancel (it keeps nothing).
MODEL_JOB_GRACE_S = 2.0


class ProjectState(QObject):
    """What the sections of the Project dock share.

    Signals
    -------
    changed()
        The project was opened, or its cases or models changed: the dock refreshes.
    """

    changed = Signal()

    def __init__(self, viewer: Any, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.project: Project | None = None
        #: Worker of the last background task started (tests wait on it).
        self.worker: Any = None
        #: Background tasks started and not finished yet (tests wait for 0).
        self.pending = 0
        #: Normalised entropy maps by (image layer name, model version).
        self.entropy: dict[tuple[str, str | None], np.ndarray] = {}

    def require_project(self) -> Project:
        if self.project is None:
            raise ValueError("create or open a project first")
        return self.project

    def set_project(self, project: Project) -> None:
        self.project = project
        self.entropy.clear()
        remember_folder(project.root.parent, "project")
        self.changed.emit()

    # -- background work -----------------------------------------------------------------
    def run(self, work: Callable[[], Any], done: Callable[[Any], None], action: str,
            **kwargs: Any) -> Any:
        """Start ``work`` in a thread worker (no model in it); ``done(result)`` on the main
        thread. Returns the started worker."""
        self.pending += 1

        def finished() -> None:
            self.pending -= 1

        self.worker = run_in_worker(work, on_returned=done, action=action, on_finished=finished,
                                    **kwargs)
        return self.worker

    def track(self, runner: JobRunner) -> None:
        """Count ``runner``'s jobs in :attr:`pending`; connect it after the section's own
        ``done`` slot, so the count drops only once the result is shown."""
        runner.done.connect(self._job_ended)

    def start_job(self, runner: JobRunner, job: ProcessJob, description: str,
                  prepare: Callable[[Any], Any] | None = None) -> Any:
        """Start ``job`` (a child process) on a :meth:`track`-ed runner; returns its worker."""
        self.pending += 1
        try:
            self.worker = runner.start(job, description, prepare=prepare)
        except Exception:
            self.pending -= 1
            raise
        return self.worker

    def _job_ended(self, _event: Any) -> None:
        self.pending = max(self.pending - 1, 0)


def model_job(fn: Callable[..., Any], *args: Any, what: str, **kwargs: Any) -> ProcessJob:
    """A prediction-like :class:`ProcessJob` (keeps nothing, so a cancel stops it quickly)."""
    return ProcessJob(fn, *args, what=what, cancel_grace_s=MODEL_JOB_GRACE_S, **kwargs)


def job_failed(ev: Event, cancelled: str) -> str | None:
    """The text to show when a job's terminal event is not a success (an error is also
    notified), or None when it finished."""
    if ev.kind == "error":
        tb = ev.result.get("traceback") if isinstance(ev.result, dict) else None
        if tb:
            logger.debug("a Project dock job failed in its child process:\n%s", tb)
        show_error_message(RuntimeError(ev.message or "the job failed"))
        return ev.message or "The job failed."
    if ev.kind == "cancelled":
        return cancelled
    return None


def run_to_value(events: Generator[Event, None, Any]) -> Any:
    """Iterate a core generator job here to its end and return its value (for jobs that run
    no model, e.g. ranking slices on an entropy map already computed)."""
    while True:
        try:
            next(events)
        except StopIteration as stop:
            return stop.value


# -- a layer's project metadata -----------------------------------------------------------
def slice_marks(layer: Any) -> list[int] | None:
    """Slices marked as annotated on a Labels layer (Annotate tab), or None."""
    marks = medseg_metadata(layer).get("annotated_slices")
    return [int(m) for m in marks] if marks else None


def marks_axis(layer: Any) -> int:
    """Array axis the slice marks of a Labels layer run along (the Annotate dock marks
    along axis 0; a case restored from a project keeps the project's axis)."""
    return int(medseg_metadata(layer).get("annotated_axis", 0))


def case_id_hint(layer: Any) -> str | None:
    """The project case an image layer was recorded as, if any."""
    return medseg_metadata(layer).get("project_case")


def set_case_id(layer: Any, case_id: str) -> None:
    update_medseg_metadata(layer, project_case=case_id)


__all__ = ["ProjectState", "case_id_hint", "job_failed", "marks_axis", "model_job",
           "run_to_value", "set_case_id", "slice_marks"]
