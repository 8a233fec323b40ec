"""Multi-process (``torchrun``) data-parallel training helpers.

``torchrun --nproc_per_node N napari-medseg train ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :meth:`DistributedContext.from_env` then joins the process group (NCCL on CUDA,
gloo on CPU). Every rank trains on its own random patches; gradients are averaged by
``DistributedDataParallel``; rank 0 validates and writes the model, and stop decisions (cancel,
time budget, early stopping) are agreed on by an all-reduce so no rank waits forever.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist


@dataclass
class DistributedContext:
    """Rank information plus tiny collective helpers (no-ops for a single process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls, device: torch.device) -> DistributedContext:
        """Join the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1 and not torch_dist.is_initialized():
            return cls(device=device)
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        owns = False
        if not torch_dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            torch_dist.init_process_group(backend=backend)
            owns = True
        return cls(torch_dist.get_rank(), torch_dist.get_world_size(), local_rank, owns, device)

    def _comm_device(self) -> torch.device:
        return self.device if torch_dist.get_backend() == "nccl" else torch.device("cpu")

    def agree_max(self, values: list[float]) -> list[float]:
        """Element-wise maximum of ``values`` over all ranks (e.g. stop flag, elapsed time)."""
        if not self.enabled:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device())
        torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MAX)
        return [float(v) for v in t.tolist()]

    def broadcast_values(self, values: list[float]) -> list[float]:
        """Rank 0's ``values`` on every rank."""
        if not self.enabled:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device())
        torch_dist.broadcast(t, src=0)
        return [float(v) for v in t.tolist()]

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """``DistributedDataParallel`` around ``model`` when running distributed."""
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def close(self) -> None:
        """Leave the process group if this context created it."""
        if self.owns_group and torch_dist.is_initialized():
            torch_dist.destroy_process_group()
            self.owns_group = False
