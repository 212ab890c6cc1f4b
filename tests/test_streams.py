"""The scheduled forward pass (sparseconn.engine.streams): the same output as GraphNet.forward, with each
connection started as soon as its source and its destination's size exist. The CUDA streams themselves are
checked by tests/test_gpu.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sparseconn.architecture import Architecture
from sparseconn.encoders import build_encoder
from sparseconn.engine.fastpath import optimize, use_streams
from sparseconn.engine.streams import Scheduled, Serial
from sparseconn.errors import SparseconnError
from sparseconn.network import build_child, build_supernet
from sparseconn.space import SearchSpace
from tests.conftest import tiny_config
from tests.test_fastpath import _mobilenet_space, _randomize

DEMO_CHILD = Path(__file__).parents[1] / "tasks" / "phase_retrieval" / "architectures" / "demo_child.json"


class Recording(Serial):
    """Serial, writing down the order in which the connections start and are joined by their stages."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def side(self, fn, args, after):
        self.log.append(f"start {fn.spec.key}")
        return super().side(fn, args, after)

    def join(self, y, done):
        self.log.append("join")
        return super().join(y, done)


@pytest.mark.parametrize("encoder", ["mobilenet_v2", "tiny"])
def test_encoder_steps_chain_to_its_features(encoder: str) -> None:
    params = {"width": 0.35} if encoder == "mobilenet_v2" else {"channels": [4, 8, 8], "strides": [2, 4, 8]}
    enc = build_encoder(encoder, 1, **params).eval()
    x = torch.randn(1, 1, 64, 64)
    upto = 3 if encoder == "mobilenet_v2" else 1
    with torch.no_grad():
        want = enc(x, upto=upto)
        steps = enc.steps(upto=upto)
        assert len(steps) == upto + 1 and len(enc.steps()) == len(enc.out_channels)
        for step, feat in zip(steps, want, strict=True):
            x = step(x)
            assert torch.equal(x, feat)


def test_the_demo_child_scheduled_gives_its_forward_output() -> None:
    net = _randomize(build_child(Architecture.load(DEMO_CHILD)))
    x = torch.randn(1, 1, 128, 128)
    log: list[str] = []
    with torch.no_grad():
        want = net(x)
        got = Scheduled(net, Recording(log))(x)
    assert torch.equal(got, want)
    assert Scheduled(net).parts_count == 1 + 9 + 19 + 4 + 1 + 1  # input op, encoder steps, edges, stages, G, head
    starts = [e.removeprefix("start ") for e in log if e.startswith("start ")]
    assert sorted(starts) == sorted(net.edges)  # every connection once
    # Connections from shallow features start first (E1 -> D1 needs only E1 and D1's size, both made by the
    # first encoder step); a decoder-to-decoder one starts once its source stage is made.
    assert starts[0] == "E1->D1"
    assert starts.index("D6->D5") > starts.index("G->D6")
    assert starts.index("E1->D4") < starts.index("E8->D6")


@pytest.mark.parametrize("which", ["supernet", "child"])
def test_a_supernet_and_a_child_scheduled_match_their_forward(which: str) -> None:
    space = SearchSpace(_mobilenet_space())
    net = build_supernet(space) if which == "supernet" else build_child(space_child(space))
    net = _randomize(net)
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(Scheduled(net)(x), net(x), rtol=0, atol=1e-6)


def space_child(space: SearchSpace) -> Architecture:
    from sparseconn.pruning import derive

    weights = {k: (0.9 if i % 3 == 0 else 0.0) for i, k in enumerate(space.candidates)}
    return derive(space.graph, space.cfg, weights, 1e-3, False)


def test_an_encoder_without_steps_runs_whole(monkeypatch) -> None:
    net = _randomize(build_supernet(SearchSpace(tiny_config())))
    monkeypatch.setattr(type(net.encoder), "steps", lambda self, upto=None: None)
    scheduled = Scheduled(net)
    assert scheduled.steps is None and scheduled.whole is not None
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(scheduled(x), net(x), rtol=0, atol=1e-6)


def test_streams_are_for_cuda_graph_nets_and_say_so_in_one_line() -> None:
    net = build_supernet(SearchSpace(tiny_config()))
    assert use_streams(net, "cuda") and not use_streams(net, "cuda", side_streams=False)
    assert not use_streams(net, "cuda", engine="compiled") and use_streams(net, "cuda", True, "compiled")
    assert not use_streams(net, "cpu") and not use_streams(torch.nn.Conv2d(1, 1, 3), "cuda")
    with pytest.raises(SparseconnError, match="side_streams=True needs a CUDA device, got 'cpu'"):
        optimize(net, device="cpu", engine="auto", side_streams=True)
    with pytest.raises(SparseconnError, match="needs a GraphNet with connections, got Conv2d"):
        use_streams(torch.nn.Conv2d(1, 1, 3), "cuda", side_streams=True)


def test_compiled_parts_that_share_code_raise_dynamo_s_compile_limit_while_they_compile() -> None:
    import torch._dynamo.config as dynamo_config

    from sparseconn.engine.fastpath import _Frozen

    name = "recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit"
    before = getattr(dynamo_config, name)
    seen = _Frozen(lambda x: getattr(dynamo_config, name), parts=before + 20)(torch.zeros(1))
    assert seen == before + 20 and getattr(dynamo_config, name) == before
    assert _Frozen(lambda x: getattr(dynamo_config, name))(torch.zeros(1)) == before
