"""CUDA paths: a search + retraining step under AMP, bf16 inference, CUDA checkpoints read on the CPU, the
fast path's graphs and batches in flight (``FastModel.map``, ``infer --in-flight``).

Deselected by default (marker ``gpu``); run with ``pytest -m gpu`` on a machine with a CUDA device.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from typer.testing import CliRunner

from sparseconn.cli import app
from sparseconn.config import load_space_config
from sparseconn.engine.inference import predict
from sparseconn.engine.loading import load_model, make_task
from sparseconn.network import build_supernet
from sparseconn.space import SearchSpace

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
CONFIG = Path(__file__).resolve().parents[1] / "tasks" / "phase_retrieval.yaml"


def test_pipeline_on_cuda_with_amp(tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["pipeline", str(CONFIG), "--fast-dev-run", "--device", "cuda", "--out", str(out),
                                 "--quiet"])
    assert r.exit_code == 0, r.output
    ev = json.loads((out / "evaluation.json").read_text())
    assert ev["device"].startswith("cuda")
    nets = [row for row in ev["rows"] if row["params"]]
    assert {"super-PRNet", "NAS-PRNet"} <= {row["model"] for row in nets}
    assert all(row["latency_ms"] > 0 for row in nets)
    records = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(rec["train_loss"])) for rec in records)
    lm = load_model(out)  # written on CUDA, read on the CPU
    assert next(lm.net.parameters()).device.type == "cpu"
    # infer on CUDA with three batches in flight (one frame each, two sizes, a 3-page stack): the same
    # phase maps as one at a time
    task = make_task(lm.cfg)
    frames = [np.clip(task.example_input(size, seed=i)[0], 0, 1).astype(np.float32)
              for i, size in enumerate([(96, 128)] * 4 + [(70, 90)] * 3)]
    folder = tmp_path / "in"
    folder.mkdir()
    for i, f in enumerate(frames[:4]):
        tifffile.imwrite(folder / f"h{i}.tif", f)
    tifffile.imwrite(folder / "stack.tif", np.stack(frames[4:]), photometric="minisblack")
    for k in ("1", "3"):
        r = CliRunner().invoke(app, ["infer", str(out), str(folder), "--out", str(tmp_path / f"out{k}"), "--device",
                                     "cuda", "--in-flight", k, "--quiet"])
        assert r.exit_code == 0, r.output
    for name in ["h0.tif", "h1.tif", "h2.tif", "h3.tif", "stack.tif"]:
        one, three = tifffile.imread(tmp_path / "out1" / name), tifffile.imread(tmp_path / "out3" / name)
        assert one.shape == three.shape and np.abs(one - three).max() <= 1e-3 * max(1.0, np.abs(one).max())
    assert tifffile.imread(tmp_path / "out3" / "stack.tif").shape == (3, 70, 90)


def test_bf16_inference_matches_fp32() -> None:
    torch.manual_seed(0)
    net = build_supernet(SearchSpace(load_space_config(CONFIG))).cuda().eval()
    x = torch.rand(2, 1, 250, 333, device="cuda")
    y32 = predict(net, x)
    y16 = predict(net, x, amp=torch.bfloat16)
    assert y16.shape == y32.shape == (2, 1, 250, 333) and y16.dtype == torch.float32
    assert (y16 - y32).abs().max().item() < 0.05  # outputs are in [0, 1]


@pytest.mark.parametrize("engine", ["eager", "compiled"])
def test_fast_path_on_cuda_matches_fp32_and_replays_its_graph(engine: str) -> None:
    from sparseconn.architecture import Architecture
    from sparseconn.engine.fastpath import BF16_TOL, optimize
    from sparseconn.network import build_child

    torch.manual_seed(0)
    arch = Architecture.load(CONFIG.parent / "phase_retrieval" / "architectures" / "demo_child.json")
    net = build_child(arch).cuda().eval()
    with torch.no_grad():  # the regression head starts at zero (a constant output): give it weights, and a
        for p in net.head.parameters():  # mid-range bias (its ReLU6 would clip an untrained output to zero)
            p.copy_(torch.randn_like(p) * 2.0)
        net.head.conv.bias.fill_(3.0)
    x = torch.rand(1, 1, 256, 256, device="cuda")
    fast = optimize(net, device="cuda", engine=engine, example=x)
    assert fast.engine == engine and "CUDA graph" in fast.description
    assert ("19 connections on" in fast.description) == (engine == "eager")  # side streams: eager's default
    assert fast.dtype == (torch.bfloat16 if torch.cuda.is_bf16_supported() else None)
    for _ in range(2):  # the second call replays the captured graph with new data
        x2 = torch.rand_like(x)
        with torch.no_grad():
            ref = net(x2)
        assert ref.std() > 0
        assert (fast(x2) - ref).abs().max().item() <= BF16_TOL * max(1.0, ref.abs().max().item())
    # Four frames in flight, each lane on its own stream and graph: the same outputs, in order.
    frames = [torch.rand_like(x) for _ in range(9)]
    outs = list(fast.map(frames, in_flight=4))
    torch.cuda.synchronize()
    assert len(outs) == 9
    for o, f in zip(outs, frames, strict=True):  # (the same kernels; split reductions may round differently)
        ref = fast(f)
        assert (o - ref).abs().max().item() <= 1e-3 * max(1.0, ref.abs().max().item())
    assert len(fast.lanes[4]) == 4


@pytest.mark.parametrize("engine", ["eager", "compiled"])
def test_connections_on_side_streams_give_what_one_stream_gives(engine: str) -> None:
    """The demo child with its connections on side streams (one CUDA graph with parallel branches) against
    all on one stream, frame after distinct frame: a missing wait or a block reused too early would show as
    a difference that moves from frame to frame."""
    from sparseconn.architecture import Architecture
    from sparseconn.engine.fastpath import optimize
    from sparseconn.network import build_child

    torch.manual_seed(1)
    net = build_child(Architecture.load(CONFIG.parent / "phase_retrieval" / "architectures" / "demo_child.json"))
    net = net.cuda().eval()
    with torch.no_grad():
        for p in net.head.parameters():
            p.copy_(torch.randn_like(p) * 2.0)
        net.head.conv.bias.fill_(3.0)
    x = torch.rand(1, 1, 512, 512, device="cuda")
    side = optimize(net, device="cuda", engine=engine, example=x, side_streams=True)
    one = optimize(net, device="cuda", engine=engine, example=x, side_streams=False)
    assert "side streams" in side.description and "side streams" not in one.description
    worst = 0.0
    for _ in range(12):
        f = torch.rand_like(x)
        a, b = side(f), one(f)
        worst = max(worst, (a - b).abs().max().item() / max(1.0, b.abs().max().item()))
    torch.cuda.synchronize()
    assert worst <= (1e-6 if engine == "eager" else 3e-2), worst  # compiled: parts fuse differently in bf16


def test_ground_pool_of_a_channels_last_feature_on_cuda_matches_adaptive_pooling() -> None:
    import torch.nn.functional as F

    from sparseconn.ops import ground_pool

    x = torch.randn(2, 64, 32, 32, device="cuda").contiguous(memory_format=torch.channels_last)
    got = ground_pool(x, 3)
    assert got.shape == (2, 64, 3, 3)
    assert torch.allclose(got, F.adaptive_avg_pool2d(x.cpu(), 3).cuda(), atol=1e-6)


def test_detrend_fit_by_triton_kernels_matches_the_torch_form_in_a_graph_and_compiled(monkeypatch) -> None:
    """The detrend's fit by its Triton kernels (22 launches) against the torch form on the same GPU, for
    two frames of two sizes and three degrees; then captured in a CUDA graph and replayed with new data,
    and through ``torch.compile`` (a ``triton_op``)."""
    from sparseconn_tasks.phase_retrieval import detrend, detrend_triton

    if not detrend_triton.AVAILABLE:
        pytest.skip("Triton is not installed")
    torch.manual_seed(0)

    def blocks(h: int, w: int, shift: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        y, x = torch.meshgrid(torch.linspace(-1, 1, h, device="cuda"), torch.linspace(-1, 1, w, device="cuda"),
                              indexing="ij")
        phase = 3 * x + 2 * y**2 - 1.5 * x * y + 0.8 * x**3 + 6 * torch.exp(-((x - shift)**2 + (y + 0.1)**2) / 0.05)
        z = (1 + 0.1 * torch.randn(h, w, device="cuda")) * torch.polar(torch.ones_like(phase), phase)
        z = torch.stack([z, 0.5 * z.conj()])
        return detrend.block_means(z.real.contiguous(), z.imag.contiguous())

    for degree in (1, 3, 4):
        for h, w in ((1024, 1024), (250, 333)):
            br, bi = blocks(h, w)
            monkeypatch.setattr(detrend, "TRITON", False)
            ref = detrend.fit(br, bi, h, w, degree)
            monkeypatch.setattr(detrend, "TRITON", True)
            got = detrend.fit(br, bi, h, w, degree)
            diff = (detrend.plane(got, degree, h, w) - detrend.plane(ref, degree, h, w)).abs().max().item()
            assert diff < 3e-5, (degree, h, w, diff)
    h = w = 1024
    constants = detrend.fit_constants(3, "cuda")
    br, bi = blocks(h, w)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        detrend.fitted_table(br, bi, h, w, 3, constants)  # compiles the kernels outside the capture
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = detrend.fitted_table(br, bi, h, w, 3, constants)
    new_r, new_i = blocks(h, w, shift=0.4)
    br.copy_(new_r)
    bi.copy_(new_i)
    graph.replay()
    direct = detrend.fitted_table(new_r, new_i, h, w, 3, constants)
    assert torch.allclose(captured, direct, atol=1e-6, rtol=0)
    compiled = torch.compile(detrend.fitted_table)(new_r, new_i, h, w, 3, constants)
    assert torch.allclose(compiled, direct, atol=1e-4, rtol=0)
