"""Lungs on CT: the "Lungs (CT)" pre-segmentation, then a 3D model trained from its masks.

The case study of issue 18 as a benchmark (CPU):

1. ``lungs_ct`` on the real TotalSegmentator CT sample (reference: its lung lobes, a model
   output, not manual truth), on synthetic chest CT phantoms (exact ground truth, lungs apart
   and touching) and, for speed, on a 512 x 512 x 400 CT made by resampling a phantom;
2. a 3D model trained for ``--budget`` seconds on ``--n-train`` phantoms whose masks come from
   ``lungs_ct`` (the "corrected" masks an annotator would accept: on phantoms they need no
   correction), scored against the ground truth of ``--n-test`` unseen phantoms.

    python benchmarks/lungs.py --budget 120 --write
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
TOTALSEG_LUNG = (10, 11, 12, 13, 14)  # lung lobes in labels_total_v2.json


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * (a & b).sum() / total)


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def presegmentation_rows() -> list[tuple[str, str, float, float]]:
    from napari_medseg.editing import lungs_ct
    from napari_medseg.io import read_volume
    from napari_medseg.phantom import make_chest_ct_phantom
    from napari_medseg.preprocess import resample_to_shape

    rows = []
    ct = SHARED / "samples" / "ct_abdomen_totalsegmentator" / "example_ct.nii.gz"
    if ct.is_file():
        image = read_volume(ct)
        seg = read_volume(ct.with_name("example_seg.nii.gz")).array  # the top slices only
        ref = np.zeros(image.shape, bool)
        ref[image.shape[0] - seg.shape[0]:] = np.isin(seg, TOTALSEG_LUNG)
        out, s = _timed(lungs_ct, image.array, image.spacing, affine=image.affine)
        rows.append((f"TotalSegmentator CT sample {image.shape}", "lung lobes (model output)",
                     dice(out > 0, ref), s))
    for seed, touch in ((0, False), (1, False), (2, True)):
        image, labels = make_chest_ct_phantom(seed=seed, lungs_touch=touch)
        out, s = _timed(lungs_ct, image.array, image.spacing, separate_sides=True,
                        affine=image.affine)
        gt = labels.array
        mean = (dice(out == 1, gt == 1) + dice(out == 2, gt == 2)) / 2
        rows.append((f"chest phantom seed {seed}{' (lungs touch)' if touch else ''} "
                     f"{image.shape}", "exact, right/left mean", mean, s))
    image, labels = make_chest_ct_phantom(seed=3)
    big_shape = (400, 512, 512)
    big = resample_to_shape(image.array.astype(np.float32), big_shape, order=1)
    big = np.asarray(big).astype(np.int16)
    zoom = [a / b for a, b in zip(image.shape, big_shape, strict=True)]
    spacing = tuple(s * z for s, z in zip(image.spacing, zoom, strict=True))
    gt_big = np.asarray(resample_to_shape((labels.array > 0).astype(np.float32), big_shape,
                                          order=1)) > 0.5
    out, s = _timed(lungs_ct, big, spacing)
    rows.append((f"chest phantom resampled to {big_shape}", "exact (resampled)",
                 dice(out > 0, gt_big), s))
    return rows


def model_rows(n_train: int, n_test: int, budget: float) -> tuple[list, dict]:
    from napari_medseg.dataset.msd import Case
    from napari_medseg.editing import lungs_ct
    from napari_medseg.inference import predict_volume
    from napari_medseg.phantom import make_chest_ct_phantom
    from napari_medseg.training import TrainConfig, train

    cases = []
    for seed in range(10, 10 + n_train):
        image, _ = make_chest_ct_phantom(seed=seed, lungs_touch=seed % 3 == 0)
        mask = lungs_ct(image.array, image.spacing, affine=image.affine)
        cases.append(Case(f"chest{seed}", image, mask))
    config = TrainConfig(time_budget_s=budget, device="cpu", label_names={0: "background",
                                                                          1: "lung"},
                         modality="CT", task_name="Lungs", val_fraction=0.2)
    with tempfile.TemporaryDirectory(prefix="medseg-lungs-") as tmp:
        result = None
        gen = train(config, cases, Path(tmp) / "model")
        try:
            while True:
                next(gen)
        except StopIteration as stop:
            result = stop.value
        scores = []
        for seed in range(100, 100 + n_test):
            image, labels = make_chest_ct_phantom(seed=seed)
            pred = predict_volume(str(Path(tmp) / "model"), image, device="cpu")
            scores.append(dice(pred.labels > 0, labels.array > 0))
    info = {"steps": result.steps if result else 0,
            "best_val": result.best_metric if result else None}
    return scores, info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=120.0, help="training seconds")
    parser.add_argument("--n-train", type=int, default=5)
    parser.add_argument("--n-test", type=int, default=2)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    rows = presegmentation_rows()
    table = ["| image | reference | Dice | seconds |", "|---|---|---:|---:|"]
    table += [f"| {a} | {b} | {d:.3f} | {s:.1f} |" for a, b, d, s in rows]
    print("\n".join(table))
    scores, info = model_rows(args.n_train, args.n_test, args.budget)
    line = (f"3D model from {args.n_train} pre-segmented phantoms, {args.budget:.0f} s CPU, "
            f"{info['steps']} steps: Dice on {args.n_test} unseen phantoms "
            f"{np.mean(scores):.3f} ({', '.join(f'{s:.3f}' for s in scores)})")
    print(line)
    if args.write:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from _report import write_section

        write_section("Lungs on CT: pre-segmentation and a model from its masks (issue 18)", (
            f"`python benchmarks/lungs.py --budget {args.budget:.0f} --n-train {args.n_train}`, "
            "2-core CPU. `lungs_ct` (*Annotate > Pre-segmentation > Lungs (CT)*):\n\n"
            + "\n".join(table) + "\n\n" + line + "."))
    return 0


if __name__ == "__main__":
    sys.exit(main())
