"""Parameters, multiply-accumulates and latency: one implementation for benchmarks, reports and the CLI.

MACs come from ``torch.utils.flop_counter.FlopCounterMode``, which counts 2 FLOPs per
multiply-accumulate; Table I of the paper reports multiply-accumulates as "FLOPs". Counting runs on
the ``meta`` device, so a 1024 x 1024 supernet is profiled in a second without allocating memory.
"""

from __future__ import annotations

import copy
import statistics
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class Profile:
    params: int
    macs: int
    connections: int | None
    input_shape: tuple[int, ...]
    latency_ms: float | None = None
    device: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def count_macs(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass at ``input_shape`` (B, C, H, W), counted on ``meta``."""
    try:
        meta = copy.deepcopy(module).to("meta")
        x = torch.empty(input_shape, device="meta")
    except (NotImplementedError, RuntimeError):  # modules that cannot move to meta: count for real
        meta, x = module, torch.zeros(input_shape, device=next(module.parameters()).device)
    meta.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta(x)
    return counter.get_total_flops() // 2


@torch.no_grad()
def measure_latency(module: nn.Module | object, input_shape: tuple[int, ...], *, runs: int = 10, warmup: int = 2,
                    device: str | torch.device = "cpu") -> float:
    """Median wall time in milliseconds of ``runs`` forward passes after ``warmup`` passes."""
    if isinstance(module, nn.Module):
        module = module.to(device).eval()
    x = torch.randn(input_shape, device=device)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    for _ in range(warmup):
        module(x)
    sync()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        module(x)
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def profile(module: nn.Module, input_shape: tuple[int, ...], *, latency: bool = False, runs: int = 10,
            warmup: int = 2, device: str = "cpu") -> Profile:
    """Parameters, MACs, connection count and optionally latency of a network at ``input_shape``."""
    connections = getattr(module, "num_connections", None)
    prof = Profile(count_params(module), count_macs(module, input_shape), connections, tuple(input_shape))
    if latency:
        prof.latency_ms = measure_latency(module, input_shape, runs=runs, warmup=warmup, device=device)
        prof.device = str(device)
    return prof
