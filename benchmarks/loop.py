"""Simulated annotator: how good does the model get for how many corrected slices?

Protocol (any MSD-layout dataset)
---------------------------------
1. Seed: ``--k`` slices, fully annotated from the ground truth, in 2 training volumes (spread
   evenly through the structure), accepted as sparse cases in a new project; a first model is
   trained (from scratch, ``--retrain-budget-s``).
2. Each round: the current model predicts the next ``--volumes-per-round`` training volumes;
   the simulated annotator "corrects" the ``--m`` slices with the largest error against the
   ground truth (most wrong voxels; at most one of two neighbouring slices, ``--min-gap``):
   a corrected slice is the ground-truth slice copied in, every other slice stays unannotated
   (ignored by training). The volumes are accepted, the model is fine-tuned (warm start) on all
   accepted cases with a short budget, and a new version is registered.
3. After every training, validation Dice on ``--val-cases`` fixed validation cases (the first of
   ``splits_suggested.json``'s val list when the dataset has one).

Click mode (``--annotator clicks``): the project trains click-guided models (two click maps per
class, see :mod:`napari_medseg.interactive.guidance`) and each round the annotator corrects
*every* new volume with up to ``--clicks`` clicks per structure (the standard protocol of
``benchmarks/clicks.py``, applied with the Interactive section's ``refine_with_clicks``) and
accepts the corrected prediction as a fully annotated case. Cost = the seed slices plus the
clicks (printed as ``clicks=N``; ``corrected_slices`` then counts the seed slices only).

2D datasets (nnU-Net v2 pictures: ``imagesTr/CASE_0000.png``, ``"file_ending": ".png"``): a
picture is one slice. The seed is ``--k`` fully annotated pictures; each round the annotator
corrects the ``--m`` pictures with the most wrong pixels among ``--volumes-per-round`` new ones
(at least ``2 m``), each costing one slice.

Cost = every annotated slice, the ``k`` seed slices included. Slices are taken along
``--axis`` (``auto``: the axis whose slices cut the largest cross-sections of the structure,
i.e. the fewest slices through it). Predictions use mirror TTA and keep the largest component
per class (``--no-tta``, ``--no-keep-largest``).

The output ends with exactly one line::

    final_dice=<mean Dice> corrected_slices=<N> rounds=<R>

Examples
--------
    python benchmarks/loop.py --data ../shared/data/Task04_Hippocampus
    python benchmarks/loop.py --data DATASET --quick          # smoke run, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="MSD-layout dataset folder")
    p.add_argument("--rounds", type=int, default=3, help="correction rounds (default 3)")
    p.add_argument("--retrain-budget-s", type=float, default=160.0,
                   help="time budget of every training, the first included (default 160 s)")
    p.add_argument("--k", type=int, default=12,
                   help="seed slices, fully annotated, over the first 2 volumes (default 12)")
    p.add_argument("--m", type=int, default=16, help="slices corrected per round (default 16)")
    p.add_argument("--volumes-per-round", type=int, default=8,
                   help="new volumes predicted per round, the m slices are chosen among them")
    p.add_argument("--val-cases", type=int, default=20, help="fixed validation cases (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--axis", default="auto",
                   help="slice axis 0/1/2 of the (Z,Y,X) array, or auto: the axis whose slices "
                        "cut the largest cross-sections of the structure")
    p.add_argument("--dims", default="auto", choices=("auto", "2", "3"),
                   help="model dimensionality; auto: 3D when this machine can run enough 3D "
                        "steps within the budget (measured at start), else 2D")
    p.add_argument("--annotator", choices=("slices", "clicks"), default="slices",
                   help="slices: paint the worst slices (default); clicks: correct every new "
                        "case with clicks and accept it")
    p.add_argument("--clicks", type=int, default=3,
                   help="click mode: clicks per structure and case (default 3)")
    p.add_argument("--min-gap", type=int, default=2,
                   help="corrected slices of one volume are at least this far apart")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--base-channels", type=int, default=None)
    p.add_argument("--lr", type=float, default=None, help="learning rate (engine default)")
    p.add_argument("--no-keep-largest", action="store_true",
                   help="do not keep only the largest component per class in predictions")
    p.add_argument("--tta", choices=("auto", "on", "off"), default="auto",
                   help="mirror test-time augmentation (8 passes in 3D); auto: on unless the "
                        "images are large (median above 4 million voxels)")
    p.add_argument("--no-tta", dest="tta", action="store_const", const="off",
                   help="same as --tta off")
    p.add_argument("--device", default="cpu", help="cpu (the target), auto, cuda")
    p.add_argument("--threads", default="auto",
                   help="torch CPU threads, or auto: time 1 vs all cores and take the faster "
                        "(on a busy shared machine one thread is often many times faster)")
    p.add_argument("--out", default=None, help="project folder to keep (default: a temp folder)")
    p.add_argument("--json", default=None, help="write the per-round results to this JSON file")
    p.add_argument("--quick", action="store_true",
                   help="tiny smoke run: 1 round, 10 s budgets, 3 validation cases")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds = min(args.rounds, 1)
        args.retrain_budget_s = min(args.retrain_budget_s, 10.0)
        args.val_cases = min(args.val_cases, 3)
        args.volumes_per_round = min(args.volumes_per_round, 2)
        args.k = min(args.k, 4)
        args.m = min(args.m, 4)
    if args.k < 2:
        p.error("--k must be at least 2 (one seed slice per volume)")
    return args


# ---------------------------------------------------------------------------------------------
# data


def _load_split(data: Path, seed: int) -> tuple[list[str], list[str]]:
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


def _reorient(volume, axis: int):
    """The volume with array axis ``axis`` moved to the front (slices along axis 0); a 2D
    picture is returned as it is."""
    from napari_medseg.io.volume import Volume

    if axis == 0 or volume.ndim == 2:
        return volume
    order = [axis] + [a for a in range(3) if a != axis]
    affine = volume.affine.copy()
    affine[:, :3] = volume.affine[:, order]
    return Volume(np.ascontiguousarray(np.moveaxis(volume.array, axis, 0)),
                  tuple(volume.spacing[a] for a in order), affine, volume.modality,
                  dict(volume.metadata), volume.name)


class CaseLoader:
    """Reads image + ground truth of a case id, reoriented so slices run along axis 0."""

    def __init__(self, data: Path, modality: str, label_names: dict | None = None) -> None:
        from napari_medseg.dataset.msd import list_msd_cases

        self.paths = {cid: (imgs, lab) for cid, imgs, lab in list_msd_cases(data)}
        self.modality = modality
        self.label_names = label_names
        self.axis = 0

    def raw(self, cid: str):
        from napari_medseg.dataset.msd import read_image, read_label_image

        imgs, lab = self.paths[cid]
        if len(imgs) != 1:
            if not getattr(self, "_warned", False):
                print(f"note: {len(imgs)} image channels per case; the loop uses the first "
                      "(projects hold single-channel images)")
                self._warned = True
        image = read_image(imgs[0])
        image.modality = self.modality if image.modality == "unknown" else image.modality
        labels = np.asarray(read_label_image(lab, self.label_names, cid).array).astype(np.uint8)
        if labels.shape != image.shape:
            raise SystemExit(f"case {cid}: labels {labels.shape} and image {image.shape} differ")
        return image, labels

    def load(self, cid: str):
        from napari_medseg.io.volume import Volume

        image, labels = self.raw(cid)
        image = _reorient(image, self.axis)
        image.name = cid
        gt = labels if labels.ndim == 2 else np.ascontiguousarray(np.moveaxis(labels, self.axis, 0))
        return image, gt, Volume(gt, image.spacing, image.affine, name=cid)


def choose_axis(loader: CaseLoader, case_ids: list[str]) -> tuple[int, list[float]]:
    """The axis with the fewest slices through the structure (mean over ``case_ids``).

    Its slices cut the largest cross-sections, so one corrected slice shows the model the most
    of the structure (for the hippocampus: both classes and the boundary between them). Measured
    on Task04 (BENCHMARKS.md), this axis beat the one with the most slices by about 0.05 Dice.
    """
    counts = np.zeros(3)
    for cid in case_ids:
        _, labels = loader.raw(cid)
        if labels.ndim == 2:
            return 0, []
        fg = labels > 0
        for ax in range(3):
            other = tuple(a for a in range(3) if a != ax)
            counts[ax] += np.count_nonzero(fg.any(axis=other))
    counts /= max(len(case_ids), 1)
    return int(np.argmin(counts)), counts.tolist()


def seed_slices(gt: np.ndarray, n: int) -> list[int]:
    """``n`` slices spread evenly through the structure's extent along axis 0."""
    fg = np.flatnonzero((gt > 0).reshape(gt.shape[0], -1).any(axis=1))
    if fg.size == 0:
        return sorted({int(i) for i in np.linspace(0, gt.shape[0] - 1, n).round()})
    picks = fg[np.clip(((np.arange(n) + 0.5) / n * fg.size).astype(int), 0, fg.size - 1)]
    return sorted({int(i) for i in picks})


def image_shape(path: Path) -> tuple[int, ...]:
    """Spatial shape of an image file, from its header when it has one (NIfTI, pictures)."""
    from napari_medseg.io import is_nifti_path

    if is_nifti_path(path):
        from napari_medseg.io.nifti import nifti_header_summary

        return tuple(int(s) for s in nifti_header_summary(path)["shape"])
    try:
        from napari_medseg.io.picture import describe_picture, is_picture_path

        if is_picture_path(path):
            return tuple(int(s) for s in describe_picture(path)["shape"])
    except ImportError:
        pass
    from napari_medseg.dataset.msd import read_image

    return tuple(read_image(path).shape)


def _median_voxels(loader: CaseLoader, case_ids: list[str]) -> float:
    """Median voxel count of the images of ``case_ids`` (read from the headers only)."""
    counts = [float(np.prod(image_shape(loader.paths[c][0][0]))) for c in case_ids]
    return float(np.median(counts)) if counts else 0.0


#: 3D steps per training below which a 2D model learns more in the same time (device sweep in
#: BENCHMARKS.md: ~300 steps -> 2D better, ~650 steps -> 3D better).
MIN_3D_STEPS = 450


def choose_dims(loader: CaseLoader, case_ids: list[str], n_classes: int, budget_s: float,
                base_channels: int | None = None) -> tuple[int, str]:
    """3 when a 3D U-Net step is fast enough here for ``MIN_3D_STEPS`` steps, else 2.

    Times three optimisation steps of the network the engine would plan for these images
    (whole-volume patch, batch 2).
    """
    import torch

    from napari_medseg.models.factory import build_network, plan_network, plan_patch_size

    shapes = [image_shape(loader.paths[c][0][0]) for c in case_ids]
    if any(len(sh) != 3 for sh in shapes):
        return 2, "2D images"
    shape = np.median(np.array(shapes, dtype=float), axis=0)
    shape = np.concatenate([[shape[loader.axis]], np.delete(shape, loader.axis)])
    patch, strides = plan_patch_size(shape, 128**3)
    net = build_network(plan_network(3, 1, n_classes, strides, "unet", base_channels or 16))
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    x = torch.randn(2, 1, *patch)
    y = torch.randint(0, n_classes, (2, *patch))
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    step = float(np.median(times))
    steps = 0.85 * budget_s / max(step, 1e-6)
    dims = 3 if steps >= MIN_3D_STEPS else 2
    return dims, f"auto: about {steps:.0f} 3D steps fit the budget, {MIN_3D_STEPS} wanted"


def choose_threads(max_threads: int | None = None) -> int:
    """1 or all CPU threads, whichever runs a small convolution network faster right now.

    With OpenMP, several threads that must wait for each other on a machine whose cores are
    busy with other programs can be tens of times slower than one thread.
    """
    import torch

    n = max_threads or os.cpu_count() or 1
    if n <= 1:
        return 1
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(16, 16, 3, padding=1))
    x = torch.randn(8, 1, 48, 48)
    timing = {}
    for t in (1, n):
        torch.set_num_threads(t)
        best = float("inf")
        for _ in range(4):
            t0 = time.perf_counter()
            net(x).sum().backward()
            best = min(best, time.perf_counter() - t0)
        timing[t] = best
    return min(timing, key=timing.get)


def slice_errors(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Wrong voxels per slice (axis 0); one value for a 2D picture."""
    from napari_medseg.cycle import correction_errors

    return correction_errors(pred, gt)


# ---------------------------------------------------------------------------------------------
# the run


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    import torch

    threads = choose_threads() if args.threads == "auto" else int(args.threads)
    torch.set_num_threads(threads)
    from napari_medseg.cycle import (
        default_retrain_config,
        retrain,
        run_to_end,
        simulated_annotator_round,
        simulated_click_round,
    )
    from napari_medseg.dataset.msd import (
        Case,
        _channel_names,
        _modality_from_name,
        label_names_from_json,
        read_dataset_json,
    )
    from napari_medseg.dataset.project import Project

    t_start = time.perf_counter()
    data = Path(args.data)
    meta = read_dataset_json(data)
    label_names = label_names_from_json(meta)
    first_channel = _channel_names(meta)[0]
    modality = _modality_from_name(first_channel)
    if modality == "unknown":  # z-score normalisation either way
        modality = "US" if first_channel.upper() in ("US", "ULTRASOUND") else "MR"
    train_ids, val_ids = _load_split(data, args.seed)
    rng = np.random.default_rng(args.seed)
    pool = [train_ids[i] for i in rng.permutation(len(train_ids))]
    loader = CaseLoader(data, modality, label_names)
    pictures = len(image_shape(loader.paths[pool[0]][0][0])) == 2
    if pictures:
        axis_note = "2D pictures: one picture is one annotated slice"
        n_seed = max(args.k, 2)
        if args.volumes_per_round < 2 * args.m:
            args.volumes_per_round = 2 * args.m
    elif args.axis == "auto":
        loader.axis, counts = choose_axis(loader, pool[:10])
        axis_note = f"auto: mean slices through the structure per axis {np.round(counts, 1).tolist()}"
    else:
        loader.axis, axis_note = int(args.axis), "chosen"
    if not pictures:
        n_seed = 2
    val_ids = val_ids[: args.val_cases]
    if len(pool) < n_seed + args.rounds:
        raise SystemExit(f"the dataset has {len(pool)} training cases; at least "
                         f"{n_seed + args.rounds} are needed for {args.rounds} round(s)")
    if len(pool) < n_seed + args.rounds * args.volumes_per_round:
        args.volumes_per_round = (len(pool) - n_seed) // args.rounds
        print(f"note: only {len(pool)} training cases: {args.volumes_per_round} new "
              f"{'picture' if pictures else 'volume'}(s) per round")
    median_voxels = _median_voxels(loader, pool[:5])
    if args.dims == "auto":
        args.dims, dims_note = choose_dims(loader, pool[:5], len(label_names),
                                           args.retrain_budget_s, args.base_channels)
    else:
        args.dims, dims_note = int(args.dims), "chosen"
    if args.tta == "auto":
        args.tta = "on" if median_voxels <= 4e6 else "off"
    args.tta = args.tta == "on"
    keep_largest = not args.no_keep_largest
    device = args.device
    print(f"dataset {data.name}: {len(train_ids)} training / {len(val_ids)} validation cases used, "
          f"labels {label_names}, modality {modality}")
    print(f"slice axis {loader.axis} ({axis_note}); {args.dims}D model ({dims_note}); k={args.k} m={args.m} "
          f"rounds={args.rounds} volumes/round={args.volumes_per_round} "
          f"budget={args.retrain_budget_s:.0f} s; device {device}; "
          f"keep_largest={keep_largest}; tta={args.tta}; "
          f"torch threads {torch.get_num_threads()}", flush=True)

    val_cases = []
    for cid in val_ids:
        image, gt, _ = loader.load(cid)
        val_cases.append(Case(cid, image, gt))

    overrides: dict = {"dims": args.dims, "device": device, "seed": args.seed}
    if args.batch_size:
        overrides["batch_size"] = args.batch_size
    elif args.dims == 2 and not pictures:  # slices of volumes; pictures: the engine plans
        overrides["batch_size"] = 16
    if args.base_channels:
        overrides["base_channels"] = args.base_channels
    if args.lr:
        overrides["learning_rate"] = args.lr
    clicking = args.annotator == "clicks"
    if clicking:
        from napari_medseg.interactive.guidance import guidance_spec

        overrides["guidance"] = guidance_spec()

    tmp = None
    if args.out:
        root = Path(args.out)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="medseg-loop-")
        root = Path(tmp.name) / "project"
    classes = {v: n for v, n in label_names.items() if v != 0}
    project = Project.create(root, f"loop benchmark {data.name}", classes, modality=modality)

    # -- seed: k slices in 2 volumes (k whole pictures in 2D)
    seed_ids, pool = pool[:n_seed], pool[n_seed:]
    cost = 0
    for i, cid in enumerate(seed_ids):
        image, gt, _ = loader.load(cid)
        if pictures:
            project.accept_case(image, gt, case_id=cid)
            cost += 1
            continue
        n = args.k // 2 + (1 if i < args.k % 2 else 0)
        slices = seed_slices(gt, n)
        project.accept_case(image, gt, annotated_slices=slices, case_id=cid)
        cost += len(slices)

    def train_round(label: str) -> tuple[dict, float]:
        """Retrain (warm start) and measure; metrics include the optimisation steps done."""
        cfg = default_retrain_config(project, args.retrain_budget_s, **overrides)
        t0 = time.perf_counter()
        result = run_to_end(retrain(project, config=cfg, val_cases=val_cases,
                                    keep_largest=keep_largest, device=device, note=label,
                                    tta=args.tta))
        if result is None or result.version is None:
            raise SystemExit(f"training saved no model in {label}: the budget of "
                             f"{args.retrain_budget_s:.0f} s is too short on this machine")
        metrics = dict(result.metrics)
        metrics["steps"] = float(getattr(result.train_result, "steps", 0) or 0)
        return metrics, time.perf_counter() - t0

    rows = []
    clicks_total = 0
    metrics, took = train_round("seed")
    train_s = metrics.get("train_time_s", took)
    rows.append({"round": 0, "volumes": n_seed, "corrected": cost, "cumulative": cost,
                 "train_s": train_s, "retrain_wall_s": took, **metrics})
    _print_row(rows[-1], label_names)

    for r in range(1, args.rounds + 1):
        batch, pool = pool[: args.volumes_per_round], pool[args.volumes_per_round:]
        cases = [(cid, *loader.load(cid)[:2]) for cid in batch]
        if clicking:
            given = simulated_click_round(project, cases, args.clicks, device=device,
                                          tta=args.tta, keep_largest=keep_largest)
            n_volumes, n_corrected = len(given), 0
            clicks_total += sum(given.values())
        else:
            chosen = simulated_annotator_round(project, cases, args.m, min_gap=args.min_gap,
                                               device=device, tta=args.tta,
                                               keep_largest=keep_largest)
            n_volumes = len(chosen)
            n_corrected = sum(1 if v is None else len(v) for v in chosen.values())
        cost += n_corrected
        metrics, took = train_round(f"round {r}")
        rows.append({"round": r, "volumes": n_volumes, "corrected": n_corrected,
                     "cumulative": cost, "train_s": metrics.get("train_time_s", took),
                     "retrain_wall_s": took, **metrics})
        if clicking:
            rows[-1]["clicks"] = clicks_total
        _print_row(rows[-1], label_names)

    if not clicking:  # check: the project's own accounting matches the benchmark's
        assert project.annotation_cost() == cost, (project.annotation_cost(), cost)
    final = rows[-1]["dice_mean"]
    print(f"total wall time {time.perf_counter() - t_start:.0f} s; project versions "
          f"{[m['version'] for m in project.models()]}; max training time "
          f"{max(r['train_s'] for r in rows):.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "axis": loader.axis,
                                               "rows": rows}, indent=2))
    if tmp is not None:
        tmp.cleanup()
    if clicking:
        print(f"clicks={clicks_total} (up to {args.clicks} per structure and case)")
    print(f"final_dice={final:.4f} corrected_slices={cost} rounds={args.rounds}", flush=True)
    return 0


def _print_row(row: dict, label_names: dict) -> None:
    per_class = " ".join(f"{name}={row.get(f'dice/{name}', float('nan')):.4f}"
                         for v, name in label_names.items() if v != 0)
    what = (f"{row['clicks']:3d} clicks in total, {row['volumes']} volume(s) accepted"
            if "clicks" in row else
            f"corrected {row['corrected']:3d} slices in {row['volumes']} volume(s)")
    print(f"round {row['round']}: {what}, cumulative {row['cumulative']:3d} slices; validation Dice "
          f"{row['dice_mean']:.4f} ({per_class}); training {row['train_s']:.0f} s, "
          f"{row.get('steps', 0):.0f} steps (whole retrain call with scoring "
          f"{row.get('retrain_wall_s', 0):.0f} s)", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    sys.exit(main())
