"""Latency of super-PRNet against the classical FT + unwrapping pipeline (Table I's comparison).

Groups compare within one run (the machines are shared and noisy): read them as ratios. On CPU the
networks run at 256x256; on CUDA at the paper's 1024x1024 in fp32 and bf16.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sparseconn.config import load_space_config
from sparseconn.engine.inference import autocast
from sparseconn.network import build_supernet
from sparseconn.space import SearchSpace
from tasks.phase_retrieval.classical import retrieve_phase
from tasks.phase_retrieval.simulate import SimConfig, simulate

pytest.importorskip("pytest_benchmark")
CONFIG = Path(__file__).resolve().parents[1] / "tasks" / "phase_retrieval.yaml"
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _size(device: str) -> int:
    return 1024 if device == "cuda" else 256


@pytest.fixture(scope="module")
def supernet() -> torch.nn.Module:
    return build_supernet(SearchSpace(load_space_config(CONFIG))).eval()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_super_prnet_forward(benchmark, supernet, device: str, precision: str) -> None:
    if precision == "bf16" and device == "cpu":
        pytest.skip("bf16 autocast is only timed on CUDA")
    size = _size(device)
    benchmark.group = f"latency {device} {size}x{size}"
    net = supernet.to(device)
    x = torch.rand(1, 1, size, size, device=device)
    dtype = torch.bfloat16 if precision == "bf16" else None
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    @torch.inference_mode()
    def run() -> torch.Tensor:
        with autocast(device, dtype):
            y = net(x)
        sync()
        return y

    run()  # warm-up: cuDNN algorithm choice, allocator
    y = benchmark.pedantic(run, rounds=10 if device == "cuda" else 3, warmup_rounds=1)
    assert y.shape == (1, 1, size, size)


@pytest.mark.parametrize("size", [256, 1024])
def test_classical_ft_unwrap(benchmark, size: int) -> None:
    benchmark.group = f"latency cpu {size}x{size}" if size == 256 else "classical 1024x1024 (cpu)"
    holo = simulate(SimConfig(size=size), np.random.default_rng(0)).hologram
    phase = benchmark.pedantic(retrieve_phase, args=(holo,), rounds=3, warmup_rounds=1)
    assert phase.shape == (size, size)
