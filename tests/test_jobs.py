"""Tests for napari_medseg.jobs: events stream from a child process, cancel, crashes."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from napari_medseg.events import Event
from napari_medseg.jobs import ProcessJob, describe_exception, describe_exit, run_in_process

# --- jobs run in the child (top-level so that 'spawn' can import them) ---------------------


def count_job(n, should_stop=None):
    yield Event("start", total=n, message=f"counting to {n}")
    for i in range(n):
        yield Event("step", step=i + 1, total=n, loss=1.0 / (i + 1))
    yield Event("finished", result={"count": n, "pid": os.getpid()})
    return {"count": n, "pid": os.getpid()}


def until_stopped_job(should_stop):
    yield Event("start", message="looping")
    i = 0
    while not should_stop():
        i += 1
        yield Event("step", step=i)
        time.sleep(0.02)
    yield Event("cancelled", message="stopped at user request", result={"steps": i})
    return {"steps": i}


def stubborn_job(should_stop):
    yield Event("start", message="ignores cancel")
    while True:
        time.sleep(0.05)


def exit_job(code, should_stop=None):
    yield Event("start")
    sys.stdout.flush()
    os._exit(code)


def raising_job(exc, should_stop=None):
    yield Event("start")
    raise exc


def sigkill_job(should_stop=None):
    yield Event("start")
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(5)


def unpicklable_result_job(should_stop=None):
    yield Event("finished", result=lambda: 1)
    return lambda: 2


def plain_function(x, should_stop=None):
    return x * 2


# --- tests ------------------------------------------------------------------------------


def _collect(job: ProcessJob):
    gen = job.events()
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return events, stop.value


def test_events_stream_in_order_and_result_returned():
    job = ProcessJob(count_job, 5, what="Counting")
    events, result = _collect(job)
    assert [e.kind for e in events] == ["start"] + ["step"] * 5 + ["finished"]
    assert [e.step for e in events if e.kind == "step"] == [1, 2, 3, 4, 5]
    assert result["count"] == 5
    assert result["pid"] != os.getpid(), "the job must run in another process"
    assert job.result == result
    assert not job.is_alive()


def test_run_in_process_shorthand_and_plain_function():
    events = list(run_in_process(count_job, 2))
    assert events[-1].kind == "finished"
    job = ProcessJob(plain_function, 21)
    events, result = _collect(job)
    assert result == 42
    assert [e.kind for e in events] == ["finished"]


def test_cancel_is_cooperative_first():
    job = ProcessJob(until_stopped_job, what="Training")
    kinds = []
    for ev in job.events():
        kinds.append(ev.kind)
        if kinds.count("step") == 3:
            job.cancel()
    assert kinds[-1] == "cancelled"
    assert job.result["steps"] >= 3
    assert not job.is_alive()


def test_cancel_forces_a_stubborn_job():
    job = ProcessJob(stubborn_job, what="Training", cancel_grace_s=0.5)
    t0 = time.monotonic()
    events = []
    for ev in job.events():
        events.append(ev)
        if ev.kind == "start":
            job.cancel()
    assert events[-1].kind == "cancelled"
    assert "forcibly" in events[-1].message
    assert not job.is_alive()
    assert time.monotonic() - t0 < 30


def test_closing_the_generator_stops_the_child():
    job = ProcessJob(stubborn_job, cancel_grace_s=0.5)
    gen = job.events()
    assert next(gen).kind == "start"
    pid = job.pid
    gen.close()
    assert not job.is_alive()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.parametrize("code", [3, 1])
def test_child_exit_becomes_error_event(code):
    job = ProcessJob(exit_job, code, what="Training")
    events, result = _collect(job)
    assert result is None
    assert events[-1].kind == "error"
    assert "exit" in events[-1].message and str(code) in events[-1].message
    assert "labels are unchanged" in events[-1].message


def test_child_killed_mentions_memory():
    job = ProcessJob(sigkill_job, what="Training")
    events, _ = _collect(job)
    assert events[-1].kind == "error"
    assert "out of memory" in events[-1].message


def test_exception_becomes_one_sentence_with_traceback_kept():
    job = ProcessJob(raising_job, ValueError("The labels do not match the image shape."),
                     what="Training")
    events, _ = _collect(job)
    err = events[-1]
    assert err.kind == "error"
    assert err.message == "Training failed: The labels do not match the image shape."
    assert "Traceback" not in err.message
    assert "Traceback" in job.traceback and "raising_job" in job.traceback


def test_cuda_oom_gets_a_suggestion():
    exc = RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 GiB total)")
    job = ProcessJob(raising_job, exc, what="Training")
    events, _ = _collect(job)
    msg = events[-1].message
    assert events[-1].kind == "error"
    assert "GPU memory" in msg and "patch size" in msg and "CPU" in msg


def test_unpicklable_results_do_not_break_the_stream():
    job = ProcessJob(unpicklable_result_job)
    events, result = _collect(job)
    assert events[-1].kind == "finished"
    assert isinstance(events[-1].result, str) and "lambda" in events[-1].result
    assert isinstance(result, str)


def test_unpicklable_arguments_give_error_not_exception():
    job = ProcessJob(count_job, lambda: 3)
    events, result = _collect(job)
    assert result is None
    assert events[-1].kind == "error" and "could not start" in events[-1].message


@pytest.mark.parametrize(
    ("exitcode", "needle"),
    [(-9, "out of memory"), (-11, "segmentation fault"), (2, "exited with code 2"),
     (None, "did not respond")],
)
def test_describe_exit(exitcode, needle):
    assert needle in describe_exit(exitcode, "Training")


def test_describe_exception_kinds():
    assert "ran out of memory (RAM)" in describe_exception(MemoryError(), "Inference")
    assert describe_exception(KeyError("x"), "Inference").startswith(
        "Inference failed with an internal error (KeyError")


def test_describe_device_in_child_process():
    from napari_medseg.jobs import describe_device

    events, text = _collect(ProcessJob(describe_device, "cpu", stop_kwarg=None))
    assert text.startswith("CPU (") and "thread" in text
    events, text = _collect(ProcessJob(describe_device, "auto", stop_kwarg=None))
    assert text.startswith(("CPU (", "GPU: "))


def reports_then_raises_job(should_stop=None):
    yield Event("error", message="The dataset folder has no dataset.json.", level="error")
    raise ValueError("The dataset folder has no dataset.json.")


def test_error_reported_by_the_job_is_not_repeated():
    job = ProcessJob(reports_then_raises_job, what="Training")
    events, result = _collect(job)
    assert [e.kind for e in events] == ["error"]
    assert events[0].message == "The dataset folder has no dataset.json."
    assert "ValueError" in job.traceback


def cuda_hold_job(megabytes, should_stop):
    import torch

    block = torch.empty(megabytes * 2**20, dtype=torch.uint8, device="cuda")
    yield Event("message", message="allocated",
                metrics={"allocated_mb": torch.cuda.memory_allocated() / 2**20})
    while not should_stop():
        time.sleep(0.05)
    yield Event("cancelled", message=f"held {block.numel() // 2**20} MB")
    # no cleanup on purpose: the process exit must release everything


def test_gpu_memory_is_released_when_the_child_ends():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine")
    free_before, _ = torch.cuda.mem_get_info()
    job = ProcessJob(cuda_hold_job, 1024, what="GPU test")
    gen = job.events()
    ev = next(gen)
    assert ev.metrics["allocated_mb"] >= 1024
    free_during, _ = torch.cuda.mem_get_info()
    assert free_before - free_during >= 1024 * 2**20
    job.cancel()
    assert [e.kind for e in gen] == ["cancelled"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        free_after, _ = torch.cuda.mem_get_info()
        if free_before - free_after < 64 * 2**20:
            break
        time.sleep(0.2)
    assert free_before - free_after < 64 * 2**20, "GPU memory still held after the job ended"
    assert torch.cuda.memory_allocated() == 0  # the viewer's process never held any


def test_abandon_stops_a_silent_child_quickly():
    job = ProcessJob(stubborn_job, what="Training", cancel_grace_s=60)
    flag = {"quit": False}
    t0 = time.monotonic()
    kinds = []
    for ev in job.events(abandon=lambda: flag["quit"]):
        kinds.append(ev.kind)
        flag["quit"] = True  # the host quits right after the first event
    assert kinds == ["start", "cancelled"]
    assert time.monotonic() - t0 < 30  # 3 s grace, not the 60 s configured
    assert not job.is_alive()


def big_array_job(shape, scale, should_stop=None):
    import numpy as np

    data = np.full(shape, scale, dtype=np.float32)
    result = {"array": data, "sum": float(data.sum()), "pid": os.getpid()}
    yield Event("finished", result=result)
    return result


def echo_array_job(volume, should_stop=None):
    import numpy as np

    yield Event("start")
    return {"sum": float(np.asarray(volume.array, dtype=np.float64).sum()),
            "shape": volume.array.shape}


def test_large_arrays_travel_through_files_and_come_back_once(tmp_path, monkeypatch):
    """A 32 MB result: same values, delivered once (the terminal event and the return value
    are one object), and the spill folder is removed afterwards."""
    import tempfile

    import numpy as np

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    job = ProcessJob(big_array_job, (200, 200, 200), 2.5, what="Big")
    events, result = _collect(job)
    assert [e.kind for e in events] == ["finished"]
    assert events[-1].result is result
    assert result["array"].shape == (200, 200, 200) and np.all(result["array"] == 2.5)
    assert result["pid"] != os.getpid()
    assert list(tmp_path.iterdir()) == []  # spill files and folder gone


def test_large_arguments_reach_the_child_intact():
    import numpy as np

    from napari_medseg.io import Volume

    array = np.arange(100 * 128 * 128, dtype=np.int32).reshape(100, 128, 128)
    volume = Volume(array, (2.0, 1.0, 1.0))
    events, result = _collect(ProcessJob(echo_array_job, volume, what="Echo"))
    assert result == {"sum": float(array.astype(np.float64).sum()), "shape": (100, 128, 128)}
    assert volume.array is array  # the caller's objects are not changed


def test_spill_and_restore_leave_small_values_and_originals_alone(tmp_path):
    import numpy as np

    from napari_medseg.jobs import restore_arrays, spill_arrays

    big = np.ones((1024, 1024, 2), np.float32)  # 8 MB
    obj = {"big": big, "small": np.zeros(3), "list": [big, 1], "text": "x"}
    spilled = spill_arrays(obj, str(tmp_path))
    assert spilled["small"] is obj["small"] and spilled["text"] == "x"
    assert not isinstance(spilled["big"], np.ndarray) and obj["big"] is big
    assert len(list(tmp_path.iterdir())) == 2
    back = restore_arrays(spilled)
    np.testing.assert_array_equal(back["big"], big)
    np.testing.assert_array_equal(back["list"][0], big)
    assert list(tmp_path.iterdir()) == []
