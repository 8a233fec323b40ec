"""Validation during training: sliding-window Dice of the current weights on held-out cases."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from napari_medseg.metrics import annotated_dice, mean_dice_metrics
from napari_medseg.models.engine import (
    autocast_dtype,
    count_windows,
    sliding_window_probabilities,
)

#: Seconds of a validation window pixel / seconds of a training pixel (batch included): a
#: forward pass without gradients, plus blending. Measured 0.1-0.3 on a 2-core CPU for 2D
#: U-Nets; rounded up, so a budget is more often respected than overrun.
INFERENCE_COST_SHARE = 0.4


def _to_network_input(image: np.ndarray, dims: int) -> torch.Tensor:
    """(C, *S) array -> (1, C, Z, Y, X) for 3D models, (Z, C, Y, X) slices for 2D models."""
    t = torch.from_numpy(image)
    if dims == 3:
        return t[None]
    return t[None] if t.ndim == 3 else t.permute(1, 0, 2, 3).contiguous()


def validation_pixels(images: Sequence[np.ndarray], patch_size: Sequence[int], dims: int,
                      overlap: float = 0.25) -> float:
    """Pixels (voxels) the network sees when :func:`validate` scores ``images``: sliding
    windows times window size, summed over cases (and over the slices of a 2D model).

    ``images`` are (C, *S) arrays as :func:`validate` takes them. Multiplied by the measured
    seconds per training pixel and :data:`INFERENCE_COST_SHARE`, this estimates a
    validation's cost before it first runs (a time budget must be able to pay for it).
    """
    patch = tuple(int(p) for p in patch_size)
    total = 0.0
    for image in images:
        spatial = tuple(image.shape[1:])
        if dims == 2 and len(spatial) == 3:  # a volume scored slice by slice
            total += spatial[0] * count_windows(spatial[1:], patch, overlap) * np.prod(patch)
        elif dims == 3 and all(n <= p for n, p in zip(spatial, patch, strict=True)):
            total += float(np.prod(patch))  # one padded window (batched with others)
        else:
            total += count_windows(spatial, patch, overlap) * float(np.prod(patch))
    return float(total)


def estimate_validation_s(pixels: float, patch_size: Sequence[int], seconds_per_step: float,
                          batch_size: int) -> float:
    """Seconds :func:`validate` will likely take for ``pixels`` (:func:`validation_pixels`),
    from the measured time of one training step of ``batch_size`` patches of ``patch_size``
    (validation costs :data:`INFERENCE_COST_SHARE` of a training pixel)."""
    if pixels <= 0 or seconds_per_step <= 0:
        return 0.0
    per_pixel = seconds_per_step / (max(int(batch_size), 1) * float(np.prod(patch_size)))
    return float(pixels) * per_pixel * INFERENCE_COST_SHARE


def validate(
    model: torch.nn.Module,
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    patch_size: Sequence[int],
    dims: int,
    label_names: dict[int, str],
    device: torch.device,
    overlap: float = 0.25,
    amp: bool = False,
    batch_size: int = 8,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, float] | None:
    """Mean Dice per foreground class over validation cases (annotated voxels only).

    ``batch_size`` cases no larger than one window are evaluated per forward pass (0 = one
    sliding-window run per case; same result). ``should_stop`` is checked before every batch
    of cases and every batch of sliding windows: validation of many or large cases takes
    seconds, and a cancel must not wait for it.

    Returns ``{"dice_mean": ..., "dice/<class name>": ...}``, or None when ``should_stop``
    became true.
    """
    was_training = model.training
    model.eval()
    classes = [int(v) for v in label_names if int(v) != 0]
    per_case: list[dict[int, float] | None] = []
    preds: dict[int, np.ndarray] = {}
    patch = tuple(int(p) for p in patch_size)
    # 3D cases no larger than one window: pad symmetrically (as MONAI's sliding window does)
    # and run them in batches, far cheaper than one forward pass per case on a CPU
    small = [i for i, im in enumerate(images)
             if dims == 3 and batch_size > 0
             and all(n <= p for n, p in zip(im.shape[1:], patch, strict=True))]
    for start in range(0, len(small), max(batch_size, 1)):
        if should_stop is not None and should_stop():
            model.train(was_training)
            return None
        chunk = small[start:start + batch_size]
        batch, crops = [], []
        for i in chunk:
            pads, crop = [], []
            for n, p in zip(images[i].shape[1:], patch, strict=True):
                lo = (p - n) // 2
                pads.append((lo, p - n - lo))
                crop.append(slice(lo, lo + n))
            batch.append(np.pad(images[i], [(0, 0), *pads]))
            crops.append(tuple(crop))
        x = torch.from_numpy(np.stack(batch)).to(device)
        dtype = autocast_dtype(device, amp)
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype,
                                                    enabled=dtype is not None):
            logits = model(x)
        out = torch.argmax(logits, dim=1).cpu().numpy().astype(np.uint8)
        for k, i in enumerate(chunk):
            preds[i] = out[k][crops[k]]
    for i, (image, lab) in enumerate(zip(images, labels, strict=True)):
        if i in preds:
            pred = preds[i]
        else:
            x = _to_network_input(image, dims).to(device)
            probs = sliding_window_probabilities(model, x, patch_size, overlap=overlap, amp=amp,
                                                 should_stop=should_stop)
            if probs is None:
                model.train(was_training)
                return None
            pred = torch.argmax(probs, dim=1).cpu().numpy().astype(np.uint8)
            pred = pred[0] if dims == 3 or lab.ndim == 2 else pred
        per_case.append(annotated_dice(pred, lab, classes))  # None: nothing annotated
    model.train(was_training)
    return mean_dice_metrics(per_case, label_names)
