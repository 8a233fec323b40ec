"""CHASE_DB1 retinal vessels on colour fundus photographs (issue 18, item 7).

Trains napari-medseg's engine from scratch (``train()`` with its default plan for the given
time budget, as ``napari-medseg train --time-budget-s`` does) on the fixed 20 training photos
(children 01-10, both eyes), predicts the other 8 (children 11-14) and reports, inside the field
of view, mean Dice, sensitivity, specificity and accuracy, with the optimisation steps done. The
MONAI-tutorial-style 2D U-Net of ``benchmarks/baseline_unet2d.py`` (random 128x128 patches,
batch 8, DiceCE, Adam 1e-3) gets the same wall-clock budget and the same test protocol.

The field of view (CHASE_DB1 ships none) is the photo's bright disc
(``napari_medseg.dataset.fundus.fundus_fov_mask``; a plain dark-border threshold where that is
missing); pixels outside it are excluded from our loss and from every metric.

Run (figures into BENCHMARKS.md with ``--write``; the target is a 10-minute CPU budget)::

    OMP_NUM_THREADS=2 python benchmarks/chase_db1.py --data ../shared/data/CHASE_DB1 \\
        --budget 600 --write

Quick comparisons on a busy machine: ``--budget 120 --n-train 8 --n-test 4``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
DEFAULT_DATA = REPO.parent / "shared" / "data" / "CHASE_DB1"
MARK_START = "<!-- chase_db1:start -->"
MARK_END = "<!-- chase_db1:end -->"
TRAIN_CHILDREN = range(1, 11)
TEST_CHILDREN = range(11, 15)


def fov_mask(rgb: np.ndarray, threshold: float = 0.1) -> np.ndarray:
    """Field of view of a fundus photo: the bright disc inside the dark border (bool (Y, X))."""
    from scipy import ndimage

    brightest = np.asarray(rgb, dtype=np.float32).max(axis=-1)
    mask = brightest > threshold * float(np.percentile(brightest, 99))
    mask = ndimage.binary_opening(mask, iterations=2)
    lab, n = ndimage.label(mask)
    if n > 1:
        sizes = ndimage.sum(mask, lab, range(1, n + 1))
        mask = lab == (int(np.argmax(sizes)) + 1)
    return ndimage.binary_fill_holes(mask)


def case_ids(children) -> list[str]:
    return [f"Image_{c:02d}{eye}" for c in children for eye in "LR"]


def load_case(data: Path, case_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rgb (Y, X, 3) uint8, vessels (Y, X) uint8 0/1, fov (Y, X) bool) of one photo."""
    from PIL import Image

    rgb = np.asarray(Image.open(data / "images" / f"{case_id}.jpg").convert("RGB"))
    vessels = (np.asarray(Image.open(data / "masks" / f"{case_id}_1stHO.png")) > 0)
    try:  # the documented helper, where this checkout has it
        from napari_medseg.dataset.fundus import fundus_fov_mask
    except ImportError:
        return rgb, vessels.astype(np.uint8), fov_mask(rgb)
    return rgb, vessels.astype(np.uint8), np.asarray(fundus_fov_mask(rgb), dtype=bool)


def scores(pred: np.ndarray, truth: np.ndarray, fov: np.ndarray) -> dict[str, float]:
    """Dice, sensitivity, specificity, accuracy of the vessel class inside the FOV."""
    from napari_medseg.metrics import dice, sensitivity, specificity

    p, t = pred[fov] == 1, truth[fov] == 1
    return {"dice": dice(p, t), "sensitivity": sensitivity(p, t),
            "specificity": specificity(p, t), "accuracy": float(np.mean(p == t))}


def run_ours(train_cases, test_cases, budget: float, seed: int, log=print,
             val_fraction: float | None = None, tta: bool = False,
             local_contrast: str = "auto") -> dict:
    """Train napari-medseg's engine (default plan) and score it on ``test_cases``.

    ``val_fraction`` None = the engine's default split; ``tta`` = mirror test-time augmentation.
    """
    from pictures2d import _log_event

    from napari_medseg.cycle import run_to_end
    from napari_medseg.dataset.msd import Case
    from napari_medseg.inference.predict import predict_volume
    from napari_medseg.io.volume import Volume
    from napari_medseg.training import TrainConfig, train

    cases = [Case(cid, Volume(rgb, name=cid, rgb=True), vessels, fov)
             for cid, (rgb, vessels, fov) in train_cases.items()]
    extra = {} if val_fraction is None else {"val_fraction": val_fraction}
    config = TrainConfig(time_budget_s=budget, device="cpu", seed=seed,
                         label_names={0: "background", 1: "vessel"}, task_name="CHASE_DB1",
                         local_contrast=local_contrast, **extra)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = run_to_end(train(config, cases, Path(tmp) / "model"),
                            lambda e: _log_event(e, log))
        train_s = time.perf_counter() - t0
        from napari_medseg.models.card import read_card

        card = read_card(result.model_dir)
        per_case, t1 = {}, time.perf_counter()
        for cid, (rgb, vessels, fov) in test_cases.items():
            pred = predict_volume(result.model_dir, Volume(rgb, name=cid, rgb=True),
                                  device="cpu", return_probabilities=False, tta=tta)
            per_case[cid] = scores(np.asarray(pred.labels), vessels, fov)
        predict_s = (time.perf_counter() - t1) / max(len(test_cases), 1)
    return {"steps": result.steps, "epochs": result.epochs, "train_s": train_s,
            "predict_s_per_image": predict_s, "patch": card.patch_size,
            "batch": card.train_config.get("batch_size"), "per_case": per_case,
            "validation_cases": len(card.validation_cases),
            "local_contrast": bool(card.normalisation[0].get("local_contrast", False))}


def run_baseline(train_cases, test_cases, budget: float, seed: int, log=print) -> dict:
    """Train the MONAI-tutorial baseline for the same budget and score it."""
    import torch
    from baseline_unet2d import predict_baseline, train_baseline

    torch.manual_seed(seed)
    t0 = time.perf_counter()
    model, stats = train_baseline([c[0] for c in train_cases.values()],
                                  [c[1] for c in train_cases.values()], budget, seed, log)
    train_s = time.perf_counter() - t0
    per_case, t1 = {}, time.perf_counter()
    for cid, (rgb, vessels, fov) in test_cases.items():
        per_case[cid] = scores(predict_baseline(model, rgb), vessels, fov)
    predict_s = (time.perf_counter() - t1) / max(len(test_cases), 1)
    return {"steps": stats["iterations"], "train_s": train_s, "predict_s_per_image": predict_s,
            "patch": [128, 128], "batch": 8, "per_case": per_case}


def summary(run: dict) -> dict[str, float]:
    keys = ("dice", "sensitivity", "specificity", "accuracy")
    return {k: float(np.mean([s[k] for s in run["per_case"].values()])) for k in keys}


def write_section(results: dict, args, path: Path = REPO / "BENCHMARKS.md") -> None:
    """Replace this benchmark's section of BENCHMARKS.md (create it if missing)."""
    import torch
    from bench_gui_latency import replace_section

    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        MARK_START,
        "## CHASE_DB1 retinal vessels (2D colour)",
        "",
        f"`python benchmarks/chase_db1.py --budget {args.budget:g} --write` — {when}. "
        f"Machine: {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}.",
        "",
        f"Trained from scratch on CHASE_DB1 children 01-10 ({args.n_train} photos, 999x960 "
        f"RGB), tested on children 11-14 ({args.n_test} photos); metrics of the vessel class "
        "inside the field of view (bright disc of each photo), mean over test photos. Same "
        "wall-clock budget for both (data preparation and planning included). Target: "
        "napari-medseg Dice >= baseline + 0.03 and >= 0.78.",
        "",
        "| model | patch | batch | steps | Dice | sensitivity | specificity | accuracy "
        "| predict s/photo |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ours_name = "napari-medseg (default plan" + (
        ", local contrast)" if results.get("ours", {}).get("local_contrast") else ")")
    names = {"ours": ours_name,
             "baseline": "MONAI-tutorial 2D U-Net (128², batch 8)"}
    for key, run in results.items():
        s = summary(run)
        patch = "x".join(str(p) for p in run["patch"])
        lines.append(f"| {names[key]} | {patch} | {run['batch']} | {run['steps']} "
                     f"| {s['dice']:.4f} | {s['sensitivity']:.4f} | {s['specificity']:.4f} "
                     f"| {s['accuracy']:.4f} | {run['predict_s_per_image']:.1f} |")
    if "ours" in results:
        lines += ["", f"napari-medseg held out {results['ours']['validation_cases']} of the "
                  "training photos for validation (its default split); the baseline trains on "
                  "all of them and keeps its last weights."]
    if args.note:
        lines += ["", f"Notes: {args.note}"]
    lines.append(MARK_END)
    replace_section(lines, MARK_START, MARK_END, path)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--budget", type=float, default=600, help="wall-clock seconds per model")
    ap.add_argument("--only", choices=("both", "ours", "baseline"), default="both")
    ap.add_argument("--baseline", action="store_true",
                    help="(kept for compatibility: the baseline runs unless --only ours)")
    ap.add_argument("--n-train", type=int, default=20)
    ap.add_argument("--n-test", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--val-fraction", type=float, default=None,
                    help="our validation share (default: the engine's)")
    ap.add_argument("--tta", action="store_true", help="our predictions with mirror TTA")
    ap.add_argument("--local-contrast", default="auto", choices=("auto", "on", "off"),
                    help="our engine's local contrast equalisation (TrainConfig.local_contrast)")
    ap.add_argument("--json", type=Path, default=None, help="also write the raw figures here")
    ap.add_argument("--write", action="store_true", help="write the section of BENCHMARKS.md")
    ap.add_argument("--note", default="")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if not (args.data / "images").is_dir():
        raise SystemExit(f"CHASE_DB1 not found at {args.data}")
    train_ids = case_ids(TRAIN_CHILDREN)[: args.n_train]
    test_ids = case_ids(TEST_CHILDREN)[: args.n_test]
    train_cases = {c: load_case(args.data, c) for c in train_ids}
    test_cases = {c: load_case(args.data, c) for c in test_ids}
    results: dict[str, dict] = {}
    if args.only in ("both", "ours"):
        results["ours"] = run_ours(train_cases, test_cases, args.budget, args.seed,
                                   val_fraction=args.val_fraction, tta=args.tta,
                                   local_contrast=args.local_contrast)
    if args.only in ("both", "baseline"):
        results["baseline"] = run_baseline(train_cases, test_cases, args.budget, args.seed)
    for key, run in results.items():
        s = summary(run)
        print(f"{key:8s} patch {run['patch']} batch {run['batch']} steps {run['steps']:5d}  "
              + "  ".join(f"{k} {v:.4f}" for k, v in s.items())
              + f"  predict {run['predict_s_per_image']:.1f} s/photo", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))
    if args.write:
        write_section(results, args)
    return results


if __name__ == "__main__":
    main()
