"""Distributed data-parallel training: ``torchrun --nproc_per_node 2`` on CPU with gloo."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from napari_medseg.dataset import Case, write_msd_dataset
from napari_medseg.io import Volume
from napari_medseg.models import load_model
from napari_medseg.training import DistributedContext


def _case(i: int) -> Case:
    rng = np.random.default_rng(i)
    z, y, x = np.indices((16, 16, 16))
    c = rng.integers(5, 11, 3)
    labels = (((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) < 20).astype(np.uint8)
    image = (labels + rng.normal(0, 0.3, labels.shape)).astype(np.float32)
    return Case(f"blob_{i}", Volume(image, (1.0, 1.0, 1.0)), labels)


def test_single_process_context_is_a_no_op():
    ctx = DistributedContext.from_env(torch.device("cpu"))
    assert ctx.is_main and not ctx.enabled
    assert ctx.agree_max([3.0, 1.0]) == [3.0, 1.0] and ctx.broadcast_values([1.5]) == [1.5]
    model = torch.nn.Linear(2, 2)
    assert ctx.wrap(model) is model


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
def test_torchrun_two_processes_gloo(tmp_path):
    data = write_msd_dataset([_case(i) for i in range(4)], tmp_path / "Task_Blobs",
                             {0: "background", 1: "blob"}, name="Blobs")
    out = tmp_path / "model"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "--module", "napari_medseg.cli", "train", str(data), "--out", str(out),
           "--max-epochs", "2", "--steps-per-epoch", "3", "--patch-size", "16", "16", "16",
           "--base-channels", "4", "--device", "cpu", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summaries = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 1  # only rank 0 reports
    assert summaries[0]["status"] == "finished" and summaries[0]["epochs"] == 2
    _, card = load_model(out)
    assert len(card.metrics_history) == 2 and card.num_classes == 2
    assert card.train_config["world_size"] == 2 and card.train_config["steps"] == 6
