"""Hippocampus training benchmark: napari-medseg vs the MONAI-tutorial baseline, same budget.

Both methods train on the same cases (the first N of ``splits_suggested.json``'s train list) for
the same wall-clock budget on this machine, keep their best checkpoint by validation Dice on the
split's 40 validation cases, and are then scored on those cases on the original voxel grid
(per-class Dice, anterior and posterior, averaged over cases; napari_medseg.metrics.dice).

Scenarios of issue 3::

    OMP_NUM_THREADS=2 python benchmarks/bench_training.py --scenario full   # 180 cases, 600 s
    OMP_NUM_THREADS=2 python benchmarks/bench_training.py --scenario few    # 5 cases, 300 s
    OMP_NUM_THREADS=2 python benchmarks/bench_training.py --budget-s 20 --n-train 5 --n-val 5  # smoke

Prints a Markdown table (paste into BENCHMARKS.md) and writes JSON with ``--json-out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baseline_monai import DEFAULT_DATA, predict_baseline, train_baseline  # noqa: E402

SCENARIOS = {"full": {"n_train": 180, "budget_s": 600.0}, "few": {"n_train": 5, "budget_s": 300.0}}


def _scores(preds, labels) -> dict[str, float]:
    from napari_medseg.metrics import dice

    ant = [dice(p == 1, g == 1) for p, g in zip(preds, labels, strict=True)]
    post = [dice(p == 2, g == 2) for p, g in zip(preds, labels, strict=True)]
    return {"anterior": float(np.mean(ant)), "posterior": float(np.mean(post)),
            "mean": float((np.mean(ant) + np.mean(post)) / 2)}


def _overrides(pairs) -> dict:
    """``--set key=value`` pairs -> TrainConfig keyword arguments (values parsed as JSON)."""
    out = {}
    for pair in pairs or []:
        key, _, value = pair.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def run_ours(ds, train_ids, val_ids, budget_s, args, log) -> dict:
    from napari_medseg.inference import load_model, predict_volume
    from napari_medseg.training import TrainConfig, train

    cfg = TrainConfig(time_budget_s=budget_s, val_case_ids=list(val_ids), seed=args.seed,
                      device="cpu", batch_size=args.batch_size, learning_rate=args.lr,
                      base_channels=args.base_channels, steps_per_epoch=args.steps_per_epoch,
                      architecture=args.architecture, **_overrides(args.set))
    subset = ds.subset(list(train_ids) + list(val_ids))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = None
        for event in train(cfg, subset, Path(tmp) / "model"):
            if event.kind == "epoch":
                log(f"ours epoch {event.epoch} step {event.step} loss {event.loss:.4f} "
                    f"val Dice {event.metrics.get('dice_mean', float('nan')):.4f}")
            elif event.kind in ("finished", "cancelled"):
                result = event.result
        train_s = time.perf_counter() - t0
        loaded = load_model(Path(tmp) / "model")
        by_id = {c.case_id: c for c in subset.cases}
        t1 = time.perf_counter()
        preds = [predict_volume(loaded, by_id[c].image, tta=not args.no_tta, device="cpu",
                                return_probabilities=False).labels for c in val_ids]
        eval_s = time.perf_counter() - t1
        if args.keep_model:
            import shutil

            shutil.copytree(Path(tmp) / "model", args.keep_model, dirs_exist_ok=True)
    return {"method": "napari-medseg", **_scores(preds, [by_id[c].labels for c in val_ids]),
            "steps": result.steps, "epochs": result.epochs, "train_s": round(train_s, 1),
            "eval_s": round(eval_s, 1), "best_val_dice_during_training": result.best_metric,
            "tta": not args.no_tta}


def run_baseline(ds, train_ids, val_ids, budget_s, args, log) -> dict:
    by_id = {c.case_id: c for c in ds.cases}
    t0 = time.perf_counter()
    model, stats = train_baseline([by_id[c].image.array for c in train_ids],
                                  [by_id[c].labels for c in train_ids],
                                  [by_id[c].image.array for c in val_ids],
                                  [by_id[c].labels for c in val_ids], budget_s, args.seed, log=log)
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    preds = [predict_baseline(model, by_id[c].image.array) for c in val_ids]
    eval_s = time.perf_counter() - t1
    return {"method": "MONAI baseline", **_scores(preds, [by_id[c].labels for c in val_ids]),
            "steps": stats["iterations"], "epochs": stats["epochs"], "train_s": round(train_s, 1),
            "eval_s": round(eval_s, 1), "best_val_dice_during_training": stats["best_val_dice"]}


def main() -> None:
    ap = argparse.ArgumentParser(description="napari-medseg vs MONAI baseline (hippocampus)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--scenario", choices=sorted(SCENARIOS), default=None)
    ap.add_argument("--budget-s", type=float, default=None)
    ap.add_argument("--n-train", type=int, default=None)
    ap.add_argument("--n-val", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=["both", "ours", "baseline"], default="both")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the engine's choice")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--base-channels", type=int, default=16)
    ap.add_argument("--steps-per-epoch", type=int, default=50)
    ap.add_argument("--architecture", default="unet")
    ap.add_argument("--no-tta", action="store_true")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="any other TrainConfig field for ours, e.g. --set augmentation=light")
    ap.add_argument("--json-out", type=Path, default=None)
    ap.add_argument("--keep-model", type=Path, default=None,
                    help="copy our trained model directory here")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    preset = SCENARIOS.get(args.scenario, {"n_train": 5, "budget_s": 20.0})
    n_train = args.n_train or preset["n_train"]
    budget = args.budget_s or preset["budget_s"]
    torch.set_num_threads(args.threads)

    from napari_medseg.dataset import load_msd_dataset, read_splits

    train_ids, val_ids = read_splits(args.data / "splits_suggested.json")
    train_ids, val_ids = train_ids[:n_train], val_ids[: args.n_val]
    ds = load_msd_dataset(args.data, train_ids + val_ids)

    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    rows = []
    if args.only in ("both", "baseline"):
        rows.append(run_baseline(ds, train_ids, val_ids, budget, args, log))
    if args.only in ("both", "ours"):
        rows.append(run_ours(ds, train_ids, val_ids, budget, args, log))
    info = {"budget_s": budget, "n_train": len(train_ids), "n_val": len(val_ids),
            "threads": args.threads, "seed": args.seed, "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print(f"\nHippocampus, {len(train_ids)} training cases, {budget:.0f} s budget, "
          f"{len(val_ids)} validation cases, {args.threads} threads")
    print("| method | Dice anterior | Dice posterior | mean | steps | train s | eval s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['anterior']:.4f} | {r['posterior']:.4f} | {r['mean']:.4f} | "
              f"{r['steps']} | {r['train_s']} | {r['eval_s']} |")
    if args.json_out:
        args.json_out.write_text(json.dumps({"info": info, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
