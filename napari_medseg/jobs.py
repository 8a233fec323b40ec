"""Run a long core job (training, inference) in a child process and stream its events back.

Why a child process, not a thread
---------------------------------
A peer napari plugin fine-tunes on the GUI side in a thread. Its users report that GPU memory
stays allocated until napari is closed (PyTorch's caching allocator and CUDA context live as long
as the process), that a crash inside training takes the whole viewer down (with the user's
unsaved labels), and that errors arrive as walls of traceback. Running the job in a **separate
process** fixes all three by construction:

* **GPU memory is released** when the job ends, whatever the way it ends (finished, cancelled,
  failed, killed): the driver frees every allocation and the CUDA context of a process that exits.
  No reliance on ``torch.cuda.empty_cache()`` or on the job dropping every reference.
* **Crash isolation**: a segfault in a native library, an out-of-memory kill by the operating
  system or an uncaught exception ends the child only. The parent sees an exit code and turns it
  into one :class:`~napari_medseg.events.Event` of kind ``"error"`` with a plain sentence.
* **Responsiveness**: the training loop's Python code runs under another interpreter's GIL, so
  the viewer's event loop never waits for it; the child also lowers its own scheduling priority
  (``nice``) so painting and scrolling win the CPU on a small machine.
* **Cancel really stops**: a cooperative stop flag first (the job saves what it keeps and yields
  ``"cancelled"``), then ``terminate()`` / ``kill()`` if the job does not stop in time.

The price is start-up time (the child imports torch, a few seconds) and that job arguments and
results must be picklable (plain data, numpy arrays, dataclasses): acceptable for jobs that run
for minutes. The ``spawn`` start method is used on every platform: ``fork`` from a process that
holds Qt, OpenGL and CUDA state is unsafe.

Large arrays (an image going in, labels and probabilities coming back: hundreds of MB for a
512 x 512 x 400 CT) do not go through the pipe: pickling them holds Python's GIL for ~0.2 s per
100 MB, which freezes the viewer even though the waiting happens in a worker thread. They are
written to a temporary file and read back with plain file I/O, which releases the GIL
(:data:`SPILL_BYTES`). A terminal event whose result is also the job's return value is sent once.

This module is pure Python (no Qt, no napari): the GUI iterates :meth:`ProcessJob.events` inside
napari's ``thread_worker``; the benchmarks and tests iterate it directly.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import multiprocessing as mp
import os
import pickle
import queue
import shutil
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Generator, Iterator
from typing import Any

import numpy as np

from napari_medseg.events import Event

__all__ = [
    "ProcessJob", "describe_device", "describe_exception", "describe_exit", "run_in_process",
]

#: Messages sent from the child: ``(tag, payload)`` with tag "event", "return" or "error".
_EVENT, _RETURN, _ERROR = "event", "return", "error"

_TERMINAL = ("finished", "cancelled", "error")

#: numpy arrays of at least this many bytes travel between the processes through a temporary
#: file instead of the pipe (see the module docstring).
SPILL_BYTES = 4 * 2**20

#: Bytes per read/write call when an array is spilled (each call releases the GIL).
_IO_CHUNK = 64 * 2**20


@dataclasses.dataclass(frozen=True)
class _SpilledArray:
    """Placeholder for a numpy array written to ``path`` (raw C-order bytes)."""

    path: str
    shape: tuple[int, ...]
    dtype: str


class _SameAsReturn:
    """Placeholder for a terminal event's result that is also the job's return value."""


def _write_array(array: np.ndarray, folder: str) -> _SpilledArray:
    arr = np.ascontiguousarray(array)
    path = os.path.join(folder, f"{uuid.uuid4().hex}.raw")
    view = memoryview(arr.reshape(-1)).cast("B")
    with open(path, "wb", buffering=0) as fh:
        done = 0
        while done < len(view):
            done += fh.write(view[done:done + _IO_CHUNK])
    return _SpilledArray(path, tuple(arr.shape), arr.dtype.str)


def _read_array(spilled: _SpilledArray) -> np.ndarray:
    arr = np.empty(spilled.shape, dtype=np.dtype(spilled.dtype))
    view = memoryview(arr.reshape(-1)).cast("B")
    with open(spilled.path, "rb", buffering=0) as fh:
        done = 0
        while done < len(view):
            n = fh.readinto(view[done:done + _IO_CHUNK])
            if not n:
                raise OSError(f"{spilled.path} is shorter than the array it holds")
            done += n
    with contextlib.suppress(OSError):
        os.remove(spilled.path)
    return arr


def _map_arrays(obj: Any, fn: Callable[[Any], Any], test: Callable[[Any], bool],
                depth: int = 0) -> Any:
    """``obj`` with every value ``v`` for which ``test(v)`` replaced by ``fn(v)``.

    Looks inside dicts, lists, tuples and dataclass instances (e.g. a ``Volume``, an ``Event``,
    a ``PredictionResult``), four levels deep; containers are copied only where something was
    replaced, so the caller's objects are never changed.
    """
    if test(obj):
        return fn(obj)
    if depth >= 4:
        return obj
    if type(obj) is dict:
        items = {k: _map_arrays(v, fn, test, depth + 1) for k, v in obj.items()}
        return items if any(items[k] is not obj[k] for k in obj) else obj
    if type(obj) in (list, tuple):
        items = [_map_arrays(v, fn, test, depth + 1) for v in obj]
        changed = any(a is not b for a, b in zip(items, obj, strict=True))
        return type(obj)(items) if changed else obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name, None)
            new = _map_arrays(value, fn, test, depth + 1)
            if new is not value:
                changes[f.name] = new
        if not changes:
            return obj
        clone = copy.copy(obj)
        for name, value in changes.items():
            object.__setattr__(clone, name, value)
        return clone
    return obj


def _is_big_array(value: Any) -> bool:
    return (isinstance(value, np.ndarray) and value.dtype != object
            and value.nbytes >= SPILL_BYTES)


def spill_arrays(obj: Any, folder: str) -> Any:
    """``obj`` with its large numpy arrays written to files in ``folder`` (see module doc)."""
    return _map_arrays(obj, lambda a: _write_array(a, folder), _is_big_array)


def restore_arrays(obj: Any) -> Any:
    """Inverse of :func:`spill_arrays`: read the arrays back (and delete their files)."""
    return _map_arrays(obj, _read_array, lambda v: isinstance(v, _SpilledArray))

_SIGNAL_NAMES = {
    9: "it was killed (SIGKILL), most often by the operating system because the computer ran "
    "out of memory",
    11: "it crashed in native code (segmentation fault)",
    6: "it aborted in native code (SIGABRT)",
    15: "it was terminated (SIGTERM)",
    7: "it crashed with a bus error (SIGBUS), often a full disk or shared memory",
}

OOM_SUGGESTION = (
    "Reduce the patch size or batch size, close other programs using the GPU, or choose the CPU "
    "as device."
)


def describe_exit(exitcode: int | None, what: str = "The job") -> str:
    """One sentence explaining why a child process ended without finishing its job.

    Parameters
    ----------
    exitcode : int or None
        ``multiprocessing.Process.exitcode``: negative = killed by that signal number,
        positive = ``sys.exit`` / ``os._exit`` code, None = still running.
    what : str
        Subject of the sentence, e.g. ``"Training"``.
    """
    if exitcode is None:
        return f"{what} did not respond and was stopped."
    if exitcode < 0:
        reason = _SIGNAL_NAMES.get(-exitcode, f"it was stopped by signal {-exitcode}")
        extra = " Try a smaller patch size or fewer cases, or close other programs." if (
            -exitcode == 9) else ""
        return f"{what} stopped unexpectedly: {reason}.{extra} Your labels are unchanged."
    return (f"{what} stopped unexpectedly (its process exited with code {exitcode}). "
            "Your labels are unchanged.")


def _is_out_of_memory(exc: BaseException) -> bool:
    try:
        import torch  # the child imported it anyway if the job used it

        oom_type = getattr(torch.cuda, "OutOfMemoryError", None)
        if oom_type is not None and isinstance(exc, oom_type):
            return True
    except Exception:  # noqa: BLE001 - torch missing or broken: fall back to the text
        pass
    text = str(exc).lower()
    return "out of memory" in text and any(k in text for k in ("cuda", "mps", "hip", "gpu"))


def describe_exception(exc: BaseException, what: str = "The job") -> str:
    """One sentence for a clinician describing an exception raised inside a job.

    ``ValueError`` subclasses carry clinician-readable messages by the package's contract and are
    passed through; GPU out-of-memory gets a concrete suggestion; anything else is named briefly.
    """
    if _is_out_of_memory(exc):
        return f"{what} ran out of GPU memory. {OOM_SUGGESTION}"
    if isinstance(exc, MemoryError):
        return (f"{what} ran out of memory (RAM). Try fewer or smaller cases, a smaller patch "
                "size, or close other programs.")
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, (ValueError, FileNotFoundError, PermissionError)):
        return f"{what} failed: {msg or type(exc).__name__}"
    return f"{what} failed with an internal error ({type(exc).__name__}: {msg})."


def _picklable(obj: Any) -> Any:
    """``obj`` if it pickles, else its ``repr`` (never let a result object kill the stream)."""
    try:
        pickle.dumps(obj)
        return obj
    except Exception:  # noqa: BLE001 - any pickling failure
        return repr(obj)


def _child_main(fn: Callable[..., Any], args: tuple, kwargs: dict, stop_kwarg: str | None,
                stop: Any, out: Any, what: str, nice: int, num_threads: int | None,
                spill_dir: str | None = None) -> None:
    """Body of the child process: iterate the job, forward events, report the outcome."""
    if nice and hasattr(os, "nice"):
        try:
            os.nice(nice)
        except OSError:
            pass
    if num_threads:
        try:
            import torch

            torch.set_num_threads(num_threads)
        except Exception:  # noqa: BLE001 - torch absent: nothing to limit
            pass
    def send(tag: str, payload: Any) -> None:
        if spill_dir is not None:
            payload = spill_arrays(payload, spill_dir)
        out.put((tag, _picklable(payload)))

    def send_event(ev: Event) -> None:
        if spill_dir is not None:
            ev = spill_arrays(ev, spill_dir)
        if not _is_plain(ev.result) and not isinstance(ev.result, _SameAsReturn):
            ev.result = _picklable(ev.result)
        out.put((_EVENT, ev))

    held: Event | None = None  # a terminal event whose result may be the return value
    try:
        args, kwargs = restore_arrays(args), restore_arrays(kwargs)
        if stop_kwarg:
            kwargs = {**kwargs, stop_kwarg: stop.is_set}
        gen = fn(*args, **kwargs)
        if not isinstance(gen, Iterator):  # a plain function: its value is the result
            send(_RETURN, gen)
            return
        while True:
            try:
                ev = next(gen)
            except StopIteration as done:
                if held is not None:
                    if held.result is done.value:  # send the (large) result once
                        held = dataclasses.replace(held, result=_SameAsReturn())
                    send_event(held)
                    held = None
                send(_RETURN, done.value)
                return
            if isinstance(ev, Event):
                if held is not None:
                    send_event(held)
                    held = None
                if ev.kind in _TERMINAL and not _is_plain(ev.result):
                    held = ev
                else:
                    send_event(ev)
    except BaseException as exc:  # noqa: BLE001 - everything becomes one error message
        if held is not None:
            with contextlib.suppress(Exception):
                send_event(held)
        out.put((_ERROR, (describe_exception(exc, what), traceback.format_exc())))
    finally:
        # Make sure buffered messages reach the pipe before the process exits.
        out.close()
        out.join_thread()


def _is_plain(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, type(None)))


@contextlib.contextmanager
def _main_module_hidden(fn: Callable[..., Any]) -> Iterator[None]:
    """Keep 'spawn' from re-running the parent's ``__main__`` script in the child.

    A user script that opens napari without an ``if __name__ == "__main__"`` guard would
    otherwise open a second viewer inside the child. Jobs are functions of importable modules,
    so the child never needs the parent's main script (unless ``fn`` itself lives there).
    """
    main = sys.modules.get("__main__")
    if main is None or getattr(fn, "__module__", None) == "__main__":
        yield
        return
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    try:
        main.__dict__.pop("__file__", None)
        main.__dict__["__spec__"] = None
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


class ProcessJob:
    """A core generator job running in a child process.

    Parameters
    ----------
    fn : callable
        Importable top-level function (e.g. ``napari_medseg.training.train``) returning a
        generator of :class:`Event` whose return value is the job's result. A plain function is
        accepted too (its return value is the result).
    *args, **kwargs
        Arguments for ``fn``; must be picklable (paths, dataclasses, numpy arrays).
    stop_kwarg : str or None
        Name of the keyword through which the job receives its cancel check, a zero-argument
        callable returning True once :meth:`cancel` was called. None: do not pass one.
    what : str
        Subject used in error sentences, e.g. ``"Training"``.
    cancel_grace_s : float
        Seconds the job gets to stop by itself after :meth:`cancel` before it is terminated.
    nice : int
        Scheduling-priority increment for the child (POSIX); keeps the GUI responsive.
    num_threads : int or None
        If set, ``torch.set_num_threads`` in the child.

    Examples
    --------
    >>> job = ProcessJob(train, config, dataset=cases, out_dir=d, what="Training")  # doctest: +SKIP
    >>> for event in job.events():  # in a worker thread; job.cancel() from the GUI thread
    ...     print(event.kind)
    """

    def __init__(self, fn: Callable[..., Any], *args: Any, stop_kwarg: str | None = "should_stop",
                 what: str = "The job", cancel_grace_s: float = 20.0, nice: int = 10,
                 num_threads: int | None = None, **kwargs: Any) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.stop_kwarg = stop_kwarg
        self.what = what
        self.cancel_grace_s = float(cancel_grace_s)
        self.nice = int(nice)
        self.num_threads = num_threads
        self._ctx = mp.get_context("spawn")
        self._stop = self._ctx.Event()
        self._cancel_time: float | None = None
        self._process: mp.process.BaseProcess | None = None
        #: The job's return value once :meth:`events` has finished (None if it failed).
        self.result: Any = None
        #: Final traceback text of a failure inside the child (for logs, never shown as is).
        self.traceback: str | None = None

    # -- control --------------------------------------------------------------------------
    def cancel(self) -> None:
        """Ask the job to stop (thread-safe; returns at once). It is forced after the grace."""
        if self._cancel_time is None:
            self._cancel_time = time.monotonic()
        self._stop.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_time is not None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def is_alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    # -- streaming ------------------------------------------------------------------------
    def events(self, poll_s: float = 0.1, abandon: Callable[[], bool] | None = None
               ) -> Generator[Event, None, Any]:
        """Start the child and yield its events; returns the job's result.

        Never raises because of the job: failures, crashes and kills become one ``"error"``
        event (the last one). If the job ends without a ``"finished"``/``"cancelled"``/``"error"``
        event, one is synthesised so consumers always see a terminal event. Closing the generator
        early cancels and stops the child.

        Parameters
        ----------
        poll_s : float
            How often (s) the child's liveness, the cancel grace and ``abandon`` are checked
            while no event arrives.
        abandon : callable, optional
            Polled while waiting; once it returns True the job is cancelled with a short grace
            (3 s) and then stopped. Used when the host quits (napari's ``worker.quit()`` only
            takes effect between yields, and a job may stay silent for a while).
        """
        out = self._ctx.Queue()
        spill_dir = tempfile.mkdtemp(prefix="medseg-job-")
        terminal_seen, last_kind = False, ""
        waiting: Event | None = None  # terminal event waiting for the return value
        proc = None
        try:
            try:
                args = spill_arrays(self.args, spill_dir)
                kwargs = spill_arrays(self.kwargs, spill_dir)
                proc = self._ctx.Process(
                    target=_child_main,
                    args=(self.fn, args, kwargs, self.stop_kwarg, self._stop, out, self.what,
                          self.nice, self.num_threads, spill_dir),
                    name=f"medseg-{getattr(self.fn, '__name__', 'job')}",
                    daemon=True,
                )
                self._process = proc
                with _main_module_hidden(self.fn):
                    proc.start()
            except Exception as exc:  # noqa: BLE001 - e.g. arguments that do not pickle
                self.traceback = traceback.format_exc()
                yield Event("error", message=f"{self.what} could not start: {exc}",
                            level="error")
                return None
            while True:
                try:
                    tag, payload = out.get(timeout=poll_s)
                except queue.Empty:
                    if not proc.is_alive():
                        # The child may have exited right after its last message: drain once.
                        try:
                            tag, payload = out.get(timeout=1.0)
                        except queue.Empty:
                            proc.join(1.0)
                            if waiting is not None:  # died before its return value came
                                waiting.result = None
                                yield waiting
                            elif self.cancel_requested and proc.exitcode in (0, -15, -9):
                                yield Event("cancelled", message=f"{self.what} was cancelled.")
                            elif not terminal_seen:
                                yield Event("error", level="error",
                                            message=describe_exit(proc.exitcode, self.what))
                            return self.result
                    elif abandon is not None and not self.cancel_requested and abandon():
                        self.cancel_grace_s = min(self.cancel_grace_s, 3.0)
                        self.cancel()
                        continue
                    elif self._overdue():
                        self._force_stop(proc)
                        yield Event("cancelled", level="warning",
                                    message=f"{self.what} did not stop in time and was "
                                            "stopped forcibly; nothing new was saved.")
                        return None
                    else:
                        continue
                if tag == _EVENT:
                    payload = restore_arrays(payload)
                    if payload.kind in _TERMINAL:
                        terminal_seen, last_kind = True, payload.kind
                    if isinstance(payload.result, _SameAsReturn):
                        waiting = payload  # its result follows as the return value
                        continue
                    yield payload
                    if self._overdue():  # events keep coming although cancel was asked
                        self._force_stop(proc)
                        yield Event("cancelled", level="warning",
                                    message=f"{self.what} did not stop in time and was "
                                            "stopped forcibly; nothing new was saved.")
                        return None
                elif tag == _RETURN:
                    payload = restore_arrays(payload)
                    self.result = payload
                    if waiting is not None:
                        waiting.result = payload
                        yield waiting
                    elif not terminal_seen:
                        kind = "cancelled" if self.cancel_requested else "finished"
                        yield Event(kind, result=payload, message=f"{self.what} ended.")
                    self._finish(proc)
                    return payload
                elif tag == _ERROR:
                    message, self.traceback = payload
                    if waiting is not None:
                        waiting.result = None
                        yield waiting
                    if last_kind != "error":  # the job may have reported it already
                        yield Event("error", message=message, level="error",
                                    result={"traceback": self.traceback})
                    self._finish(proc)
                    return None
        finally:
            if proc is not None and proc.is_alive():
                self.cancel()
                proc.join(min(self.cancel_grace_s, 5.0))
                self._force_stop(proc)
            out.close()
            out.cancel_join_thread()
            shutil.rmtree(spill_dir, ignore_errors=True)

    def _finish(self, proc: mp.process.BaseProcess) -> None:
        """Let a child that has sent its outcome exit; stop it if its teardown drags on
        (PyTorch's can take seconds on a busy machine, and nothing is left to send)."""
        proc.join(1.0)
        self._force_stop(proc)

    def _overdue(self) -> bool:
        return (self._cancel_time is not None
                and time.monotonic() - self._cancel_time > self.cancel_grace_s)

    @staticmethod
    def _force_stop(proc: mp.process.BaseProcess) -> None:
        if proc.is_alive():
            proc.terminate()
            proc.join(3.0)
        if proc.is_alive():
            proc.kill()
            proc.join(3.0)


def run_in_process(fn: Callable[..., Any], *args: Any, **kwargs: Any
                   ) -> Generator[Event, None, Any]:
    """Shorthand: ``ProcessJob(fn, *args, **kwargs).events()`` (no handle for cancelling)."""
    return (yield from ProcessJob(fn, *args, **kwargs).events())


def describe_device(device: str = "auto") -> str:
    """Human-readable compute device that ``device`` resolves to, e.g. ``"GPU: NVIDIA H100"``.

    Meant to run **inside a child process** (``ProcessJob(describe_device, stop_kwarg=None)``):
    asking CUDA for a device name creates a CUDA context, which would hold GPU memory in the
    viewer's process for the rest of the session.

    Parameters
    ----------
    device : str
        ``"auto"``, ``"cuda"``, ``"mps"`` or ``"cpu"``.
    """
    import torch

    if device in ("auto", "cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return f"GPU: {props.name} ({props.total_memory / 2**30:.0f} GiB)"
    mps = getattr(torch.backends, "mps", None)
    if device in ("auto", "mps") and mps is not None and mps.is_available():
        return "GPU: Apple MPS"
    if device in ("cuda", "mps"):
        return f"{device.upper()} requested but not available on this computer"
    from napari_medseg.models.engine import cpu_has_native_bf16

    n = torch.get_num_threads()
    bf16 = ", bfloat16" if cpu_has_native_bf16() else ""
    return f"CPU ({n} thread{'s' if n != 1 else ''}{bf16})"
