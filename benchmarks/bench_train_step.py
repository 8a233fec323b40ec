"""Time one training step of the planned hippocampus network: float32 vs bfloat16, channels-last.

    OMP_NUM_THREADS=2 python benchmarks/bench_train_step.py [--arch unet|dynunet] [--batch 2]

Forward + Dice/CE loss + backward + AdamW on random 40x56x40 patches (the patch the engine plans
for Task04 Hippocampus), median of 10 steps after 2 warm-up steps. bfloat16 rows only mean
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
    fmt = torch.channels_last_3d
    if channels_last:
        model = model.to(memory_format=fmt)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    loss_fn = SegmentationLoss("dice_ce")
    x = torch.randn(batch, 1, *patch)
    y = torch.randint(0, 3, (batch, *patch))
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
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    patch, strides = plan_patch_size((36, 50, 35), 128**3)
    spec = plan_network(3, 1, 3, strides, args.arch)
    print(f"{args.arch}, batch {args.batch}, patch {patch}, {args.threads} threads")
    print("| precision | channels-last | ms per step | ms per sample |")
    print("|---|---|---:|---:|")
    for bf16 in (False, True):
        for cl in (False, True):
            s = time_step(spec, patch, args.batch, bf16, cl)
            print(f"| {'bfloat16' if bf16 else 'float32'} | {'yes' if cl else 'no'} | "
                  f"{s * 1000:.0f} | {s * 1000 / args.batch:.0f} |", flush=True)


if __name__ == "__main__":
    main()
