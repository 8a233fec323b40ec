"""The CUDA path, end to end: CLI training, CLI prediction and inference throughput on a GPU.

Run it once on a machine with a GPU (issue 3 asks for the CUDA path's timing in BENCHMARKS.md):

    python benchmarks/bench_cuda.py --data ../shared/data/Task04_Hippocampus --json-out cuda.json

Without ``--data`` (or if the folder is missing) it writes a small synthetic CT dataset (phantoms)
in the MSD layout and trains on that. Steps:

1. ``napari-medseg train DATA --out MODEL --device DEV --time-budget-s B --seed 0`` (the CLI
   contract) on ``--n-cases`` cases; reports wall time, optimisation steps, ms per step and the
   best validation Dice (from the model card).
2. ``napari-medseg predict --model MODEL IMAGES --out PRED --device DEV`` on ``--n-predict`` cases,
   then checks each output's shape and affine against its input.
3. ``predict_volume`` of a random 256x256x128 volume with the 96³-patch network on ``DEV``:
   best of ``--repeats``, voxels/s and peak GPU memory (``torch.cuda.max_memory_allocated``).

``--device cpu`` runs the same script on the CPU (a smoke test of the script itself).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "Task04_Hippocampus"


def _cli(*args: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "napari_medseg.cli", *args],
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"napari-medseg {args[0]} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, proc.stdout + proc.stderr


def _subset_dataset(data: Path, n: int, out: Path) -> Path:
    """A dataset folder with the first ``n`` training cases of ``data`` (links, no copies)."""
    meta = json.loads((data / "dataset.json").read_text())
    meta["training"] = meta["training"][:n]
    meta["numTraining"] = n
    for sub in ("imagesTr", "labelsTr"):
        (out / sub).mkdir(parents=True)
    for entry in meta["training"]:
        for key, sub in (("image", "imagesTr"), ("label", "labelsTr")):
            src = (data / entry[key]).resolve()
            os.symlink(src, out / sub / src.name)
    (out / "dataset.json").write_text(json.dumps(meta, indent=2))
    return out


def _phantom_dataset(n: int, out: Path) -> Path:
    from napari_medseg.dataset import Case
    from napari_medseg.dataset.msd import write_msd_dataset
    from napari_medseg.phantom import PHANTOM_CLASSES, make_ct_phantom

    cases = []
    for i in range(n):
        image, labels = make_ct_phantom(shape=(48, 96, 96), seed=i)
        cases.append(Case(f"phantom_{i:03d}", image, labels.array))
    names = {0: "background", **PHANTOM_CLASSES}
    return write_msd_dataset(cases, out, label_names=names, name="phantoms", modality="CT")


def _throughput(device: str, shape, patch, repeats: int) -> dict:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_inference import _network

    from napari_medseg.inference import predict_volume
    from napari_medseg.io import Volume

    net, card = _network(patch)
    volume = Volume(np.random.default_rng(0).normal(size=shape).astype(np.float32), (1.0, 1.0, 1.0))
    predict_volume((net, card), volume, device=device, return_probabilities=False)  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = predict_volume((net, card), volume, device=device, return_probabilities=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        assert res.labels.shape == tuple(shape)
    best = min(times)
    peak = round(torch.cuda.max_memory_allocated() / 2**20) if device.startswith("cuda") else None
    return {"shape": list(shape), "patch": list(patch), "seconds": round(best, 3),
            "voxels_per_s": float(np.prod(shape)) / best, "peak_gpu_mb": peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="MSD dataset (default: phantoms)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--n-cases", type=int, default=40)
    ap.add_argument("--n-predict", type=int, default=4)
    ap.add_argument("--budget-s", type=float, default=120.0)
    ap.add_argument("--shape", type=int, nargs=3, default=[128, 256, 256], help="Z Y X")
    ap.add_argument("--patch", type=int, nargs=3, default=[96, 96, 96])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json-out", type=Path, default=None)
    args = ap.parse_args()

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("bench_cuda: torch sees no CUDA device on this machine (torch "
                 f"{torch.__version__}); use --device cpu for a smoke test")
    info = {"torch": torch.__version__, "device": args.device,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print(json.dumps(info))
    out: dict = {"info": info}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = args.data if args.data is None or args.data.exists() else None
        if data is None and args.data is None and DEFAULT_DATA.exists():
            data = DEFAULT_DATA
        dataset = (_subset_dataset(data, args.n_cases, tmp / "data") if data is not None
                   else _phantom_dataset(min(args.n_cases, 8), tmp / "data"))
        print(f"dataset: {dataset} ({'real: ' + str(data) if data is not None else 'phantoms'})")

        wall, log = _cli("train", str(dataset), "--out", str(tmp / "model"), "--device", args.device,
                         "--time-budget-s", str(args.budget_s), "--seed", "0")
        card = json.loads((tmp / "model" / "model_card.json").read_text())
        history = [h for h in card.get("metrics_history", []) if isinstance(h, dict)]
        steps = history[-1].get("step") if history else None
        train_s = history[-1].get("time_s", args.budget_s) if history else args.budget_s
        best = card.get("best_metric") or float("nan")
        out["train"] = {"wall_s": round(wall, 1), "budget_s": args.budget_s, "steps": steps,
                        "train_s": train_s,
                        "ms_per_step": round(1000 * train_s / steps, 1) if steps else None,
                        "best_val_dice": best,
                        "log_tail": [ln for ln in log.splitlines()
                                     if ln.strip() and "%|" not in ln][-3:]}  # no progress bars
        print("train:", json.dumps(out["train"]))

        import nibabel as nib

        images = sorted((dataset / "imagesTr").glob("*.nii*"))[: args.n_predict]
        (tmp / "inputs").mkdir()
        for img in images:
            os.symlink(img.resolve(), tmp / "inputs" / img.name)
        wall, _ = _cli("predict", "--model", str(tmp / "model"), str(tmp / "inputs"),
                       "--out", str(tmp / "pred"), "--device", args.device)
        for img in images:
            a, b = nib.load(str(img)), nib.load(str(tmp / "pred" / img.name))
            assert a.shape[:3] == b.shape and np.allclose(a.affine, b.affine), img.name
        out["predict"] = {"cases": len(images), "wall_s": round(wall, 1),
                          "geometry": "same shape and affine as the inputs"}
        print("predict:", json.dumps(out["predict"]))

    out["throughput"] = _throughput(args.device, args.shape, args.patch, args.repeats)
    print("throughput:", json.dumps(out["throughput"]))
    print()
    t, p, q = out["train"], out["predict"], out["throughput"]
    shape = "×".join(str(n) for n in reversed(q["shape"]))
    print(f"| device | training (CLI) | prediction (CLI) | {shape} inference |")
    print("|---|---|---|---|")
    print(f"| {info['gpu'] or args.device} | {t['steps']} steps in {t['budget_s']:.0f} s "
          f"({t['ms_per_step']} ms/step), best val Dice {t['best_val_dice']:.4f} | {p['cases']} cases "
          f"in {p['wall_s']} s | {q['seconds']} s, {q['voxels_per_s']:.3g} voxels/s, peak "
          f"{q['peak_gpu_mb'] if q['peak_gpu_mb'] is not None else '(n/a on CPU)'} MB |")
    if args.json_out:
        args.json_out.write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
