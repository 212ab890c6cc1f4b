from __future__ import annotations

import pytest
import torch

from sparseconn.network import build_child, build_supernet
from sparseconn.pruning import derive
from sparseconn.space import SearchSpace
from tests.conftest import KEEP, inherited_pair, tiny_config


def _hard_weights(space):
    return {k: (1.0 if k in KEEP else 0.0) for k in space.candidates}


@pytest.mark.parametrize("fusion", ["weighted_sum", "concat"])
@pytest.mark.parametrize("stage_op", ["relu6_conv_bn_relu6", "bn"])
def test_hard_gated_supernet_equals_child(fusion, stage_op):
    cfg = tiny_config(decoder={"fusion": fusion, "stage_op": stage_op, "depth": {"rule": "constant", "value": 8}})
    sup, child = inherited_pair(cfg)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(sup(x), child(x), atol=1e-5)


def test_parity_with_sparsemask_edge_options():
    cfg = tiny_config(edges={"rule": "sparsemask", "kernel": 1, "preact": "relu6", "norm_before_resize": True,
                             "align_corners": True, "resize": "conv_first"})
    sup, child = inherited_pair(cfg, keep={"E1->D1", "E2->D1", "D2->D1", "E2->D2"}, norm_seed=3)
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(sup(x), child(x), atol=1e-5)


def test_child_from_scratch_has_no_gates_and_no_edge_norm(tiny_cfg):
    space = SearchSpace(tiny_cfg)
    child = build_child(derive(space.graph, tiny_cfg, _hard_weights(space)))
    assert child.connections is None and child.connection_parameters() == []
    assert all(e.bn is None and e.conv.bias is None for e in child.edges.values())
    assert sorted(child.keys) == sorted(KEEP)
    assert child(torch.randn(1, 1, 33, 31)).shape == (1, 8, 17, 16)  # odd sizes follow the encoder


def test_connection_parameters_are_separate_and_registered(tiny_cfg):
    sup = build_supernet(SearchSpace(tiny_cfg))
    conn = sup.connection_parameters()
    assert len(conn) == 7 and all(p.numel() == 1 for p in conn)
    ids = {id(p) for p in conn}
    assert not ids & {id(p) for p in sup.weight_parameters()}
    assert len(sup.weight_parameters()) + len(conn) == len(list(sup.parameters()))
    assert "connections.raw.E1->D1" in sup.state_dict()
    assert sup.connections.snapshot()["E1->D1"] == pytest.approx(0.5)


def test_clamp_projection_after_step(tiny_cfg):
    sup = build_supernet(SearchSpace(tiny_cfg))
    with torch.no_grad():
        sup.connections.raw["E1->D1"].fill_(1.7)
        sup.connections.raw["G->D1"].fill_(-0.2)
    sup.constrain_()
    snap = sup.connections.snapshot()
    assert snap["E1->D1"] == 1.0 and snap["G->D1"] == 0.0


def test_clamp_noise_and_sigmoid_parameterisations():
    cfg = tiny_config(connections={"param": "clamp_noise", "noise": 0.1})
    sup = build_supernet(SearchSpace(cfg))
    assert sup.connections.raw["E1->D1"].item() == pytest.approx(1.0)  # SparseMask's raw init
    sup.train()
    torch.manual_seed(0)
    a = sup.connections.vector()
    b = sup.connections.vector()
    assert not torch.equal(a, b) and ((a >= 0) & (a <= 1)).all()
    sup.eval()
    assert torch.equal(sup.connections.vector(), torch.full((7,), 0.5))
    sig = build_supernet(SearchSpace(tiny_config(connections={"param": "sigmoid", "init": 0.2})))
    assert sig.connections.vector()[0].item() == pytest.approx(0.2, abs=1e-6)


def test_gradients_reach_connection_weights_and_checkpointing_matches(tiny_cfg):
    torch.manual_seed(0)
    x = torch.randn(2, 1, 32, 32)
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(1)
        sup = build_supernet(SearchSpace(tiny_config())).train()
        sup.checkpointing = ckpt
        sup(x).square().mean().backward()
        grads.append(torch.stack([p.grad for p in sup.connection_parameters()]))
    assert grads[0].abs().sum() > 0
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_child_encoder_stops_early():
    cfg = tiny_config(encoder={"name": "tiny", "params": {"channels": [8, 8, 8], "strides": [2, 4, 8]}},
                      ground=[{"name": "G", "source": 2, "size": 1}])
    space = SearchSpace(cfg)
    w = {k: (1.0 if k in {"E1->D1", "E2->D1"} else 0.0) for k in space.candidates}
    child = build_child(derive(space.graph, cfg, w))
    assert build_supernet(space).upto == 2 and child.upto == 1


@pytest.mark.parametrize(("h", "w", "size"), [(32, 32, 3), (17, 23, 4), (8, 8, 1)])
def test_pooling_by_one_product_is_adaptive_average_pooling(h: int, w: int, size: int) -> None:
    """The ground pool's CUDA form (overlapping bins when ``size`` does not divide the side)."""
    from sparseconn.ops import pool_by_product

    x = torch.randn(2, 40, h, w).contiguous(memory_format=torch.channels_last)
    got = pool_by_product(x, size)
    assert got.shape == (2, 40, size, size)
    assert torch.allclose(got, torch.nn.functional.adaptive_avg_pool2d(x, size), atol=1e-6)
