"""Click latency on a full-size CT (issue 16): 512 x 512 x 300, a click-guided 3D model, CPU.

Builds a chest CT phantom at 0.8 x 0.8 x 1.0 mm (512 x 512 x 300 voxels, about 410 x 410 x
300 mm) and a click-guided 3D U-Net of the size the engine plans for CT (16 base channels,
patch 64 x 128 x 128 at 1.5 mm; weights untrained - the time of a forward pass does not depend
on them). Then, as the Annotate tab's Interactive section does, it times
``refine_with_clicks`` (crop around the object and the clicks, normalisation, resampling to the
model's grid, one network window when the crop fits, merge into the label) for positive and
negative clicks on the left lung with the current label being the lung mask, on
``--threads`` CPU threads. Prints every click's time and the p95; ``--write`` records it in
BENCHMARKS.md.

    python benchmarks/bench_click_latency_ct.py --threads 2 --write
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clicks", type=int, default=10)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from napari_medseg.interactive.guidance import guidance_spec
    from napari_medseg.interactive.refine import refine_with_clicks
    from napari_medseg.io.volume import Volume
    from napari_medseg.models import ModelCard, build_network, plan_network, plan_patch_size
    from napari_medseg.phantom import make_chest_ct_phantom
    from napari_medseg.preprocess import resample_to_shape

    shape, spacing = (300, 512, 512), (1.0, 0.8, 0.8)
    t0 = time.perf_counter()
    small, small_labels = make_chest_ct_phantom(seed=0)
    image = np.asarray(resample_to_shape(small.array.astype(np.float32)[None], shape,
                                         order=1))[0].astype(np.int16)
    labels = np.asarray(resample_to_shape(
        torch.from_numpy(small_labels.array.astype(np.float32))[None], shape, order=0))[0]
    volume = Volume(image, spacing, np.diag([*spacing, 1.0]), "CT", name="ct512")
    lung = int(np.bincount(labels.astype(np.int64).ravel())[1:].argmax()) + 1
    current = (labels == lung).astype(np.uint8)
    print(f"phantom {shape} built in {time.perf_counter() - t0:.0f} s; editing label {lung} "
          f"({int(current.sum()) * np.prod(spacing) / 1000:.0f} ml)")

    patch = [64, 128, 128]
    _, strides = plan_patch_size(tuple(patch))
    spec = plan_network(3, 1 + 2, 2, strides, base_channels=16, max_channels=256)
    card = ModelCard(task="Lung", classes=[{"value": 0, "name": "background", "color": [0, 0, 0]},
                                           {"value": 1, "name": "lung", "color": [230, 25, 75]}],
                     dims=3, in_channels=1, patch_size=patch, network=spec,
                     normalisation=[{"scheme": "ct", "clip_low": -1000.0, "clip_high": 400.0,
                                     "mean": -500.0, "std": 400.0}],
                     spacing=[1.5, 1.5, 1.5], modality="CT",
                     train_config={"guidance": guidance_spec(3.0)})
    torch.manual_seed(0)
    net = build_network(spec).eval()

    rng = np.random.default_rng(0)
    inside = np.argwhere(current[::4, ::4, ::4]) * 4
    outside = np.argwhere((current[::4, ::4, ::4] == 0) & (image[::4, ::4, ::4] < -500)) * 4
    times = []
    clicks = []
    for k in range(args.clicks):
        pool = inside if k % 2 == 0 else outside
        clicks.append((tuple(int(c) for c in pool[rng.integers(len(pool))]), k % 2 == 0))
        t0 = time.perf_counter()
        refine_with_clicks(net, card, volume, current, 1, clicks[-1:], device="cpu")
        times.append((time.perf_counter() - t0) * 1000.0)
        print(f"click {k + 1} ({'yes' if clicks[-1][1] else 'no'} at {clicks[-1][0]}): "
              f"{times[-1]:.0f} ms", flush=True)
    p95 = float(np.percentile(times, 95))
    line = (f"512x512x300 CT, {args.threads} threads: {len(times)} clicks, median "
            f"{np.median(times):.0f} ms, p95 {p95:.0f} ms (target <= 1000 ms)")
    print(line)
    if args.write:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from _report import write_section

        write_section("Click latency on a 512x512x300 CT (issue 16)", (
            f"`python benchmarks/bench_click_latency_ct.py --threads {args.threads} --write`: "
            "chest phantom at 0.8 x 0.8 x 1.0 mm, a click-guided 3D U-Net of the engine's CT size "
            "(16 base channels, patch 64 x 128 x 128 at 1.5 mm; untrained weights: a forward "
            "pass costs the same), `refine_with_clicks` on the left lung (the whole Interactive "
            "update: crop, normalise, resample, one window, merge) for alternating yes/no "
            "clicks, one click at a time:\n\n" + line + "\n\nPer click (ms): "
            + ", ".join(f"{t:.0f}" for t in times) + "."))
    return 0


if __name__ == "__main__":
    sys.exit(main())
