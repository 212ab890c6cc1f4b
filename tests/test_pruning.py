from __future__ import annotations

import pytest

from sparseconn.config import load_space_config
from sparseconn.errors import ArchitectureError
from sparseconn.pruning import derive, reprune
from sparseconn.space import SearchSpace
from tests.conftest import tiny_config


def _weights(space, ones):
    return {k: (0.9 if k in ones else 0.0004) for k in space.candidates}


def test_threshold_and_kept_edges(tiny_cfg):
    space = SearchSpace(tiny_cfg)
    w = _weights(space, {"E1->D1", "D2->D1", "E2->D2"})
    w["G->D1"] = 0.001  # exactly at the threshold: kept (the rule drops w < 0.001)
    arch = derive(space.graph, tiny_cfg, w)
    assert sorted(arch.connections) == ["D2->D1", "E1->D1", "E2->D2", "G->D1"]
    assert arch.candidates == w and arch.threshold == 1e-3


def test_stage_without_inputs_is_removed_with_its_edges(tiny_cfg):
    space = SearchSpace(tiny_cfg)
    arch = derive(space.graph, tiny_cfg, _weights(space, {"E1->D1", "D2->D1"}))
    assert arch.removed_stages == ["D2"]
    assert arch.connections == ["E1->D1"]
    assert {n.name for n in arch.nodes} == {"E1", "D1"}  # unused encoder and ground nodes dropped


def test_stage_nobody_consumes_is_removed():
    cfg = load_space_config("tasks/phase_retrieval.yaml")
    space = SearchSpace(cfg)
    # D3 has inputs but feeds nothing; D2 feeds D1; D4 feeds only D3, so it dies once D3 does.
    ones = {"E1->D1", "D2->D1", "E2->D2", "E3->D3", "E4->D4", "D4->D3"}
    arch = derive(space.graph, cfg, _weights(space, ones))
    assert set(arch.removed_stages) == {f"D{l}" for l in range(3, 9)}
    assert sorted(arch.connections) == ["D2->D1", "E1->D1", "E2->D2"]
    assert "H" in {n.name for n in arch.nodes}


def test_pruning_is_idempotent():
    cfg = load_space_config("tasks/phase_retrieval.yaml")
    space = SearchSpace(cfg)
    w = {k: ((hash(k) % 7) / 6.0 if (hash(k) % 3) else 0.0) for k in space.candidates}
    w.update({"E1->D1": 0.8})
    arch = derive(space.graph, cfg, w)
    again = reprune(arch)
    assert again.connections == arch.connections
    assert [n.name for n in again.nodes] == [n.name for n in arch.nodes]
    assert reprune(again).model_dump() == again.model_dump()


def test_everything_pruned_is_an_error(tiny_cfg):
    space = SearchSpace(tiny_cfg)
    with pytest.raises(ArchitectureError, match="no connection into the output stage D1"):
        derive(space.graph, tiny_cfg, {k: 0.0 for k in space.candidates})


def test_missing_weight_is_an_error(tiny_cfg):
    space = SearchSpace(tiny_cfg)
    with pytest.raises(ArchitectureError, match="no weight for connection"):
        derive(space.graph, tiny_cfg, {"E1->D1": 1.0})


def test_sparsemask_redundancy_cleanups():
    cfg = tiny_config(encoder={"name": "tiny", "params": {"channels": [8, 8, 8], "strides": [2, 4, 8]}})
    space = SearchSpace(cfg)
    # D3 and D2 both take exactly {E3, G}; D2 also feeds D1 -> D3 is redundant (same inputs) and its
    # consumer D1 is rewired to D2.
    ones = {"E3->D3", "G->D3", "E3->D2", "G->D2", "D3->D1", "D2->D1", "E1->D1"}
    plain = derive(space.graph, cfg, _weights(space, ones))
    assert {"D3->D1", "D2->D1"} <= set(plain.connections)
    clean = derive(space.graph, cfg, _weights(space, ones), redundancy=True)
    assert "D3" in clean.removed_stages
    assert sorted(clean.connections) == ["D2->D1", "E1->D1", "E3->D2", "G->D2"]
    assert reprune(clean, redundancy=True).connections == clean.connections
