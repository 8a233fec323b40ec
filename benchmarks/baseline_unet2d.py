"""MONAI-tutorial-style 2D U-Net baseline for colour pictures (issue 18, CHASE_DB1 benchmark).

What a MONAI 2D tutorial would do (``2d_segmentation/torch/unet_training_array``), adapted to
colour photographs: per-image intensity scaling to [0, 1] (``ScaleIntensity``), random 128x128
crops (``RandSpatialCrop``) in batches of 8, random 90-degree rotations and flips, a 2D MONAI
``UNet`` (channels 16-256, strides 2, 2 residual units), ``DiceCELoss`` (softmax, one-hot
target), Adam at 1e-3 for a fixed wall-clock budget (the last weights are kept: no validation
split, every training image is used), and prediction with ``sliding_window_inference`` (128x128
windows, batch 4).

Used by ``benchmarks/chase_db1.py``; run alone on any list of pictures::

    OMP_NUM_THREADS=2 python benchmarks/chase_db1.py --only baseline --budget 120
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

PATCH = (128, 128)
BATCH = 8


def scale_intensity(image: np.ndarray) -> np.ndarray:
    """(Y, X, C) or (Y, X) picture -> (C, Y, X) float32 in [0, 1] (MONAI ``ScaleIntensity``)."""
    x = np.asarray(image, dtype=np.float32)
    x = x[None] if x.ndim == 2 else np.moveaxis(x, -1, 0)
    lo, hi = float(x.min()), float(x.max())
    return np.ascontiguousarray((x - lo) / max(hi - lo, 1e-8))


def build_baseline_network(in_channels: int = 3, out_channels: int = 2) -> torch.nn.Module:
    """MONAI ``UNet`` as in the tutorials: channels (16, 32, 64, 128, 256), strides 2."""
    from monai.networks.nets import UNet

    return UNet(spatial_dims=2, in_channels=in_channels, out_channels=out_channels,
                channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2)


def _random_crop(rng: np.random.Generator, image: np.ndarray, labels: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """One random 128x128 crop (zero-padded when the picture is smaller), then a random
    90-degree rotation and flips (``RandRotate90``, ``RandFlip``)."""
    pads = [(0, max(p - n, 0)) for n, p in zip(labels.shape, PATCH, strict=True)]
    if any(p[1] for p in pads):
        image = np.pad(image, [(0, 0), *pads])
        labels = np.pad(labels, pads)
    y0 = int(rng.integers(0, labels.shape[0] - PATCH[0] + 1))
    x0 = int(rng.integers(0, labels.shape[1] - PATCH[1] + 1))
    img = image[:, y0:y0 + PATCH[0], x0:x0 + PATCH[1]]
    lab = labels[y0:y0 + PATCH[0], x0:x0 + PATCH[1]]
    k = int(rng.integers(4))
    img, lab = np.rot90(img, k, axes=(1, 2)), np.rot90(lab, k)
    for axis in (0, 1):
        if rng.random() < 0.5:
            img, lab = np.flip(img, axis + 1), np.flip(lab, axis)
    return np.ascontiguousarray(img), np.ascontiguousarray(lab)


def train_baseline(
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    budget_s: float,
    seed: int = 0,
    log: Callable[[str], None] = print,
    num_classes: int = 2,
) -> tuple[torch.nn.Module, dict]:
    """Train the baseline for ``budget_s`` wall-clock seconds.

    Parameters
    ----------
    images : sequence of np.ndarray
        Raw pictures, (Y, X, 3) colour or (Y, X) greyscale.
    labels : sequence of np.ndarray
        Integer labels (Y, X), 0 = background.
    budget_s : float
        Wall-clock limit (s), data preparation included.

    Returns
    -------
    model, stats : torch.nn.Module, dict
        The last weights (eval mode) and ``{"iterations", "elapsed_s", "last_loss"}``.
    """
    from monai.losses import DiceCELoss

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    data = [(scale_intensity(i), np.asarray(lab, dtype=np.int64)) for i, lab in
            zip(images, labels, strict=True)]
    model = build_baseline_network(data[0][0].shape[0], num_classes)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    it, step_time, loss = 0, 0.0, torch.zeros(())
    model.train()
    while time.perf_counter() - t0 + step_time < budget_s:
        ts = time.perf_counter()
        pairs = [_random_crop(rng, *data[int(rng.integers(len(data)))]) for _ in range(BATCH)]
        x = torch.from_numpy(np.stack([p[0] for p in pairs]))
        y = torch.from_numpy(np.stack([p[1] for p in pairs]))[:, None]
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        it += 1
        step_time = time.perf_counter() - ts
        if it % 200 == 0:
            log(f"baseline it {it} loss {loss.item():.4f} ({time.perf_counter() - t0:.0f} s)")
    model.eval()
    return model, {"iterations": it, "elapsed_s": time.perf_counter() - t0,
                   "last_loss": float(loss.detach())}


def predict_baseline(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    """Arg-max labels (Y, X) uint8 of one raw picture."""
    from monai.inferers import sliding_window_inference

    x = torch.from_numpy(scale_intensity(image))[None]
    with torch.no_grad():
        logits = sliding_window_inference(x, PATCH, 4, model)
    return logits.argmax(1)[0].numpy().astype(np.uint8)
