"""Time one training step of the planned hippocampus network: float32 vs bfloat16, channels-last.

    OMP_NUM_THREADS=2 python benchmarks/bench_train_step.py [--arch unet|dynunet] [--batch 2]
    OMP_NUM_THREADS=2 python benchmarks/bench_train_step.py --dims 2 --channels 3 --patch 224 224 --batch 8

Forward + Dice/CE loss + backward + AdamW on random 40x56x40 patches (the patch the engine plans
for Task04 Hippocampus; ``--dims 2`` with ``--patch``: a 2D network, e.g. CHASE_DB1's), median of 10 steps after 2 warm-up steps. bfloat16 rows only mean
something on CPUs with native bfloat16 (AVX512-BF16 / AMX); elsewhere oneDNN emulates it.
"""

from __future__ import annotations

import argparse
import time

import torch

from napari_medseg.models.factory import build_network, plan_network, plan_patch_size
from napari_medseg.training.losses import SegmentationLoss


def time_step(spec, patch, batch: int, bf16: bool, channels_last: bool, n: int = 12) -> float:
    torch.manual_seed(0)
    model = build_network(spec)
    fmt = torch.channels_last_3d if len(patch) == 3 else torch.channels_last
    if channels_last:
        model = model.to(memory_format=fmt)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    loss_fn = SegmentationLoss("dice_ce")
    x = torch.randn(batch, spec["in_channels"], *patch)
    y = torch.randint(0, spec["out_channels"], (batch, *patch))
    if channels_last:
        x = x.contiguous(memory_format=fmt)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        loss = loss_fn(out.float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    times = sorted(times[2:])
    return times[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="unet", choices=["unet", "dynunet"])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dims", type=int, default=3, choices=[2, 3])
    ap.add_argument("--patch", type=int, nargs="+", default=None,
                    help="patch size (default: the hippocampus plan, 3D only)")
    ap.add_argument("--channels", type=int, default=1, help="input channels")
    ap.add_argument("--classes", type=int, default=3, help="output classes")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.patch:
        if len(args.patch) != args.dims:
            ap.error(f"--patch needs {args.dims} sizes for --dims {args.dims}")
        patch, strides = plan_patch_size(args.patch, int(torch.tensor(args.patch).prod()))
    elif args.dims == 3:
        patch, strides = plan_patch_size((36, 50, 35), 128**3)
    else:
        ap.error("--dims 2 needs --patch")
    spec = plan_network(args.dims, args.channels, args.classes, strides, args.arch)
    print(f"{args.arch}, {args.dims}D, batch {args.batch}, patch {patch}, "
          f"{args.channels} channel(s), {args.threads} threads")
    print("| precision | channels-last | ms per step | ms per sample |")
    print("|---|---|---:|---:|")
    for bf16 in (False, True):
        for cl in (False, True):
            s = time_step(spec, patch, args.batch, bf16, cl)
            print(f"| {'bfloat16' if bf16 else 'float32'} | {'yes' if cl else 'no'} | "
                  f"{s * 1000:.0f} | {s * 1000 / args.batch:.0f} |", flush=True)


if __name__ == "__main__":
    main()
