"""One machine to many: ``torchrun --nproc-per-node N -m sparseconn search ...`` runs DDP.

gloo on CPU, nccl on GPU. Connection weights are ordinary registered parameters, so DDP averages
their gradients and every rank takes the same step; :func:`assert_same_on_all_ranks` checks it
after every epoch. Only rank 0 writes files. A process group that :func:`init_distributed` starts is
shut down in step by :func:`finish` when a command ends normally (every rank waits for the others, then
destroys it while the interpreter is whole) and destroyed at exit after an error. A run's ``sync_bn``
turns its BatchNorm layers into SyncBatchNorm for the length of the training (:func:`use_sync_bn`,
:func:`sync_batchnorm`).
"""

from __future__ import annotations

import atexit
import gc
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from sparseconn.errors import ConfigError, SparseconnError

_started_here = False  # whether init_distributed started the process group (finish and cleanup end it)


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

    A group started here is shut down by :func:`finish` when the command ends normally, and destroyed when
    the process exits after an error or Ctrl-C; a group the caller started is left to the caller."""
    global _started_here
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend)
        _started_here = True
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


def use_sync_bn(requested: bool, info: DistInfo, device: str, section: str) -> bool:
    """Whether a run's ``{section}.sync_bn`` converts BatchNorm to SyncBatchNorm: only under DDP on CUDA.

    On another device a distributed run is refused with a one-line :class:`ConfigError` (torch's
    SyncBatchNorm synchronises CUDA tensors only, over NCCL); a single process has nothing to synchronise
    and keeps plain BatchNorm, with a warning."""
    if not requested:
        return False
    if not info.enabled:
        warnings.warn(f"{section}.sync_bn is true but this is a single process: BatchNorm has nothing to "
                      "synchronise and stays as it is (sync_bn acts under torchrun on several GPUs)",
                      UserWarning, stacklevel=2)
        return False
    if not device.startswith("cuda"):
        raise ConfigError(f"{section}.sync_bn is true but the device is {device!r}: SyncBatchNorm needs CUDA "
                          f"GPUs with the NCCL backend; set {section}.sync_bn=false on this run")
    return True


@contextmanager
def sync_batchnorm(net: nn.Module, enabled: bool = True) -> Iterator[int]:
    """Within the block, every BatchNorm layer of ``net`` (below its root) is a
    :class:`torch.nn.SyncBatchNorm` sharing its parameters and buffers; afterwards the original layers are
    back in place, holding the trained values. Yields how many layers were converted.

    Convert before wrapping the network in DDP. The state dict keeps its keys (``weight``, ``bias``,
    ``running_mean``, ``running_var``, ``num_batches_tracked``), so checkpoints saved inside the block load
    into the plain network."""
    swapped: list[tuple[nn.Module, str, _BatchNorm]] = []
    if enabled:
        for parent in list(net.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, _BatchNorm) and not isinstance(child, nn.SyncBatchNorm):
                    setattr(parent, name, nn.SyncBatchNorm.convert_sync_batchnorm(child))
                    swapped.append((parent, name, child))
    try:
        yield len(swapped)
    finally:
        for parent, name, bn in reversed(swapped):
            sync = getattr(parent, name)
            with torch.no_grad():
                bn.load_state_dict(sync.state_dict())  # shared tensors already: a safeguard
            bn.train(sync.training)
            setattr(parent, name, bn)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo | None = None) -> None:
    """Destroy the process group if one is up (``info`` of a single process: nothing to do).
    :func:`init_distributed` registers it to run at exit.

    Garbage is collected first: a DDP wrapper caught in a reference cycle still holds the group, and a
    gloo group freed only while the interpreter finalises can abort the process ("terminate called
    without an active exception", SIGABRT, seen once in CI on rank 1 after a finished search)."""
    if (info is None or info.enabled) and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
        gc.collect()


def finish() -> None:
    """End a group that :func:`init_distributed` started, at the normal end of a command: every rank waits
    at a barrier (none tears its connections down while another still talks), then :func:`cleanup`.
    Nothing to do for a single process or a group the caller started."""
    global _started_here
    if _started_here and dist.is_initialized():
        dist.barrier()
        cleanup()
    _started_here = False


_REMOVED = {
    "device_for": "RunOptions.device (the run commands already pick cuda:LOCAL_RANK under torchrun)",
    "broadcast_object": "torch.distributed.broadcast_object_list",
}


def __getattr__(name: str) -> Any:
    if name in _REMOVED:
        raise AttributeError(f"sparseconn.engine.distributed.{name} was removed (nothing used it); "
                             f"use {_REMOVED[name]}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
