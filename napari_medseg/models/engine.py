"""Running a network: device choice, precision, and sliding-window probabilities with mirror
TTA (used by inference, by validation during training and by the job runner)."""

from __future__ import annotations

import functools
import itertools
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass

import torch

DEVICES = ("auto", "cpu", "cuda", "mps")


class InferenceCancelled(Exception):
    """Raised inside the sliding window once the caller's stop flag is set."""


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX, read from Linux).

    ``NAPARI_MEDSEG_CPU_BF16=0`` (or ``1``) overrides the detection. Without native support
    oneDNN emulates bfloat16, which is slower than float32, so mixed precision stays off.
    """
    forced = os.environ.get("NAPARI_MEDSEG_CPU_BF16", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def channels_last_format(dims: int) -> torch.memory_format:
    """Channels-last memory format for ``dims`` spatial axes (oneDNN's faster CPU layout)."""
    return torch.channels_last_3d if dims == 3 else torch.channels_last


def channels_last_pays(device: torch.device | str, dims: int,
                       amp_dtype: torch.dtype | None = None) -> bool:
    """Whether channels-last tensors speed up this network's steps on ``device``.

    On CPUs (oneDNN): 3D convolutions, float32 or bfloat16, run about 10 % faster with them;
    2D ones only in bfloat16: in float32 (AVX2, no native bfloat16) a 2D U-Net's training step
    took 11-16 % longer with them (128-256 px patches, batch 8) and a forward pass 20 % longer
    (``benchmarks/bench_train_step.py``). Other devices keep PyTorch's default layout.
    """
    if torch.device(device).type != "cpu":
        return False
    return dims == 3 or amp_dtype is torch.bfloat16


def autocast_dtype(device: torch.device | str, amp: bool) -> torch.dtype | None:
    """Mixed-precision type for ``torch.autocast`` on ``device``, or None for float32.

    CUDA: float16 (with a gradient scaler in training). CPU: bfloat16 where the CPU has it in
    hardware (about 1.5x faster training steps with oneDNN; weights, loss and optimiser stay
    float32). MPS: float32.
    """
    kind = torch.device(device).type
    if not amp:
        return None
    if kind == "cuda":
        return torch.float16
    if kind == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available, else Apple MPS, else CPU; explicit names are checked.

    Raises
    ------
    ValueError
        An explicitly requested device is not available on this machine.
    """
    if isinstance(device, torch.device):
        return device
    name = str(device).lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("CUDA was requested but no CUDA GPU is available; use --device cpu or auto.")
    if name == "mps" and not (getattr(torch.backends, "mps", None) is not None
                              and torch.backends.mps.is_available()):
        raise ValueError("Apple MPS was requested but is not available; use --device cpu or auto.")
    if name.split(":")[0] not in DEVICES:
        raise ValueError(f"Unknown device {device!r}; choose one of {', '.join(DEVICES)}.")
    return torch.device(name)


def mirror_axes_sets(spatial_dims: int, tta: bool,
                     mirror_axes: Sequence[int] | None = None) -> list[tuple[int, ...]]:
    """Tensor axes to flip for each TTA pass (``[()]`` without TTA); axes count from 2.

    ``mirror_axes``: the spatial axes (0-based) the model was trained to see mirrored (a
    model card's ``mirror_axes``); None = every axis.
    """
    if not tta:
        return [()]
    spatial = range(spatial_dims) if mirror_axes is None else sorted(set(mirror_axes))
    axes = [2 + int(a) for a in spatial]
    return [c for r in range(len(axes) + 1) for c in itertools.combinations(axes, r)]


def count_windows(spatial_shape: Sequence[int], roi_size: Sequence[int],
                  overlap: float = 0.25) -> int:
    """Number of sliding windows MONAI's ``sliding_window_inference`` runs on one image.

    Same rule as MONAI: an image smaller than the window is padded up to it; the step is
    ``int(roi * (1 - overlap))`` (at least 1); the last window is shifted back to end at the
    border.

    Parameters
    ----------
    spatial_shape : sequence of int
        Image size (voxels), without batch and channel axes.
    roi_size : sequence of int
        Window size.
    overlap : float
        Overlap fraction between neighbouring windows.
    """
    total = 1
    for size, roi in zip(spatial_shape, roi_size, strict=True):
        size, roi = max(int(size), int(roi)), int(roi)
        step = roi if roi == size else max(int(roi * (1 - overlap)), 1)
        total *= max(math.ceil((size - roi) / step), 0) + 1
    return total


def _watched(model: Callable[[torch.Tensor], torch.Tensor],
             should_stop: Callable[[], bool] | None,
             on_windows: Callable[[int], None] | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """``model`` wrapped to check ``should_stop`` before and count windows after each batch."""
    if should_stop is None and on_windows is None:
        return model

    def predictor(x: torch.Tensor) -> torch.Tensor:
        if should_stop is not None and should_stop():
            raise InferenceCancelled
        out = model(x)
        if on_windows is not None:
            on_windows(int(x.shape[0]))
        return out

    return predictor


#: Voxels one forward pass of sliding windows aims at: 2D windows of 128x128 go 8 at a time
#: (1.75 s instead of 2.05 s for a 999x960 photo on 2 CPU threads), 3D windows stay at 4.
WINDOW_BATCH_VOXELS = 2**17
MIN_WINDOW_BATCH, MAX_WINDOW_BATCH = 4, 16


def windows_per_batch(roi_size: Sequence[int]) -> int:
    """Sliding windows per forward pass for this window size (small windows batch more)."""
    n = WINDOW_BATCH_VOXELS // max(math.prod(int(r) for r in roi_size), 1)
    return int(min(max(n, MIN_WINDOW_BATCH), MAX_WINDOW_BATCH))


def sliding_window_passes(
    model: torch.nn.Module,
    image: torch.Tensor,
    roi_size: Sequence[int],
    tta: bool = False,
    overlap: float = 0.25,
    sw_batch_size: int | None = None,
    amp: bool = False,
    mirror_axes: Sequence[int] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_windows: Callable[[int], None] | None = None,
) -> Iterator[torch.Tensor]:
    """Yield the running mean of softmax probabilities after each mirror pass.

    Parameters
    ----------
    model : torch.nn.Module
        In eval mode, on the image's device.
    image : torch.Tensor
        ``(N, C, *spatial)`` normalised input (N = 1, or slices for a 2D model).
    roi_size : sequence of int
        Window size (the training patch size).
    tta : bool
        Average over mirror flips: every combination of ``mirror_axes`` (all axes: 8 passes
        in 3D, 4 in 2D; left-right only: 2).
    overlap : float
        Window overlap fraction; windows are blended with Gaussian weights.
    mirror_axes : sequence of int, optional
        Spatial axes (0-based) to mirror; None = every axis.
    should_stop : callable, optional
        Checked before every batch of windows; once true, :class:`InferenceCancelled` is raised
        (a cancel takes effect within one batch, not one whole pass).
    on_windows : callable, optional
        Called with the number of windows of each finished batch (progress).
    sw_batch_size : int, optional
        Windows per forward pass; None = :func:`windows_per_batch` of ``roi_size``.

    Yields
    ------
    torch.Tensor
        ``(N, classes, *spatial)`` float32 probabilities averaged over the passes so far.
    """
    from monai.inferers import sliding_window_inference

    flips = mirror_axes_sets(len(roi_size), tta, mirror_axes)
    if sw_batch_size is None:
        sw_batch_size = windows_per_batch(roi_size)
    predictor = _watched(model, should_stop, on_windows)
    total = None
    device_type = image.device.type
    use_amp = amp and device_type == "cuda"
    for k, axes in enumerate(flips, start=1):
        x = image.flip(axes) if axes else image
        with torch.inference_mode(), torch.autocast(device_type, enabled=use_amp):
            logits = sliding_window_inference(
                x, roi_size, sw_batch_size, predictor, overlap=overlap, mode="gaussian",
                padding_mode="constant", cval=0.0,
            )
            probs = torch.softmax(logits.float(), dim=1)
            if axes:
                probs = probs.flip(axes)
            total = probs if total is None else total.add_(probs)
            mean = total / k if k > 1 else total.clone()
        yield mean


def sliding_window_probabilities(
    model: torch.nn.Module,
    image: torch.Tensor,
    roi_size: Sequence[int],
    tta: bool = False,
    overlap: float = 0.25,
    sw_batch_size: int | None = None,
    amp: bool = False,
    should_stop: Callable[[], bool] | None = None,
    mirror_axes: Sequence[int] | None = None,
) -> torch.Tensor | None:
    """Run every pass of :func:`sliding_window_passes`; None if ``should_stop`` became true
    (checked before every batch of windows)."""
    probs = None
    try:
        for running_mean in sliding_window_passes(model, image, roi_size, tta, overlap,
                                                  sw_batch_size, amp, mirror_axes, should_stop):
            probs = running_mean
    except InferenceCancelled:
        return None
    return probs


@dataclass
class WindowProgress:
    """Where a sliding-window run stands: windows done of the total, seconds left."""

    done: int
    total: int
    eta_s: float | None


def sliding_window_with_progress(
    model: torch.nn.Module,
    image: torch.Tensor,
    roi_size: Sequence[int],
    tta: bool = False,
    overlap: float = 0.25,
    sw_batch_size: int | None = None,
    amp: bool = False,
    mirror_axes: Sequence[int] | None = None,
    should_stop: Callable[[], bool] | None = None,
    report_every_s: float = 0.5,
) -> Generator[WindowProgress, None, torch.Tensor | None]:
    """All passes of :func:`sliding_window_passes`, yielding progress while they run.

    MONAI's sliding window is one blocking call per pass (40 s on a large CT on a CPU), so it
    runs in a helper thread (PyTorch releases the GIL while it computes) and this generator
    reports the windows done about every ``report_every_s`` seconds and after each pass.

    Yields
    ------
    WindowProgress
        Windows done / total over all passes and an estimate of the seconds left.

    Returns
    -------
    torch.Tensor or None
        The mean probabilities after the last pass, or None when ``should_stop`` became true
        (checked before every batch of windows). Closing the generator stops the thread too.
    """
    n_passes = len(mirror_axes_sets(len(roi_size), tta, mirror_axes))
    total = count_windows(image.shape[2:], roi_size, overlap) * int(image.shape[0]) * n_passes
    counted = [0]
    closing = threading.Event()
    outcome: queue.Queue = queue.Queue()

    def stop() -> bool:
        return closing.is_set() or (should_stop is not None and bool(should_stop()))

    def count(n: int) -> None:
        counted[0] += n

    def run() -> None:
        try:
            probs = None
            for running_mean in sliding_window_passes(model, image, roi_size, tta, overlap,
                                                      sw_batch_size, amp, mirror_axes, stop,
                                                      count):
                probs = running_mean
                outcome.put(("pass", None))
            outcome.put(("done", probs))
        except InferenceCancelled:
            outcome.put(("cancelled", None))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            outcome.put(("error", exc))

    yield WindowProgress(0, total, None)  # the plan, before any work
    thread = threading.Thread(target=run, name="medseg-sliding-window", daemon=True)
    t0 = time.perf_counter()
    thread.start()
    try:
        while True:
            try:
                kind, value = outcome.get(timeout=report_every_s)
            except queue.Empty:
                kind, value = "tick", None
            if kind == "done":
                yield WindowProgress(total, total, 0.0)
                return value
            if kind == "cancelled":
                return None
            if kind == "error":
                raise value
            done = min(counted[0], total)
            if kind == "pass" and done == total:
                continue  # the last pass: "done" follows at once
            elapsed = time.perf_counter() - t0
            eta = elapsed / done * (total - done) if done else None
            yield WindowProgress(done, total, eta)
    finally:
        closing.set()  # the caller stopped iterating (or the run ended): end the thread too
        thread.join()
