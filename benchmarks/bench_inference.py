"""Inference throughput: napari-medseg ``predict`` vs MONAI ``sliding_window_inference`` defaults.

Same network (the MONAI UNet napari-medseg plans for a 96³ patch), same random 256x256x128
volume (Z=128, Y=X=256, float32), CPU. Each variant runs in its own subprocess so peak memory
(``ru_maxrss``) is its own; throughput = voxels of the volume / wall-clock seconds, best of
``--repeats`` after one warm-up window.

* ``monai-default``: ``sliding_window_inference(x, roi, sw_batch_size=1, predictor=net)`` (overlap
  0.25, constant blending) under ``torch.no_grad()``, then arg-max: what a MONAI tutorial does.
* ``medseg-labels``: ``predict_volume(..., return_probabilities=False)`` — z-score normalisation,
  Gaussian-blended windows, softmax, arg-max on the input grid.
* ``medseg-full``: the same plus probabilities ``(C, ...)`` and the entropy map (the GUI default).

    OMP_NUM_THREADS=2 python benchmarks/bench_inference.py            # 256x256x128
    OMP_NUM_THREADS=2 python benchmarks/bench_inference.py --shape 64 96 96 --repeats 1  # smoke
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

VARIANTS = ("monai-default", "medseg-labels", "medseg-full")


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _network(patch):
    from napari_medseg.models import ModelCard, build_network, plan_network, plan_patch_size

    _, strides = plan_patch_size(patch)
    spec = plan_network(3, 1, 3, strides)
    card = ModelCard(task="bench", classes=[{"value": v, "name": str(v), "color": [0, 0, 0]}
                                            for v in range(3)],
                     dims=3, in_channels=1, patch_size=list(patch), network=spec,
                     normalisation=[{"scheme": "zscore"}], spacing=[1.0, 1.0, 1.0])
    import torch

    torch.manual_seed(0)
    return build_network(spec).eval(), card


def run_one(variant: str, shape, patch, repeats: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from monai.inferers import sliding_window_inference

    from napari_medseg.inference import predict_volume
    from napari_medseg.io import Volume

    net, card = _network(patch)
    image = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    volume = Volume(image, (1.0, 1.0, 1.0))
    with torch.no_grad():  # warm-up: one window
        net(torch.zeros(1, 1, *patch))
    rss_before = _rss_mb()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        if variant == "monai-default":
            x = torch.from_numpy(image)[None, None]
            with torch.no_grad():
                logits = sliding_window_inference(x, patch, 1, net)
                labels = logits.argmax(1)[0].numpy().astype(np.uint8)
        else:
            full = variant == "medseg-full"
            res = predict_volume((net, card), volume, device="cpu", return_probabilities=full)
            labels = res.labels
        times.append(time.perf_counter() - t0)
        assert labels.shape == tuple(shape)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    best = min(times)
    return {"variant": variant, "seconds": round(best, 2), "voxels_per_s": float(np.prod(shape)) / best,
            "peak_rss_mb": round(peak), "rss_before_mb": round(rss_before),
            "peak_extra_mb": round(peak - rss_before)}


def main() -> None:
    ap = argparse.ArgumentParser(description="inference throughput benchmark")
    ap.add_argument("--shape", type=int, nargs=3, default=[128, 256, 256], help="Z Y X")
    ap.add_argument("--patch", type=int, nargs=3, default=[96, 96, 96])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variant", choices=VARIANTS, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(run_one(args.variant, args.shape, args.patch, args.repeats, args.threads)))
        return
    rows = []
    for variant in VARIANTS:
        cmd = [sys.executable, __file__, "--variant", variant, "--shape", *map(str, args.shape),
               "--patch", *map(str, args.patch), "--repeats", str(args.repeats),
               "--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = rows[0]["voxels_per_s"]
    print(f"\nInference, volume {args.shape} (Z Y X), patch {args.patch}, {args.threads} threads, CPU")
    print("| variant | seconds | voxels/s | speed vs MONAI default | peak RSS MB | extra MB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['seconds']} | {r['voxels_per_s']:.3g} | "
              f"{r['voxels_per_s'] / base:.2f}x | {r['peak_rss_mb']} | {r['peak_extra_mb']} |")
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
