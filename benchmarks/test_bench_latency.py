"""Table I on this machine: latency of every model at 256², 512² and 1024², eager and fast path.

One group per device and size. Models: super-PRNet, the shipped demo child
(``tasks/phase_retrieval/architectures/demo_child.json``), U-Net at Table I's 37.7M parameters and
SparseMask's published child (both as configured in ``tasks/phase_retrieval_unet.yaml`` and
``tasks/phase_retrieval_sparsemask.yaml``), and the classical FT + unwrapping pipeline. Engines (see
:mod:`sparseconn.engine.fastpath`): ``reference`` (the model as trained, NCHW fp32), ``eager`` (BN
folded, channels-last; bf16 and CUDA graphs where the device has them) and, for the demo child,
``compiled``; ``SPARSECONN_BENCH_COMPILE=all`` compiles every network.

``extra_info`` of each benchmark holds the parameters, MACs, achieved GFLOP/s, the fp32 matrix-multiply
peak measured in the same run and the fraction of it reached, and the fast path's parity with the
reference. A summary of medians and ratios prints at the end (``benchmarks/conftest.py``).

The weights are the untrained initialisation (with random head weights, which start at zero, and the phase
range set on the sideband op, as training sets it, so that its congruent finish runs): latency
does not depend on their values, and the parity check compares every fast path against the reference
on a simulated hologram.
"""

from __future__ import annotations

import os
import time
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
from sparseconn_tasks.phase_retrieval.classical import retrieve_phase
from sparseconn_tasks.phase_retrieval.simulate import SimConfig, simulate

from benchmarks.conftest import CHILD, CLASSICAL, SPARSEMASK, SUPERNET, UNET, record, record_throughput
from sparseconn.architecture import Architecture
from sparseconn.engine.config import load_run_config
from sparseconn.engine.fastpath import FastModel, optimize
from sparseconn.models import build_model
from sparseconn.network import build_child, build_supernet
from sparseconn.profiling import count_macs, count_params
from sparseconn.space import SearchSpace

pytest.importorskip("pytest_benchmark")
TASKS = Path(__file__).resolve().parents[1] / "tasks"
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
SIZES = [256, 512, 1024]
NETWORKS = [SUPERNET, CHILD, UNET, SPARSEMASK]
TARGET_SECONDS = 3.0  # rounds per benchmark: about this much timing (see _rounds)


@cache
def network(name: str) -> torch.nn.Module:
    net = _build(name)
    head = getattr(net, "head", None)
    if head is not None:  # the regression head starts at zero: give it weights so parity checks mean something
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in head.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 2.0)
            bias = getattr(getattr(head, "conv", None), "bias", None)
            if bias is not None:  # mid-range: the phase head's ReLU6 would clip an untrained output to zero
                bias.fill_(3.0)
    op = getattr(net, "input_op", None)
    if op is not None:  # the phase range, as training sets it: the sideband op's congruent finish runs (and is timed)
        op.set_target_scale(12.0)
    return net


def _build(name: str) -> torch.nn.Module:
    if name == SUPERNET:
        cfg = load_run_config(TASKS / "phase_retrieval.yaml")
        return build_supernet(SearchSpace(cfg.space)).eval()
    if name == CHILD:
        return build_child(Architecture.load(TASKS / "phase_retrieval" / "architectures" / "demo_child.json")).eval()
    config = {UNET: "phase_retrieval_unet.yaml", SPARSEMASK: "phase_retrieval_sparsemask.yaml"}[name]
    cfg = load_run_config(TASKS / config)
    return build_model(cfg.model.name, cfg.model.params, cfg.space).eval()


@cache
def hologram(size: int) -> np.ndarray:
    return simulate(SimConfig(size=size), np.random.default_rng(0)).hologram.astype(np.float32)


@cache
def fast_model(name: str, engine: str, device: str, size: int) -> FastModel:
    x = torch.from_numpy(hologram(size))[None, None].to(device)
    return optimize(network(name), device=device, engine=engine, example=x)


def engines(name: str) -> list[str]:
    compile_all = os.environ.get("SPARSECONN_BENCH_COMPILE") == "all"
    return ["reference", "eager"] + (["compiled"] if name == CHILD or compile_all else [])


def _rounds(seconds: float) -> int:
    """Rounds for a call of ``seconds``: about TARGET_SECONDS of timing, at most 50; at least 7 for calls under
    1.5 s (the child and the classical pipeline at 1024², whose ratio the summary quotes), else 3."""
    return int(min(50, max(7 if seconds < 1.5 else 3, TARGET_SECONDS / max(seconds, 1e-6))))


CASES = [(d, s, n, e) for d in DEVICES for s in SIZES for n in NETWORKS for e in engines(n)]


@pytest.mark.parametrize(("device", "size", "name", "engine"), CASES,
                         ids=[f"{d}-{s}-{n.split(' ')[0]}-{e}" for d, s, n, e in CASES])
def test_network_latency(benchmark, peak, device: str, size: int, name: str, engine: str) -> None:
    benchmark.group = f"latency {device} {size}x{size}"
    fast = fast_model(name, engine, device, size)
    x = torch.from_numpy(hologram(size))[None, None].to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def run() -> torch.Tensor:
        y = fast(x)
        sync()
        return y

    t0 = time.perf_counter()
    run()  # warm-up: compilation, cuDNN algorithm choice, CUDA graph capture, allocator
    y = benchmark.pedantic(run, rounds=_rounds(time.perf_counter() - t0), warmup_rounds=1)
    assert y.shape == (1, 1, size, size)
    net = network(name)
    macs = count_macs(net, (1, 1, size, size))
    record(benchmark, device, size, name, engine, macs, fast.dtype)
    median_s = benchmark.stats.stats.median
    fp32_peak = peak(device)
    achieved = 2 * macs / median_s / 1e9
    benchmark.extra_info.update({
        "model": name, "engine": engine, "path": fast.description, "params": count_params(net), "macs": macs,
        "gflops": round(achieved, 2), "matmul_peak_gflops_fp32": round(fp32_peak, 1),
        "fraction_of_peak": round(achieved / fp32_peak, 3), "parity": fast.parity,
    })
    if fast.dtype is not None:  # a bf16 path is held against the bf16 peak
        bf16_peak = peak(device, torch.bfloat16)
        benchmark.extra_info.update({"matmul_peak_gflops_bf16": round(bf16_peak, 1),
                                     "fraction_of_bf16_peak": round(achieved / bf16_peak, 3)})


STREAM_CASES = ([("eager", k) for k in (1, 4)] + [("compiled", k) for k in (1, 2, 4, 8)]) if "cuda" in DEVICES else []
FRAMES = 64


@pytest.mark.parametrize(("engine", "streams"), STREAM_CASES,
                         ids=[f"cuda-1024-child-{e}-{k}streams" for e, k in STREAM_CASES])
def test_cuda_stream_throughput(benchmark, engine: str, streams: int) -> None:
    """Frames/s of the demo child at 1024², batch 1, through :meth:`FastModel.map` with ``streams`` frames in
    flight, each on a CUDA stream of its own with its own captured graph (a camera's frames are independent;
    one batch-1 frame at a time leaves most of a large GPU idle between its small kernels). One stream:
    frames back to back. The frames differ, so the check below also sees their order."""
    benchmark.group = "throughput cuda 1024x1024, batch 1"
    fast = fast_model(CHILD, engine, "cuda", 1024)
    x = torch.from_numpy(hologram(1024))[None, None].cuda()
    frames = [torch.roll(x, shifts=i, dims=-1) for i in range(FRAMES)]  # 64 distinct frames

    def run() -> list[torch.Tensor]:
        outs = list(fast.map(frames, in_flight=streams))
        torch.cuda.synchronize()
        return outs

    run()  # captures each lane's graph
    outs = benchmark.pedantic(run, rounds=10, warmup_rounds=1)
    fps = FRAMES / benchmark.stats.stats.median
    record_throughput(f"{CHILD} {engine}, {streams} stream{'s' * (streams > 1)}", fps)
    for i in (0, 1, FRAMES - 1):
        ref = fast(frames[i])
        assert (outs[i] - ref).abs().max().item() <= 1e-3 * max(1.0, ref.abs().max().item())
    benchmark.extra_info.update({"model": CHILD, "engine": engine, "streams": streams, "frames_per_s": round(fps, 1),
                                 "path": fast.description})


@pytest.mark.parametrize("size", SIZES)
def test_classical_ft_unwrap(benchmark, size: int) -> None:
    """The classical pipeline (CPU only: numpy/scipy/scikit-image), timed like the networks."""
    benchmark.group = f"latency cpu {size}x{size}"
    holo = hologram(size)
    t0 = time.perf_counter()
    retrieve_phase(holo)
    phase = benchmark.pedantic(retrieve_phase, args=(holo,), rounds=_rounds(time.perf_counter() - t0),
                               warmup_rounds=1)
    assert phase.shape == (size, size)
    record(benchmark, "cpu", size, CLASSICAL, "numpy", None)
    benchmark.extra_info.update({"model": CLASSICAL, "engine": "numpy"})
