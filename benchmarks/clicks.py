"""Interactive-segmentation benchmark: Dice after simulated clicks, NoC@85/90, click latency.

Protocol (issue 16, as in the interactive-segmentation literature): per case and structure,
Dice of the automatic result (0 clicks), then one simulated click at a time up to
``--max-clicks``: the first at the interior point farthest from the boundary of the largest
missed region, each next at the centre of the largest error region (positive for a missed
region, negative for a false one; distances in mm). NoC@85 / NoC@90 = clicks needed to reach
Dice 0.85 / 0.90 (20 when never). Clicks go through
:func:`napari_medseg.interactive.refine.refine_with_clicks` on top of the automatic result:
a model with click guidance channels uses them, any other model falls back to grow-from-seeds.

Usage::

    OMP_NUM_THREADS=2 python benchmarks/clicks.py --data ../shared/data/Task04_Hippocampus \\
        --n-train 5 --time-budget-s 300
    python benchmarks/clicks.py --data DATASET --model MODEL_DIR [--eval EVAL_DATASET]
    python benchmarks/clicks.py --data DATASET --n-train 3 --time-budget-s 20 --max-clicks 3 \\
        --n-eval 3                                                      # smoke run

The last printed line is
``dice_at_0=X dice_at_1=X dice_at_3=X dice_at_5=X noc85=X noc90=X p95_click_ms=X``
(means over cases and structures; with fewer clicks than 5, ``dice_at_k`` is the Dice after the
last click given).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch


def _args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="MSD dataset folder (training)")
    p.add_argument("--n-train", type=int, default=None,
                   help="training cases (first of the training split; default all)")
    p.add_argument("--time-budget-s", type=float, default=300.0,
                   help="training budget in seconds (CPU)")
    p.add_argument("--model", type=Path, default=None, help="evaluate this model; no training")
    p.add_argument("--eval", type=Path, default=None,
                   help="MSD dataset whose labelled cases are evaluated (default: the validation "
                        "split of --data)")
    p.add_argument("--max-clicks", type=int, default=20)
    p.add_argument("--n-eval", type=int, default=None, help="evaluate only the first N cases")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json-out", type=Path, default=None)
    p.add_argument("--previous-mask", choices=("yes", "no"), default=None,
                   help="train the click model with the previous-mask channel (default: the "
                        "library's choice, guidance_spec())")
    p.add_argument("--click-prior", type=float, default=None,
                   help="logit head start at a click (default: refine_with_clicks's)")
    p.add_argument("--click-prior-radius-mm", type=float, default=None,
                   help="radius of the click prior's Gaussians (default: the model's guidance "
                        "radius)")
    p.add_argument("--save-model", type=Path, default=None,
                   help="keep the trained click model in this folder (for --model later)")
    return p.parse_args(argv)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _load_split(data: Path, seed: int) -> tuple[list[str], list[str]]:
    """The fixed split (``splits_suggested.json`` when there is one), as benchmarks/loop.py."""
    from napari_medseg.dataset.msd import list_msd_cases, split_case_ids

    ids = [c[0] for c in list_msd_cases(data)]
    split_file = data / "splits_suggested.json"
    if split_file.is_file():
        split = json.loads(split_file.read_text())
        split = split[0] if isinstance(split, list) else split
        train = [c for c in split["train"] if c in set(ids)]
        val = [c for c in split["val"] if c in set(ids)]
        if train and val:
            return train, val
    return split_case_ids(ids, 0.2, seed)


def _train(args, train_ids: list[str], val_ids: list[str], out: Path) -> Path:
    from napari_medseg.dataset import load_msd_dataset
    from napari_medseg.interactive.guidance import guidance_spec
    from napari_medseg.training import TrainConfig, train

    extra = {}
    if "guidance" in {f.name for f in fields(TrainConfig)}:
        extra["guidance"] = guidance_spec() if args.previous_mask is None else \
            guidance_spec(previous_mask=args.previous_mask == "yes")
    else:
        _log("note: the training loop has no click-guidance option yet; training a normal "
             "model (clicks use the grow-from-seeds fallback)")
    ids = train_ids[: args.n_train] if args.n_train else train_ids
    ds = load_msd_dataset(args.data, ids + val_ids)
    cfg = TrainConfig(time_budget_s=args.time_budget_s, val_case_ids=list(val_ids),
                      seed=args.seed, device="cpu", **extra)
    result = None
    for event in train(cfg, ds, out):
        if event.kind == "epoch":
            _log(f"epoch {event.epoch} step {event.step} loss {event.loss:.4f} val Dice "
                 f"{event.metrics.get('dice_mean', float('nan')):.4f}")
        elif event.kind in ("finished", "cancelled"):
            result = event.result
    if result is None or result.model_dir is None:
        raise SystemExit("Training saved no model.")
    return out


def _evaluate(model_dir: Path, cases, label_names: dict[int, str], max_clicks: int,
              click_prior: float | None = None, prior_radius: float | None = None
              ) -> tuple[list[list[float]], list[float]]:
    from napari_medseg.inference import load_model, predict_volume
    from napari_medseg.interactive.clicks import simulate_session
    from napari_medseg.interactive.guidance import guidance_of
    from napari_medseg.interactive.refine import refine_with_clicks

    net, card = load_model(model_dir)
    _log(f"model {card.describe()}: "
         + ("click guidance channels" if guidance_of(card) else
            "no guidance channels (grow-from-seeds fallback for clicks)"))
    curves: list[list[float]] = []
    times_ms: list[float] = []
    for case in cases:
        auto = predict_volume((net, card), case.image, device="cpu",
                              return_probabilities=False).labels
        spacing = case.image.spacing
        for label in (v for v in label_names if v != 0):
            if not (case.labels == label).any():
                continue

            def predict_fn(image, clicks, label=label, auto=auto):
                if not clicks:
                    return auto == label
                t0 = time.perf_counter()
                extra = {} if click_prior is None else {"click_prior": click_prior}
                if prior_radius is not None:
                    extra["click_prior_radius_mm"] = prior_radius
                patch = refine_with_clicks(net, card, image, auto, label, clicks, **extra)
                out = auto.copy()
                if patch is not None:
                    patch.apply(out)
                times_ms.append((time.perf_counter() - t0) * 1000.0)
                return out == label

            dices = list(simulate_session(predict_fn, case.image, case.labels, label,
                                          max_clicks, spacing))
            curves.append(dices)
            _log(f"{case.case_id} label {label}: Dice " + " ".join(f"{d:.3f}" for d in dices))
    return curves, times_ms


def main(argv=None) -> None:
    args = _args(argv)
    torch.set_num_threads(args.threads)
    from napari_medseg.dataset import load_msd_dataset
    from napari_medseg.interactive.clicks import NOC_NEVER, noc

    train_ids, val_ids = _load_split(args.data, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or _train(args, train_ids, val_ids,
                                         args.save_model or Path(tmp) / "model")
        if args.eval is not None:
            eval_ds = load_msd_dataset(args.eval)
        else:
            eval_ds = load_msd_dataset(args.data, val_ids[: args.n_eval] if args.n_eval
                                       else val_ids)
        cases = [c for c in eval_ds.cases if c.labels is not None][: args.n_eval]
        curves, times_ms = _evaluate(model_dir, cases, eval_ds.label_names, args.max_clicks,
                                     args.click_prior, args.click_prior_radius_mm)
    if not curves:
        raise SystemExit("No labelled structure to evaluate.")
    arr = np.array(curves)

    def at(k: int) -> float:
        return float(arr[:, min(k, arr.shape[1] - 1)].mean())

    noc85 = float(np.mean([noc(c, 0.85, NOC_NEVER) for c in curves]))
    noc90 = float(np.mean([noc(c, 0.90, NOC_NEVER) for c in curves]))
    p95 = float(np.percentile(times_ms, 95)) if times_ms else 0.0
    summary = {"dice_at_0": at(0), "dice_at_1": at(1), "dice_at_3": at(3), "dice_at_5": at(5),
               "noc85": noc85, "noc90": noc90, "p95_click_ms": p95}
    if args.json_out:
        args.json_out.write_text(json.dumps({"summary": summary, "curves": curves,
                                             "click_ms": times_ms}, indent=2))
    print(f"{len(curves)} structures in {len(cases)} cases, up to {args.max_clicks} clicks; "
          f"mean Dice per click: " + " ".join(f"{v:.3f}" for v in arr.mean(0)))
    print(" ".join(f"{k}={v:.4f}" if k != "p95_click_ms" else f"{k}={v:.1f}"
                   for k, v in summary.items()))


if __name__ == "__main__":
    main()
