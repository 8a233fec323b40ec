"""Grow from seeds (training-free) from simulated scribbles, against region growing from a click.

Issue 16: "grow-from-seeds from simulated scribbles (a few strokes on 3 slices): Dice reported
vs strokes, and compared with region growing from one click". No model is trained.

Protocol, per labelled case of the evaluation set (default: the fixed validation split of
``--data``, as ``benchmarks/clicks.py``):

* scribbles (:func:`napari_medseg.interactive.scribbles.simulated_scribbles`): on ``k`` slices
  through the structures (the middle one first, then the quartiles), one stroke along the
  middle of each structure and one closed background stroke ``--ring-mm`` outside them; every
  structure is grown at once, with the Annotate dock's defaults
  (:func:`~napari_medseg.interactive.grow_from_seeds`, a box of 10 mm around the strokes);
  Dice per structure against the ground truth of the whole volume, for ``k = 1 .. --max-slices``;
* region growing from one click per structure (the Annotate dock's *Region grow*): flood fill
  from the structure's deepest interior voxel within a tolerance of ``f`` x the image's
  1st-99th percentile range, for each ``f`` of ``--tolerances``.

Strokes counted: one per structure and slice, plus one background stroke per slice.

Usage::

    OMP_NUM_THREADS=2 python benchmarks/seeds.py --data ../shared/data/Task04_Hippocampus --write

The last printed line is ``seeds_dice_at_1=X seeds_dice_at_3=X region_grow_best=X
p95_grow_ms=X`` (means over cases and structures; region_grow_best = the best tolerance's mean).
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


def _args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="MSD dataset folder")
    p.add_argument("--eval", type=Path, default=None,
                   help="MSD dataset whose labelled cases are evaluated (default: the "
                        "validation split of --data)")
    p.add_argument("--n-eval", type=int, default=None, help="only the first N cases")
    p.add_argument("--max-slices", type=int, default=3, help="scribbled slices, 1..N")
    p.add_argument("--axis", type=int, default=0, help="array axis the slices run along")
    p.add_argument("--ring-mm", type=float, default=3.0,
                   help="distance of the background stroke outside the structures")
    p.add_argument("--methods", default="random_walker,watershed")
    p.add_argument("--tolerances", default="0.02,0.05,0.1",
                   help="region-growing tolerances, fractions of the 1-99th percentile range")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0, help="split seed (no splits file)")
    p.add_argument("--write", action="store_true", help="write the figures to BENCHMARKS.md")
    p.add_argument("--note", default="", help="a paragraph written under the figures")
    return p.parse_args(argv)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _dice(pred: np.ndarray, truth: np.ndarray) -> float:
    total = int(pred.sum()) + int(truth.sum())
    return 1.0 if total == 0 else 2.0 * int((pred & truth).sum()) / total


def _cases(args):
    from clicks import _load_split

    from napari_medseg.dataset import load_msd_dataset

    if args.eval is not None:
        ds = load_msd_dataset(args.eval)
        cases = [c for c in ds.cases if c.labels is not None]
    else:
        _train, val = _load_split(args.data, args.seed)
        cases = load_msd_dataset(args.data, val).cases
    return cases[: args.n_eval] if args.n_eval else cases, \
        load_msd_dataset(args.data).label_names if args.eval is None else ds.label_names


def _n_strokes(seeds: np.ndarray, axis: int) -> int:
    """Strokes in simulated scribbles: one per seed value and slice it appears on."""
    planes = np.moveaxis(seeds, axis, 0).reshape(seeds.shape[axis], -1)
    return sum(int(np.unique(plane[plane > 0]).size) for plane in planes)


def _deepest(mask: np.ndarray, spacing) -> tuple[int, ...]:
    from scipy import ndimage

    depth = ndimage.distance_transform_edt(mask, sampling=spacing)
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(depth)), mask.shape))


def main(argv=None) -> None:
    args = _args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from napari_medseg.editing import region_grow
    from napari_medseg.interactive import grow_from_seeds
    from napari_medseg.interactive.scribbles import simulated_scribbles

    cases, names = _cases(args)
    classes = [v for v in sorted(names) if v > 0]
    methods = [m for m in args.methods.split(",") if m]
    tolerances = [float(t) for t in args.tolerances.split(",") if t]
    ks = list(range(1, args.max_slices + 1))
    seeds_dice = {m: {k: [] for k in ks} for m in methods}  # per structure
    strokes = {k: [] for k in ks}
    grow_ms: dict[str, list[float]] = {m: [] for m in methods}
    rg_dice = {t: [] for t in tolerances}
    rg_ms: list[float] = []
    t_start = time.perf_counter()
    for n, case in enumerate(cases):
        image = np.asarray(case.image.array, dtype=np.float32)
        truth = np.asarray(case.labels)
        spacing = tuple(float(s) for s in case.image.spacing)
        for k in ks:
            seeds = simulated_scribbles(truth, k, args.axis, spacing, args.ring_mm)
            strokes[k].append(_n_strokes(seeds, args.axis))
            for method in methods:
                t0 = time.perf_counter()
                grown = grow_from_seeds(image, seeds, spacing, method=method)
                grow_ms[method].append((time.perf_counter() - t0) * 1000)
                for v in classes:
                    seeds_dice[method][k].append(_dice(grown == v + 1, truth == v))
        lo, hi = np.percentile(image, [1, 99])
        for v in classes:
            mask = truth == v
            if not mask.any():
                continue
            click = _deepest(mask, spacing)
            for t in tolerances:
                t0 = time.perf_counter()
                region = region_grow(image, click, tolerance=t * float(hi - lo)) > 0
                rg_ms.append((time.perf_counter() - t0) * 1000)
                rg_dice[t].append(_dice(region, mask))
        _log(f"{n + 1}/{len(cases)} {case.case_id}: " + ", ".join(
            f"{m} k={k} {np.mean(seeds_dice[m][k][-len(classes):]):.3f}"
            for m in methods for k in (ks[0], ks[-1])))
    elapsed = time.perf_counter() - t_start

    rows = []
    for method in methods:
        for k in ks:
            d = seeds_dice[method][k]
            rows.append((f"grow from seeds ({method.replace('_', ' ')})",
                         f"{k} slice(s), {np.mean(strokes[k]):.1f} strokes",
                         float(np.mean(d)), float(np.median(d))))
    for t in tolerances:
        rows.append(("region grow from 1 click per structure",
                     f"tolerance {t:g} x (p99 - p1)", float(np.mean(rg_dice[t])),
                     float(np.median(rg_dice[t]))))
    lines = ["| method | strokes / setting | mean Dice | median Dice |", "|---|---|---:|---:|"]
    lines += [f"| {a} | {b} | {c:.4f} | {d:.4f} |" for a, b, c, d in rows]
    for line in lines:
        print(line)
    all_ms = [x for m in methods for x in grow_ms[m]]
    timing = ", ".join(f"{m.replace('_', ' ')} median {np.median(grow_ms[m]):.0f} ms / p95 "
                       f"{np.percentile(grow_ms[m], 95):.0f} ms" for m in methods)
    print(f"grow time per case: {timing}; region grow median {np.median(rg_ms):.1f} ms")
    main_method = methods[0]
    last = (f"seeds_dice_at_1={np.mean(seeds_dice[main_method][ks[0]]):.4f} "
            f"seeds_dice_at_{ks[-1]}={np.mean(seeds_dice[main_method][ks[-1]]):.4f} "
            f"region_grow_best={max(np.mean(v) for v in rg_dice.values()):.4f} "
            f"p95_grow_ms={np.percentile(all_ms, 95):.1f}")
    if args.write:
        from _report import write_section

        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        body = "\n".join([
            f"`python benchmarks/seeds.py --data {args.data.name} --max-slices "
            f"{args.max_slices}` - {now}, {platform.machine()}, {args.threads} threads, "
            f"{len(cases)} cases x {len(classes)} structures ({elapsed:.0f} s in all). "
            "No model: scribbles simulated from the ground truth (a stroke along the middle of "
            "each structure and a closed background stroke "
            f"{args.ring_mm:g} mm outside them, on 1..{args.max_slices} slices through the "
            "structures, middle first), all structures grown at once with the Annotate "
            "dock's defaults; Dice per structure over the whole volume.",
            "", *lines, "", "Time per grow (one case, every structure): " + timing + ".", "",
            f"Last line: `{last}`", *(["", args.note] if args.note else [])])
        write_section("Grow from seeds: simulated scribbles (issue 16)", body)
    print(last)


if __name__ == "__main__":
    main()
