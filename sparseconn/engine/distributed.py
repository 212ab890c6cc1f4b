"""One machine to many: ``torchrun --nproc-per-node N -m sparseconn search ...`` runs DDP.

gloo on CPU, nccl on GPU. Connection weights are ordinary registered parameters, so DDP averages
their gradients and every rank takes the same step; :func:`assert_same_on_all_ranks` checks it
after every epoch. Only rank 0 writes files. A process group that :func:`init_distributed` starts is
destroyed when the process ends, also after an error.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from sparseconn.errors import SparseconnError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); a no-op otherwise.

    A group started here is destroyed when the process exits, after a normal end, an error or Ctrl-C
    alike; a group the caller started is left to the caller."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend)
        atexit.register(cleanup)
    info = DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    if device.startswith("cuda"):
        torch.cuda.set_device(info.local_rank)
    return info


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def assert_same_on_all_ranks(vec: torch.Tensor, info: DistInfo, what: str = "connection weights") -> None:
    """Raise if ``vec`` differs between ranks (NNI #5013: a different architecture per GPU)."""
    if not info.enabled:
        return
    gathered = [torch.empty_like(vec) for _ in range(info.world_size)]
    dist.all_gather(gathered, vec.contiguous())
    for r, other in enumerate(gathered):
        if not torch.equal(other, gathered[0]):
            diff = (other - gathered[0]).abs().max().item()
            raise SparseconnError(f"{what} differ between rank 0 and rank {r} (max difference {diff:.3g})")


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo | None = None) -> None:
    """Destroy the process group if one is up (``info`` of a single process: nothing to do).
    :func:`init_distributed` registers it to run at exit."""
    if (info is None or info.enabled) and dist.is_initialized():
        dist.destroy_process_group()


_REMOVED = {
    "device_for": "RunOptions.device (the run commands already pick cuda:LOCAL_RANK under torchrun)",
    "broadcast_object": "torch.distributed.broadcast_object_list",
}


def __getattr__(name: str) -> Any:
    if name in _REMOVED:
        raise AttributeError(f"sparseconn.engine.distributed.{name} was removed (nothing used it); "
                             f"use {_REMOVED[name]}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
