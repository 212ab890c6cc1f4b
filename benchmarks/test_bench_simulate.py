"""How long does one simulated 256² training field take? (target: well under 50 ms on one core)."""

from __future__ import annotations

import numpy as np
import pytest
from sparseconn_tasks.phase_retrieval.simulate import SimConfig, simulate

pytest.importorskip("pytest_benchmark")


@pytest.mark.benchmark(group="simulate", warmup=True)
def test_simulate_256(benchmark) -> None:
    cfg = SimConfig(size=256)
    seeds = iter(range(10**9))
    # A fresh seed per round: cell count and sizes vary, so one seed would time one draw only.
    sample = benchmark(lambda: simulate(cfg, np.random.default_rng(next(seeds))))
    assert sample.hologram.shape == (256, 256)
