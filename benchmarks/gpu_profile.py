"""Where a CUDA frame's time goes: kernel tables of the demo child's fast paths at 1024², batch 1.

``python -m benchmarks.gpu_profile [OUT_DIR] [--fit]`` (run by ``benchmarks/gpu_check.sh``). First the
detrend's fit alone, torch form against Triton kernels with a few launch settings (``--fit``: only that,
about a minute). Then, for each engine
(``eager``, ``compiled``) it prints the replayed CUDA graph's time per frame and, from a profile of the
same model run outside the graph, the kernels per frame, their summed time, that time by kind (convolution,
inductor's fused kernels, elementwise and copies, FFT, ...) and the 30 costliest. Also
times the ground node's pooling of a channels-last feature by PyTorch's channels-last kernel and by an
NCHW copy and as one matrix product (:func:`sparseconn.ops.ground_pool`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from benchmarks.conftest import CHILD
from benchmarks.test_bench_latency import fast_model, hologram
from sparseconn.ops import pool_by_product


def _per_call_ms(fn, arg, n: int = 200) -> float:
    for _ in range(10):
        fn(arg)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(n):
        fn(arg)
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / n


def kernel_table(engine: str, x: torch.Tensor, frames: int = 10) -> dict:
    fast = fast_model(CHILD, engine, "cuda", x.shape[-1])
    graph_ms = _per_call_ms(fast, x)
    inner = fast.fn.fn  # the model inside the CUDA-graph wrapper

    def once(t: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cuda", dtype=fast.dtype, enabled=fast.dtype is not None):
            return inner(t.contiguous(memory_format=torch.channels_last))

    for _ in range(3):
        once(x)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(frames):
            once(x)
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    busy_ms = sum(e.device_time_total for e in kernels) / 1e3 / frames
    totals: dict[str, list[float]] = {}
    for e in kernels:
        t = totals.setdefault(e.name, [0.0, 0])
        t[0] += e.device_time_total / 1e3 / frames
        t[1] += 1 / frames
    top = sorted(totals.items(), key=lambda kv: -kv[1][0])[:30]
    kinds = _by_kind(totals)
    print(f"\n{engine}: CUDA graph {graph_ms:.3f} ms/frame ({1e3 / graph_ms:.0f} frames/s); outside the graph "
          f"{len(kernels) / frames:.0f} kernels/frame, {busy_ms:.3f} ms of kernel time ({fast.description})")
    print("  by kind: " + ", ".join(f"{k} {ms * 1e3:.0f} us ({n:.0f})" for k, (ms, n) in kinds.items()))
    for name, (ms, count) in top:
        print(f"  {ms * 1e3:8.1f} us  x{count:5.1f}  {name[:110]}")
    return {"engine": engine, "graph_ms": graph_ms, "kernels_per_frame": len(kernels) / frames,
            "kernel_ms_per_frame": busy_ms, "top": [[n, ms, c] for n, (ms, c) in top],
            "by_kind": kinds, "path": fast.description}


KINDS = (("inductor", ("triton_",)), ("convolution", ("conv", "fprop", "xmma", "cutlass", "cudnn", "implicit_gemm")),
         ("fft", ("fft",)), ("matmul", ("gemm", "gemv", "cublas", "nvjet")), ("reduction", ("reduce", "pool")),
         ("resize", ("upsample",)), ("copy", ("copy",)), ("elementwise", ("elementwise",)))


def _by_kind(totals: dict[str, list[float]]) -> dict[str, tuple[float, float]]:
    """Kernel time (ms) and kernels per frame by kind, from the kernels' names; costliest first."""
    kinds: dict[str, list[float]] = {}
    for name, (ms, count) in totals.items():
        low = name.lower()
        kind = next((k for k, keys in KINDS if any(key in low for key in keys)), "other")
        t = kinds.setdefault(kind, [0.0, 0.0])
        t[0] += ms
        t[1] += count
    return {k: (ms, n) for k, (ms, n) in sorted(kinds.items(), key=lambda kv: -kv[1][0])}


def ground_pool_check() -> dict:
    x = torch.randn(1, 1280, 32, 32, device="cuda", dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
    nhwc = _per_call_ms(lambda t: F.adaptive_avg_pool2d(t, 3), x)
    nchw = _per_call_ms(lambda t: F.adaptive_avg_pool2d(t.contiguous(), 3), x)
    product = _per_call_ms(lambda t: pool_by_product(t, 3), x)
    print(f"\nground pool 1280x32x32 -> 3x3 bf16: channels-last kernel {nhwc * 1e3:.1f} us, NCHW copy + kernel "
          f"{nchw * 1e3:.1f} us, one matrix product (ops.pool_by_product) {product * 1e3:.1f} us")
    return {"channels_last_us": nhwc * 1e3, "nchw_copy_us": nchw * 1e3, "product_us": product * 1e3}


def _graphed_ms(fn, n: int = 500) -> tuple[float, torch.Tensor]:
    """``fn()`` captured in a CUDA graph (after three calls on a side stream, which build its kernels):
    ms per replay over ``n`` replays, and the graph's output."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    return _per_call_ms(lambda _: graph.replay(), None, n), out


def fit_check(size: int = 1024) -> dict:
    """The detrend's fit alone (``fitted_table``, degree 3, one frame's block means at ``size``²), in a CUDA
    graph: the torch form compiled against the Triton kernels (``detrend_triton``) with a few launch
    settings (warps of the two kernels, steps per program); each row's largest difference from the torch
    form's table."""
    from sparseconn_tasks.phase_retrieval import detrend, detrend_triton

    y, x = torch.meshgrid(torch.linspace(-1, 1, size, device="cuda"), torch.linspace(-1, 1, size, device="cuda"),
                          indexing="ij")
    phase = 3 * x + 2 * y**2 - 1.5 * x * y + 0.8 * x**3 + 6 * torch.exp(-((x - 0.2)**2 + (y + 0.1)**2) / 0.05)
    z = torch.polar(torch.ones_like(phase), phase)[None]
    br, bi = detrend.block_means(z.real.contiguous(), z.imag.contiguous())
    constants = detrend.fit_constants(3, "cuda")
    keep = detrend.TRITON, detrend_triton._WARPS, detrend_triton._PER_PROGRAM
    rows = {}
    try:
        detrend.TRITON = False
        compiled = torch.compile(detrend.fitted_table)
        torch_ms, ref = _graphed_ms(lambda: compiled(br, bi, size, size, 3, constants))
        rows["torch form, compiled"] = {"ms": torch_ms, "diff": 0.0}
        detrend.TRITON = detrend_triton.AVAILABLE
        for warps in ((4, 4), (4, 1), (2, 1), (1, 1), (8, 4)):
            for per_program in (512, 256, 1024):
                if warps != (4, 4) and per_program != 512:
                    continue
                detrend_triton._WARPS, detrend_triton._PER_PROGRAM = warps, per_program
                ms, out = _graphed_ms(lambda: detrend.fitted_table(br, bi, size, size, 3, constants))
                rows[f"Triton, warps {warps}, {per_program} steps a program"] = {
                    "ms": ms, "diff": (out - ref).abs().max().item()}
    finally:
        detrend.TRITON, detrend_triton._WARPS, detrend_triton._PER_PROGRAM = keep
    print(f"\ndetrend fit alone at {size}², degree 3, in a CUDA graph:")
    for name, row in rows.items():
        print(f"  {row['ms'] * 1e3:8.1f} us  {name}  (max |Δ| of the table vs the torch form {row['diff']:.1e})")
    return rows


def main(out: Path | None, only_fit: bool = False) -> None:
    print(torch.cuda.get_device_name(), torch.__version__)
    x = torch.from_numpy(hologram(1024))[None, None].cuda()
    result = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__}
    try:
        result["fit"] = fit_check()
    except Exception as exc:  # the kernel tables still run
        print(f"fit check: failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    if only_fit:
        if out is not None:
            (out / "gpu_profile.json").write_text(json.dumps(result, indent=1))
        return
    result["ground_pool"] = ground_pool_check()
    for engine in ("eager", "compiled"):
        try:
            result[engine] = kernel_table(engine, x)
        except Exception as exc:  # one engine failing leaves the other's table
            print(f"{engine}: failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    if out is not None:
        (out / "gpu_profile.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--fit"]
    main(Path(args[0]) if args else None, only_fit="--fit" in sys.argv[1:])
