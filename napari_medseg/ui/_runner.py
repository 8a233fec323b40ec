"""Run a :class:`~napari_medseg.jobs.ProcessJob` from a dock widget without blocking the viewer.

The job runs in a child process (see :mod:`napari_medseg.jobs` for why); a napari
``thread_worker`` only waits on the child's event queue and hands each small
:class:`~napari_medseg.events.Event` to the main thread (``yielded``), where this runner moves a
napari progress bar and re-emits the event for the widget. Layers are only ever touched by the
widget's slots, on the main thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator
from typing import Any

from qtpy.QtCore import QObject, Signal

from napari_medseg.events import Event
from napari_medseg.jobs import ProcessJob

logger = logging.getLogger("napari_medseg")

TERMINAL_KINDS = ("finished", "cancelled", "error")


def _iterate(events: Generator[Event, None, Any], prepare: Callable[[Any], Any] | None,
             out: dict[str, Any]) -> Generator[Event, None, Any]:
    """Worker body: forward the child's events, then ``prepare`` the result (worker thread)."""
    result = yield from events
    if prepare is not None and result is not None:
        try:
            out["prepared"] = prepare(result)
        except Exception:  # noqa: BLE001 - the widget falls back to the raw result
            logger.debug("preparing the job's result failed", exc_info=True)
    return result


class JobRunner(QObject):
    """Drives one job at a time: progress bar, events on the main thread, cancel.

    Signals
    -------
    event(Event)
        Every event, on the main thread, in order.
    done(Event)
        The terminal event (``finished``, ``cancelled`` or ``error``) once the worker ended.
    running_changed(bool)
    """

    event = Signal(object)
    done = Signal(object)
    running_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.job: ProcessJob | None = None
        self.worker: Any = None
        self._progress: Any = None
        self._last: Event | None = None
        self._events: Generator[Event, None, Any] | None = None
        self._desc = ""
        self._t0 = time.monotonic()
        #: Return value of the last job (None while running or after a failure).
        self.last_result: Any = None
        #: What ``prepare`` made of it in the worker thread (None without ``prepare``).
        self.last_prepared: Any = None
        self._prepared: dict[str, Any] = {}

    @property
    def running(self) -> bool:
        return self.worker is not None

    def start(self, job: ProcessJob, description: str,
              prepare: Callable[[Any], Any] | None = None) -> Any:
        """Start ``job`` in a ``thread_worker``; returns the (started) worker.

        Parameters
        ----------
        job : ProcessJob
        description : str
            Progress-bar text.
        prepare : callable, optional
            ``prepare(result)`` runs in the worker thread once the job returned, before
            ``done``: heavy array work for display (never layers); its value is
            :attr:`last_prepared`.

        Raises
        ------
        RuntimeError
            If a job is already running.
        """
        from napari.qt.threading import create_worker

        if self.running:
            raise RuntimeError("A job is already running; cancel it or wait for it to finish.")
        self.job = job
        self.last_result = None
        self.last_prepared = None
        self._prepared = {}
        self._last = None
        self._desc = description
        self._t0 = time.monotonic()
        # Keep the events generator: if napari aborts the worker (``quit()`` on exit), it
        # stops iterating without closing it; _on_finished closes it, which stops the child.
        holder: dict[str, Any] = {}
        self._events = job.events(
            abandon=lambda: bool(getattr(holder.get("worker"), "abort_requested", False)))
        worker = create_worker(_iterate, self._events, prepare, self._prepared,
                               _start_thread=False)
        holder["worker"] = worker
        worker.yielded.connect(self._on_event)
        worker.errored.connect(self._on_worker_error)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self._open_progress(None)
        self.running_changed.emit(True)
        worker.start()
        return worker

    def cancel(self, grace_s: float | None = None) -> None:
        """Ask the job to stop (it saves what it keeps; forced after its grace period).

        ``grace_s`` shortens the grace for jobs that keep nothing (inference): the child is
        stopped if it has not ended by itself after that many seconds.
        """
        if self.job is not None:
            if grace_s is not None:
                self.job.cancel_grace_s = min(self.job.cancel_grace_s, float(grace_s))
            self.job.cancel()
            if self._progress is not None:
                self._progress.set_description(f"{self._desc}: cancelling")

    def describe(self, text: str) -> None:
        """Show ``text`` on the progress bar (e.g. "120/480 windows, ~30 s left")."""
        if self._progress is not None and not (self.job is not None
                                               and self.job.cancel_requested):
            self._progress.set_description(f"{self._desc}: {text}")

    # -- main-thread slots --------------------------------------------------------------
    def _open_progress(self, total: int | None) -> None:
        from napari.utils import progress

        self._close_progress()
        self._progress = progress(total=total, desc=self._desc)

    def _close_progress(self) -> None:
        if self._progress is not None:
            self._progress.close()
            self._progress = None

    def _on_event(self, ev: Event) -> None:
        if not isinstance(ev, Event):
            return
        pbar = self._progress
        if pbar is not None and ev.total and ev.step is not None:
            # Percent done: by steps, or by time when the job's ETA says it ends sooner
            # (a time budget stops training long before max_epochs * steps_per_epoch).
            fraction = float(ev.step) / float(ev.total)
            if ev.eta_s is not None and ev.kind == "step":
                elapsed = time.monotonic() - self._t0
                fraction = max(fraction, elapsed / max(elapsed + float(ev.eta_s), 1e-6))
            if pbar.total != 100:
                pbar.total = 100
            delta = min(int(fraction * 100), 100) - int(pbar.n)
            if delta > 0:
                pbar.update(delta)
        if ev.kind in TERMINAL_KINDS:
            self._last = ev
        self.event.emit(ev)

    def _on_worker_error(self, exc: BaseException) -> None:
        # events() turns failures into events; this is a bug in the plumbing itself.
        logger.debug("job worker failed", exc_info=exc)
        self._last = Event("error", level="error",
                           message=f"{self._desc} failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")

    def _on_finished(self) -> None:
        if self._events is not None:
            try:
                self._events.close()  # no-op when it ran to the end; else cancels the child
            except ValueError:  # still executing (cannot happen after 'finished')
                pass
            self._events = None
        self._close_progress()
        self.worker = None
        last = self._last or Event("error", level="error",
                                   message=f"{self._desc} ended without a result.")
        self.last_result = self.job.result if self.job is not None else None
        self.last_prepared = self._prepared.get("prepared")
        self.job = None
        self.running_changed.emit(False)
        self.done.emit(last)
