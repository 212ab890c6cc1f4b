"""The fast inference path: BN folding, channels-last, torch.compile and onnxruntime agree with eager fp32."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sparseconn.architecture import Architecture
from sparseconn.config import SpaceConfig
from sparseconn.engine import fastpath
from sparseconn.engine.fastpath import (
    FP32_TOL,
    choose_engine,
    count_batchnorm,
    fold_batchnorm,
    optimize,
    tune_cpu_allocator,
)
from sparseconn.errors import SparseconnError
from sparseconn.network import build_child, build_supernet
from sparseconn.pruning import derive
from sparseconn.space import SearchSpace
from tests.conftest import randomize_norms, tiny_config


def _randomize(net: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and a non-zero head, so that a wrong fold cannot pass unseen."""
    randomize_norms(net, seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / m.weight[0].numel()) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return net.eval()


def _mobilenet_space(**extra) -> SpaceConfig:
    """The paper's super-PRNet space on a 1-channel input: MobileNetV2, 8 decoder stages (small enough at 64²)."""
    return SpaceConfig.model_validate({
        "in_channels": 1, "index_base": 1,
        "encoder": {"name": "mobilenet_v2", "params": {"width": 0.35}, "features": [0, 1, 2, 3, 4, 5, 6, 7]},
        "ground": [{"name": "G", "source": 8, "size": 3}],
        "decoder": {"depth": {"rule": "linear", "step": 8, "max": 256}, "stage_op": "relu6_conv_bn_relu6",
                    "output": "D1"},
        "edges": {"rule": "dense", "kernel": 3, "norm": True},
        **extra,
    })


def _child(space: SearchSpace, keep: float = 0.5) -> nn.Module:
    weights = {k: (0.9 if i % 2 == 0 else 0.0) for i, k in enumerate(space.candidates)}
    arch: Architecture = derive(space.graph, space.cfg, weights, 1e-3, False)
    return build_child(arch)


def _max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max()) / max(1.0, float(b.abs().max()))


@pytest.mark.parametrize("which", ["supernet", "child"])
def test_fold_batchnorm_removes_every_bn_and_keeps_the_output(which: str) -> None:
    space = SearchSpace(_mobilenet_space())
    net = build_supernet(space) if which == "supernet" else _child(space)
    net = _randomize(net)
    before = count_batchnorm(net)
    folded, n = fold_batchnorm(net)
    assert before > 0 and n == before and count_batchnorm(folded) == 0
    assert count_batchnorm(net) == before  # the original is untouched
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        assert _max_rel(folded(x), net(x)) <= FP32_TOL


def test_fold_batchnorm_only_folds_a_bn_that_follows_its_conv() -> None:
    net = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(4))
    _randomize(net)
    folded, n = fold_batchnorm(net)
    assert n == 0 and count_batchnorm(folded) == 2  # BN before a conv, and BN after a ReLU, stay


@pytest.mark.parametrize("engine", ["eager", "onnxruntime", "compiled"])
def test_fast_engines_match_eager_fp32(engine: str) -> None:
    net = _randomize(build_supernet(SearchSpace(tiny_config())))
    x = torch.randn(2, 1, 32, 32)
    fast = optimize(net, engine=engine, example=x, bf16=False)  # fp32 also where the CPU has native bf16
    assert fast.engine == engine and fast.fallback is None
    assert fast.parity is not None and fast.parity <= FP32_TOL
    with torch.no_grad():
        ref = net(x)
    assert _max_rel(fast(x), ref) <= FP32_TOL
    if engine != "compiled":  # another shape (a recompile would double the test's time; same code path)
        other = torch.randn(1, 1, 48, 64)
        with torch.no_grad():
            ref_other = net(other)
        assert _max_rel(fast(other), ref_other) <= FP32_TOL
    assert engine in fast.description and "BN folded" in fast.description


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="weight packing is oneDNN's")
def test_the_compiled_engine_freezes_and_packs_the_weights() -> None:
    """``torch.compile(options={"freezing": True})`` left the weights as graph inputs (torch 2.13): no
    pre-packed oneDNN convolutions, no conv + ReLU6 fusion. The compiled engine packs every conv."""
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config
    from torch._dynamo.utils import counters

    net = _randomize(build_supernet(SearchSpace(tiny_config())))
    counters.clear()
    torch._dynamo.reset()
    with inductor_config.patch(fx_graph_cache=False), functorch_config.patch(enable_autograd_cache=False):
        optimize(net, engine="compiled", example=torch.randn(1, 1, 32, 32))
    assert counters["inductor"]["mkldnn_conv_weight_pack_matcher_count"] > 0


def test_reference_engine_is_the_model_itself() -> None:
    net = _randomize(build_supernet(SearchSpace(tiny_config())))
    fast = optimize(net, engine="reference")
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(fast(x), net(x))
    assert fast.parity is None and fast.description.startswith("reference")


def test_map_gives_each_batch_s_output_in_order_and_refuses_a_bad_in_flight() -> None:
    net = _randomize(build_supernet(SearchSpace(tiny_config())))
    fast = optimize(net, engine="eager")
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(b, 1, 32, 32, generator=g) for b in (1, 2, 1)]
    outs = list(fast.map(iter(batches), in_flight=3))  # on the CPU: one after another
    assert len(outs) == 3 and all(torch.equal(o, fast(x)) for o, x in zip(outs, batches, strict=True))
    assert not torch.equal(outs[0], outs[2])  # distinct inputs: the order is seen
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(SparseconnError, match=rf"in_flight must be a whole number of batches >= 1, got {bad!r}"):
            list(fast.map(batches, in_flight=bad))


def test_unknown_engine_is_one_line_error() -> None:
    net = build_supernet(SearchSpace(tiny_config()))
    with pytest.raises(SparseconnError, match=r"engine must be one of .*got 'tensorrt'"):
        optimize(net, engine="tensorrt")


def test_auto_compiles_only_when_frames_repay_it() -> None:
    assert choose_engine("auto", "cpu", None) == "eager"
    assert choose_engine("auto", "cpu", 10) == "eager"
    assert choose_engine("auto", "cpu", fastpath.COMPILE_MIN_FRAMES["cpu"]) == "compiled"
    assert choose_engine("auto", "cuda", fastpath.COMPILE_MIN_FRAMES["cuda"]) == "compiled"
    assert choose_engine("onnxruntime", "cpu", 10**6) == "onnxruntime"


def test_a_path_that_fails_its_check_falls_back_under_auto_and_fails_when_named(monkeypatch) -> None:
    net = _randomize(build_supernet(SearchSpace(tiny_config())))
    x = torch.randn(1, 1, 32, 32)
    monkeypatch.setattr(fastpath, "FP32_TOL", -1.0)  # nothing passes (fp32 also where the CPU has native bf16)
    auto = optimize(net, engine="auto", example=x, bf16=False)
    assert auto.engine == "reference" and "eager failed" in auto.fallback and "differs from eager fp32" in auto.fallback
    with pytest.raises(SparseconnError, match="engine 'eager' differs from eager fp32"):
        optimize(net, engine="eager", example=x, bf16=False)


def test_bf16_is_used_only_where_the_hardware_has_it() -> None:
    net = _randomize(build_supernet(SearchSpace(tiny_config())))
    x = torch.randn(1, 1, 32, 32)
    if fastpath.cpu_has_fast_bf16():
        fast = optimize(net, engine="eager", example=x, bf16=True)
        scale = max(1.0, float(net(x).detach().abs().max()))
        assert fast.dtype == torch.bfloat16 and fast.parity <= fastpath.BF16_TOL * scale
    else:
        assert optimize(net, engine="eager", example=x).dtype is None  # no bf16 by default here
        with pytest.raises(SparseconnError, match="no native bf16"):
            optimize(net, engine="eager", example=x, bf16=True)
        with pytest.raises(SparseconnError, match="no native bf16"):  # auto does not fall back silently
            optimize(net, engine="auto", example=x, bf16=True)


def test_bf16_on_a_cpu_that_has_it_and_precision_s_one_line_errors(monkeypatch) -> None:
    net = _randomize(build_supernet(SearchSpace(tiny_config())))
    x = torch.randn(1, 1, 32, 32)
    monkeypatch.setattr(fastpath, "cpu_has_fast_bf16", lambda: True)  # bf16 runs on any CPU, only slowly
    fast = optimize(net, engine="eager", example=x)
    assert fast.dtype == torch.bfloat16 and "bf16" in fast.description
    assert fast.parity <= fastpath.BF16_TOL * max(1.0, float(net(x).detach().abs().max()))
    assert optimize(net, engine="eager", example=x, bf16=False).dtype is None
    with pytest.raises(SparseconnError, match="engine 'reference' runs in fp32 only"):
        optimize(net, engine="reference", example=x, bf16=True)
    assert [fastpath.parse_precision(p) for p in fastpath.PRECISIONS] == [None, False, True]
    with pytest.raises(SparseconnError, match="--precision must be one of auto, fp32, bf16, got 'fp16'"):
        fastpath.parse_precision("fp16", "--precision")


def test_cpu_allocator_tuning_is_idempotent() -> None:
    first = tune_cpu_allocator()
    assert isinstance(first, bool) and tune_cpu_allocator() is first


def test_evaluate_reports_the_latency_path_and_refuses_an_unknown_engine(tmp_path) -> None:
    from typer.testing import CliRunner

    from sparseconn.cli import app
    from sparseconn.engine.config import load_run_config
    from sparseconn.engine.evaluate import evaluate
    from sparseconn.engine.jobs import RunOptions, prune, search, train
    from tests.toy_task import write_toy_config

    cfg = load_run_config(write_toy_config(tmp_path))

    search(cfg, tmp_path / "s", RunOptions(progress=False))
    train(cfg, prune(tmp_path / "s"), tmp_path / "c", RunOptions(progress=False))
    result = evaluate(tmp_path / "c", RunOptions(progress=False), latency_size=(32, 32), report=False)
    (path,) = result["latency_engines"].values()
    assert path.startswith("eager (BN folded") and "max |Δ| vs eager fp32" in path
    ref = evaluate(tmp_path / "c", RunOptions(progress=False), latency_size=(32, 32), report=False,
                   engine="reference")
    assert list(ref["latency_engines"].values()) == ["reference (fp32, NCHW)"]
    out = CliRunner().invoke(app, ["evaluate", str(tmp_path / "c"), "--engine", "tensorrt"])
    assert out.exit_code == 2 and "engine must be one of" in out.output and "Traceback" not in out.output


def test_input_ops_that_do_not_compile_well_stay_eager_in_a_compiled_model() -> None:
    from sparseconn_tasks.phase_retrieval.inputs import SidebandInput  # importing registers the op

    net = build_supernet(SearchSpace(tiny_config(input={"name": "sideband"})))
    assert SidebandInput.compilable is False and net.input_op._parts is None
    assert fastpath._keep_eager(net) == ["SidebandInput eager, its plane arithmetic compiled"]
    assert net.input_op._parts is not None  # compile_parts ran
    assert fastpath._keep_eager(build_supernet(SearchSpace(tiny_config()))) == []


def test_weights_cast_once_give_autocast_s_numbers_exactly() -> None:
    net, _ = fold_batchnorm(_randomize(build_supernet(SearchSpace(tiny_config()))))
    cast = fastpath.copy.deepcopy(net)
    n = fastpath.cast_weights(cast, torch.bfloat16)
    convs = [m for m in cast.modules() if isinstance(m, nn.Conv2d)]
    assert n == len(convs) > 0 and all(m.weight.dtype == torch.bfloat16 for m in convs)
    x = torch.randn(1, 1, 32, 32)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(cast(x), net(x))  # autocast casts exactly these tensors, the same way


def test_two_networks_and_a_second_size_compile_in_one_process() -> None:
    """The compiled engine compiles static shapes: with dynamo's default, the second network compiled in a
    process (GraphNet.forward again) or a second frame size went dynamic, and the frozen oneDNN convolutions
    then failed their stride check ("expected size 8==8, stride 1==256", torch 2.13)."""
    space = SearchSpace(tiny_config())
    for net in (_randomize(build_supernet(space)), _randomize(_child(space), seed=3)):
        x = torch.randn(1, 1, 32, 32)
        fast = optimize(net, engine="compiled", example=x, bf16=False)
        assert fast.engine == "compiled" and fast.fallback is None
        with torch.no_grad():
            assert _max_rel(fast(x), net(x)) <= FP32_TOL
    other = torch.randn(1, 1, 48, 64)
    with torch.no_grad():
        assert _max_rel(fast(other), net(other)) <= FP32_TOL


class _Forwards(nn.Module):
    """A conv, then one thing a CUDA graph cannot hold (or none)."""

    def __init__(self, what: str) -> None:
        super().__init__()
        self.conv, self.what = nn.Conv2d(1, 2, 3, padding=1), what

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if self.what == "values":
            y = y * torch.tensor([[[[1.0]], [[2.0]]]], device=x.device)
        elif self.what == "numpy":
            y = y + torch.from_numpy(np.ones(1, dtype=np.float32)).to(x.device)
        elif self.what == "solve":
            y = y + torch.linalg.solve(torch.eye(2, device=x.device), y.mean(dim=(2, 3))[..., None])[..., None]
        elif self.what == "read":
            y = y * float(y.abs().max())
        elif self.what == "ones":  # made on the device: fine
            y = y + torch.ones(2, 1, 1, device=x.device)
        return y


@pytest.mark.parametrize(("what", "found"), [
    ("ones", None), ("values", "a copy from the host"), ("numpy", "a copy from the host"),
    ("solve", "checks its result for errors on the host"), ("read", "a value read on the host")])
def test_host_round_trips_names_what_a_cuda_graph_cannot_hold(what: str, found: str | None) -> None:
    trips = fastpath.host_round_trips(_Forwards(what), (1, 1, 16, 16))
    assert (trips == []) if found is None else (len(trips) == 1 and found in trips[0]), trips

