"""MONAI-tutorial-style baseline for the hippocampus benchmark (issue 3, "Targets").

What a MONAI tutorial would do (``3d_segmentation/spleen_segmentation_3d``), adapted to the tiny
hippocampus crops: per-volume z-score (``NormalizeIntensity``), whole volumes zero-padded to
48x64x48 (divisible by 16) in batches of 4, random flips on every axis, a 3D MONAI ``UNet``
(channels 16-256, strides 2, 2 residual units, batch norm), ``DiceCELoss`` (softmax, one-hot
target), Adam at 1e-3, validation with ``sliding_window_inference`` + ``DiceMetric`` every
``val_every`` iterations keeping the best weights, and a wall-clock budget.

Run alone::

    OMP_NUM_THREADS=2 python benchmarks/baseline_monai.py --budget-s 60 --n-train 5
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

PAD_SHAPE = (48, 64, 48)
DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "Task04_Hippocampus"


def zscore(image: np.ndarray) -> np.ndarray:
    """Per-volume z-score (MONAI ``NormalizeIntensity`` with default arguments)."""
    image = image.astype(np.float32)
    return (image - image.mean()) / max(float(image.std()), 1e-8)


def pad_to(array: np.ndarray, shape: Sequence[int] = PAD_SHAPE) -> np.ndarray:
    """Centre zero-padding (MONAI ``SpatialPad``, method symmetric)."""
    pads = []
    for n, target in zip(array.shape, shape, strict=True):
        extra = max(target - n, 0)
        pads.append((extra // 2, extra - extra // 2))
    return np.pad(array, pads)


def build_baseline_network() -> torch.nn.Module:
    from monai.networks.layers import Norm
    from monai.networks.nets import UNet

    return UNet(spatial_dims=3, in_channels=1, out_channels=3, channels=(16, 32, 64, 128, 256),
                strides=(2, 2, 2, 2), num_res_units=2, norm=Norm.BATCH)


def predict_baseline(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    """Arg-max labels of one raw image (Z, Y, X) on its own grid."""
    from monai.inferers import sliding_window_inference

    model.eval()
    x = torch.from_numpy(zscore(image))[None, None]
    with torch.no_grad():
        logits = sliding_window_inference(x, PAD_SHAPE, 4, model)
    return logits.argmax(1)[0].numpy().astype(np.uint8)


def _val_dice(model, images, labels) -> float:
    from napari_medseg.metrics import dice

    scores = []
    for img, lab in zip(images, labels, strict=True):
        pred = predict_baseline(model, img)
        scores.append(np.mean([dice(pred == c, lab == c) for c in (1, 2)]))
    return float(np.mean(scores))


def train_baseline(
    train_images: Sequence[np.ndarray],
    train_labels: Sequence[np.ndarray],
    val_images: Sequence[np.ndarray],
    val_labels: Sequence[np.ndarray],
    budget_s: float,
    seed: int = 0,
    batch_size: int = 4,
    val_every: int = 50,
    log=print,
) -> tuple[torch.nn.Module, dict]:
    """Train the baseline for ``budget_s`` wall-clock seconds; returns (best model, stats)."""
    from monai.losses import DiceCELoss

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    images = torch.from_numpy(np.stack([pad_to(zscore(i)) for i in train_images]))[:, None]
    labels = torch.from_numpy(np.stack([pad_to(lab.astype(np.int64)) for lab in train_labels]))[:, None]
    model = build_baseline_network()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    best, best_state, it, epoch, val_time, step_time = -1.0, None, 0, 0, 0.0, 0.0
    history = []
    done = False
    while not done:
        epoch += 1
        order = rng.permutation(len(images))
        for start in range(0, len(order), batch_size):
            # same rule as napari-medseg: leave time for one last validation inside the budget
            if time.perf_counter() - t0 + 1.2 * val_time + step_time > budget_s:
                done = True
                break
            ts = time.perf_counter()
            idx = order[start:start + batch_size]
            x, y = images[idx].clone(), labels[idx].clone()
            for b in range(len(idx)):  # RandFlipd(prob=0.5) on each spatial axis
                for axis in (1, 2, 3):
                    if rng.random() < 0.5:
                        x[b] = x[b].flip(axis)
                        y[b] = y[b].flip(axis)
            model.train()
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            it += 1
            step_time = time.perf_counter() - ts
            if it % val_every == 0 and val_images:
                tv = time.perf_counter()
                score = _val_dice(model, val_images, val_labels)
                val_time = time.perf_counter() - tv
                history.append({"iteration": it, "epoch": epoch, "val_dice": score,
                                "time_s": round(time.perf_counter() - t0, 1)})
                if score > best:
                    best, best_state = score, copy.deepcopy(model.state_dict())
                log(f"baseline it {it} epoch {epoch} loss {loss.item():.4f} val Dice {score:.4f}")
    if val_images:
        score = _val_dice(model, val_images, val_labels)
        if score > best:
            best, best_state = score, copy.deepcopy(model.state_dict())
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return model, {"iterations": it, "epochs": epoch, "best_val_dice": best, "history": history,
                   "elapsed_s": time.perf_counter() - t0}


def main() -> None:
    from napari_medseg.dataset import load_msd_dataset, read_splits

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--budget-s", type=float, default=60)
    ap.add_argument("--n-train", type=int, default=5)
    ap.add_argument("--n-val", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train_ids, val_ids = read_splits(args.data / "splits_suggested.json")
    train_ids, val_ids = train_ids[: args.n_train], val_ids[: args.n_val]
    ds = load_msd_dataset(args.data, train_ids + val_ids)
    by_id = {c.case_id: c for c in ds.cases}
    model, stats = train_baseline([by_id[i].image.array for i in train_ids],
                                  [by_id[i].labels for i in train_ids],
                                  [by_id[i].image.array for i in val_ids],
                                  [by_id[i].labels for i in val_ids], args.budget_s, args.seed)
    print(json.dumps({k: v for k, v in stats.items() if k != "history"}))


if __name__ == "__main__":
    main()
