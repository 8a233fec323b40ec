"""Any 2D picture dataset: napari-medseg's default plan vs the MONAI-tutorial 2D U-Net (issue 18).

The hidden checks of issue 18 train the engine from scratch, for a few minutes of CPU, on 2D
datasets this repository never sees (breast ultrasound, fundus photographs of another camera).
This script runs that protocol on any nnU-Net v2 style picture dataset (``imagesTr/``,
``labelsTr/``, ``dataset.json`` with ``"file_ending"``; field-of-view masks in ``masksTr/`` when
present), or on a synthetic breast-ultrasound set written on the fly
(:func:`napari_medseg.phantom.ultrasound_dataset`, B-mode speckle, lesions covering 2-30 % of
the picture): a fixed split (every ``--test-every``-th case of the sorted ids is a test case),
both models trained for the same wall-clock budget (data preparation and planning included),
then mean Dice, sensitivity and specificity per foreground class over the test cases (inside
the field of view), with the steps each model did.

Run (figures into BENCHMARKS.md with ``--write``)::

    OMP_NUM_THREADS=2 python benchmarks/pictures2d.py --synthetic-ultrasound 60 --budget 300 --write
    OMP_NUM_THREADS=2 python benchmarks/pictures2d.py --data /path/to/Dataset_BUSI --budget 300
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
MARK_START = "<!-- pictures2d:start -->"
MARK_END = "<!-- pictures2d:end -->"


def fixed_split(case_ids, test_every: int) -> tuple[list[str], list[str]]:
    """Sorted ids; every ``test_every``-th one (from the last backwards) is a test case."""
    ids = sorted(case_ids)
    if test_every < 2 or len(ids) < 2:
        raise SystemExit("error: --test-every must be at least 2 and the dataset must hold 2 cases")
    test = ids[len(ids) - 1::-test_every][::-1]
    return [i for i in ids if i not in set(test)], test


def raw_images(dataset_dir: Path) -> dict[str, list]:
    """Case id -> its image files read as :class:`~napari_medseg.io.volume.Volume` (colour kept)."""
    from napari_medseg.dataset.msd import list_msd_cases
    from napari_medseg.dataset.msd_files import read_image

    return {cid: [read_image(p) for p in paths] for cid, paths, _ in list_msd_cases(dataset_dir)}


def scores(pred: np.ndarray, truth: np.ndarray, inside: np.ndarray | None,
           classes: dict[int, str]) -> dict[str, dict[str, float]]:
    """Dice, sensitivity, specificity per foreground class (inside the field of view)."""
    from napari_medseg.metrics import dice, sensitivity, specificity

    if inside is None:
        inside = np.ones(truth.shape, dtype=bool)
    out = {}
    for value, name in classes.items():
        p, t = pred[inside] == value, truth[inside] == value
        out[name] = {"dice": dice(p, t), "sensitivity": sensitivity(p, t),
                     "specificity": specificity(p, t)}
    return out


def _log_event(event, log) -> None:
    """Log a training event worth reading (start, messages, validated epochs)."""
    if event.kind in ("start", "message") or (event.kind == "epoch" and event.metrics):
        log(f"ours: {event.message or ''} {event.metrics or ''}".rstrip())


def _save_prediction(folder: Path | None, key: str, cid: str, pred: np.ndarray) -> None:
    """Write one test prediction as ``folder/<key>/<cid>.png`` (label values)."""
    if folder is None:
        return
    import imageio.v3 as iio

    (folder / key).mkdir(parents=True, exist_ok=True)
    iio.imwrite(folder / key / f"{cid}.png", np.asarray(pred, dtype=np.uint8))


def run_ours(dataset, train_ids, test_ids, raw, budget: float, seed: int, log=print,
             keep_model: Path | None = None, save_predictions: Path | None = None) -> dict:
    from napari_medseg.cycle import run_to_end
    from napari_medseg.inference.predict import predict_volume
    from napari_medseg.models.card import read_card
    from napari_medseg.training import TrainConfig, train

    cases = {c.case_id: c for c in dataset.cases}
    fg = {v: n for v, n in dataset.label_names.items() if v != 0}
    config = TrainConfig(time_budget_s=budget, device="cpu", seed=seed,
                         label_names=dataset.label_names, task_name=dataset.name)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        out_dir = keep_model if keep_model is not None else Path(tmp) / "model"
        result = run_to_end(train(config, [cases[i] for i in train_ids], out_dir),
                            lambda e: _log_event(e, log))
        train_s = time.perf_counter() - t0
        card = read_card(result.model_dir)
        per_case, t1 = {}, time.perf_counter()
        for cid in test_ids:
            volume = raw[cid][0] if len(raw[cid]) == 1 else raw[cid]
            pred = predict_volume(result.model_dir, volume, device="cpu",
                                  return_probabilities=False)
            case = cases[cid]
            _save_prediction(save_predictions, "ours", cid, pred.labels)
            per_case[cid] = scores(np.asarray(pred.labels), np.asarray(case.labels),
                                   case.roi, fg)
        predict_s = (time.perf_counter() - t1) / max(len(test_ids), 1)
    return {"steps": result.steps, "train_s": train_s, "predict_s_per_image": predict_s,
            "patch": list(card.patch_size), "batch": card.train_config.get("batch_size"),
            "dims": card.dims, "per_case": per_case}


def run_baseline(dataset, train_ids, test_ids, raw, budget: float, seed: int, log=print,
                 keep_model: Path | None = None, save_predictions: Path | None = None) -> dict:
    import torch
    from baseline_unet2d import predict_baseline, train_baseline

    def picture(cid):  # (Y, X) grey or (Y, X, C): what the tutorial's loader would give
        chans = [np.asarray(v.array) for v in raw[cid]]
        return chans[0] if len(chans) == 1 else np.stack(chans, -1)

    cases = {c.case_id: c for c in dataset.cases}
    fg = {v: n for v, n in dataset.label_names.items() if v != 0}
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    model, stats = train_baseline([picture(i) for i in train_ids],
                                  [np.asarray(cases[i].labels) for i in train_ids], budget, seed,
                                  log, num_classes=max(dataset.label_names) + 1)
    train_s = time.perf_counter() - t0
    per_case, t1 = {}, time.perf_counter()
    if keep_model is not None:
        keep_model.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), keep_model / "baseline.pt")
    for cid in test_ids:
        case = cases[cid]
        pred = predict_baseline(model, picture(cid))
        _save_prediction(save_predictions, "baseline", cid, pred)
        per_case[cid] = scores(pred, np.asarray(case.labels), case.roi, fg)
    predict_s = (time.perf_counter() - t1) / max(len(test_ids), 1)
    return {"steps": stats["iterations"], "train_s": train_s, "predict_s_per_image": predict_s,
            "patch": [128, 128], "batch": 8, "dims": 2, "per_case": per_case}


def summary(run: dict) -> dict[str, dict[str, float]]:
    """Mean of each metric per class over the test cases."""
    out: dict[str, dict[str, float]] = {}
    for case in run["per_case"].values():
        for name, row in case.items():
            for metric, value in row.items():
                out.setdefault(name, {}).setdefault(metric, []).append(value)
    return {n: {m: float(np.mean(v)) for m, v in rows.items()} for n, rows in out.items()}


def write_section(results: dict, args, path: Path = REPO / "BENCHMARKS.md") -> None:
    import torch

    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [MARK_START, "", f"### {results['dataset']} ({when})", "",
             f"`python benchmarks/pictures2d.py {' '.join(sys.argv[1:])}` — machine: "
             f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}. "
             f"{results['n_train']} training / {results['n_test']} test pictures "
             f"(every {args.test_every}th sorted id), {args.budget:.0f} s per model.", "",
             "| model | class | patch | batch | steps | Dice | sensitivity | specificity |"
             " predict s/picture |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for key, label in (("ours", "napari-medseg (default plan)"),
                       ("baseline", "MONAI-tutorial 2D U-Net (128², batch 8)")):
        run = results.get(key)
        if not run:
            continue
        for name, row in run["summary"].items():
            lines.append(f"| {label} | {name} | {'x'.join(map(str, run['patch']))} | "
                         f"{run['batch']} | {run['steps']} | {row['dice']:.4f} | "
                         f"{row['sensitivity']:.4f} | {row['specificity']:.4f} | "
                         f"{run['predict_s_per_image']:.2f} |")
    if args.note:
        lines += ["", args.note]
    lines += ["", MARK_END]
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = "\n".join(lines)
    if MARK_START in text:  # one block per dataset name, newest first
        head, rest = text.split(MARK_START, 1)
        _old, tail = rest.split(MARK_END, 1)
        kept = [b for b in _old.split("\n### ")[1:] if not b.startswith(results["dataset"] + " (")]
        block = block.replace("\n\n" + MARK_END, "".join("\n\n### " + b.strip()
                                                           for b in kept) + "\n\n" + MARK_END)
        text = head + block + tail
    else:
        text = (text.rstrip() + "\n\n## 2D picture datasets: ours vs the MONAI-tutorial U-Net "
                "(issue 18)\n\n" + block + "\n")
    path.write_text(text)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=Path, help="nnU-Net v2 style 2D dataset folder")
    src.add_argument("--synthetic-ultrasound", type=int, metavar="N",
                     help="write N synthetic breast-ultrasound pictures and use them")
    ap.add_argument("--shape", type=int, nargs=2, default=(480, 544),
                    help="rows columns of the synthetic pictures (default 480 544)")
    ap.add_argument("--budget", type=float, default=300, help="wall-clock seconds per model")
    ap.add_argument("--only", choices=("both", "ours", "baseline"), default="both")
    ap.add_argument("--test-every", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="also write the raw figures here")
    ap.add_argument("--keep-model", type=Path, default=None,
                    help="keep the trained models here (ours in KEEP/ours, the baseline's "
                         "weights in KEEP/baseline/baseline.pt)")
    ap.add_argument("--save-predictions", type=Path, default=None,
                    help="write each test prediction as DIR/<model>/<case>.png")
    ap.add_argument("--write", action="store_true", help="write the section of BENCHMARKS.md")
    ap.add_argument("--note", default="")
    args = ap.parse_args(argv)

    import torch

    from napari_medseg.dataset.msd import DatasetError, load_msd_dataset

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        if args.synthetic_ultrasound:
            from napari_medseg.phantom import ultrasound_dataset

            data = ultrasound_dataset(Path(tmp) / "SyntheticBreastUS", args.synthetic_ultrasound,
                                      seed=1000, shape=tuple(args.shape))
        else:
            data = args.data
        try:
            dataset = load_msd_dataset(data)
        except DatasetError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        raw = raw_images(Path(data))
    train_ids, test_ids = fixed_split([c.case_id for c in dataset.cases], args.test_every)
    name = (f"Synthetic breast ultrasound {args.shape[0]}x{args.shape[1]}"
            if args.synthetic_ultrasound else dataset.name)
    print(f"{name}: {len(train_ids)} training, {len(test_ids)} test pictures, "
          f"{args.budget:.0f} s per model", flush=True)
    results: dict = {"dataset": name, "n_train": len(train_ids), "n_test": len(test_ids)}
    for key, fn in (("baseline", run_baseline), ("ours", run_ours)):
        if args.only not in ("both", key):
            continue
        run = fn(dataset, train_ids, test_ids, raw, args.budget, args.seed,
                 log=lambda m: print(m, flush=True),
                 keep_model=args.keep_model / key if args.keep_model else None,
                 save_predictions=args.save_predictions)
        run["summary"] = summary(run)
        results[key] = run
        for cls, row in run["summary"].items():
            print(f"{key}: {cls} dice={row['dice']:.4f} sensitivity={row['sensitivity']:.4f} "
                  f"specificity={row['specificity']:.4f} steps={run['steps']} "
                  f"patch={run['patch']} batch={run['batch']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float))
    if args.write:
        write_section(results, args)
    return results


if __name__ == "__main__":
    main()
