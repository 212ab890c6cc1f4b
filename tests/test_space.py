from __future__ import annotations

import pytest

from sparseconn.config import load_space_config
from sparseconn.edge_rules import EDGE_RULES
from sparseconn.errors import SpaceError
from sparseconn.graph import split_key
from sparseconn.registry import RegistryError
from sparseconn.space import SearchSpace
from tests.conftest import tiny_config


def test_tiny_dense_candidates(tiny_cfg):
    space = SearchSpace(tiny_cfg)
    # D2 (deeper) is computed first and feeds D1; every encoder node and G feed both.
    assert space.decoder_nodes == ["D2", "D1"]
    assert space.output == "D1"
    assert sorted(space.candidates) == sorted(
        ["E1->D2", "E2->D2", "G->D2", "E1->D1", "E2->D1", "G->D1", "D2->D1"]
    )
    g = space.graph
    assert g.nodes["E1"] == {"kind": "encoder", "channels": 8, "stride": 2, "size": None, "feature": 0, "order": 0}
    assert g.nodes["G"]["stride"] is None and g.nodes["G"]["size"] == 1
    assert g.nodes["D2"]["stride"] == 4 and g.nodes["D2"]["order"] == 0


def test_tiny_sparsemask_candidates():
    cfg = tiny_config(edges={"rule": "sparsemask"})
    space = SearchSpace(cfg)
    # Stage k takes encoders at its depth or deeper plus G and earlier stages: 2(k+1) each.
    assert sorted(space.candidates) == sorted(["E2->D2", "G->D2", "E1->D1", "E2->D1", "G->D1", "D2->D1"])


def test_paper_and_sparsemask_counts():
    paper = SearchSpace(load_space_config("tasks/phase_retrieval.yaml"))
    assert len(paper.candidates) == 100
    assert [paper.graph.nodes[f"D{l}"]["channels"] for l in range(1, 9)] == [8, 16, 24, 32, 40, 48, 56, 64]
    assert paper.decoder_nodes == [f"D{l}" for l in range(8, 0, -1)]
    per_stage = [sum(k.endswith(f"->D{l}") for k in paper.candidates) for l in range(1, 9)]
    assert per_stage == [9 + 8 - l for l in range(1, 9)]
    sm = SearchSpace(load_space_config("tasks/segmentation.yaml"))
    assert len(sm.candidates) == 90
    assert [sum(k.endswith(f"->D{k2}") for k in sm.candidates) for k2 in range(9)] == [2 * (k + 1) for k in range(9)]
    assert sm.graph.nodes["E0"]["channels"] == 1280 and sm.graph.nodes["E8"]["stride"] == 2


def test_stage_groups_follow_candidates(tiny_cfg):
    space = SearchSpace(tiny_cfg)
    groups = space.stage_groups()
    for key, g in zip(space.candidates, groups, strict=True):
        assert split_key(key)[1] == space.decoder_nodes[g]


def test_cycle_is_rejected(tiny_cfg):
    def cyclic(nodes):
        return [("E1", "D1"), ("E1", "D2"), ("D1", "D2"), ("D2", "D1")]

    with pytest.raises(SpaceError, match="cycle"):
        SearchSpace(tiny_cfg, edge_rule=cyclic)


def test_stage_without_inputs_is_rejected(tiny_cfg):
    with pytest.raises(SpaceError, match="D2 has no input"):
        SearchSpace(tiny_cfg, edge_rule=lambda nodes: [("E1", "D1")])


def test_stage_not_leading_to_output_is_rejected(tiny_cfg):
    with pytest.raises(SpaceError, match="D2 does not lead to the output stage D1"):
        SearchSpace(tiny_cfg, edge_rule=lambda nodes: [("E1", "D1"), ("E2", "D2")])


def test_edge_into_encoder_or_unknown_node_is_rejected(tiny_cfg):
    with pytest.raises(SpaceError, match="ends at encoder node 'E1'"):
        SearchSpace(tiny_cfg, edge_rule=lambda nodes: [("E2", "E1")])
    with pytest.raises(SpaceError, match="'E9', which does not exist"):
        SearchSpace(tiny_cfg, edge_rule=lambda nodes: [("E9", "D1")])


def test_impossible_specs_name_the_node():
    with pytest.raises(SpaceError, match="E3: encoder feature 5 does not exist"):
        SearchSpace(tiny_config(encoder={"name": "tiny", "features": [0, 1, 5]}))
    with pytest.raises(SpaceError, match="G: ground source feature 7"):
        SearchSpace(tiny_config(ground=[{"name": "G", "source": 7}]))
    with pytest.raises(SpaceError, match="D4: decoder stage aligned with encoder node position 3"):
        SearchSpace(tiny_config(decoder={"stages": [0, 3]}))
    with pytest.raises(SpaceError, match="output stage 'D7'"):
        SearchSpace(tiny_config(decoder={"output": "D7"}))
    with pytest.raises(SpaceError, match="node name 'E1' is used twice"):
        SearchSpace(tiny_config(ground=[{"name": "E1"}]))


def test_unknown_rule_lists_valid_names():
    msg = r"unknown edge rule 'dens' \(did you mean 'dense'\?\); available: dense, (.*, )?sparsemask"
    with pytest.raises(RegistryError, match=msg):
        SearchSpace(tiny_config(edges={"rule": "dens"}))
    assert {"dense", "sparsemask"} <= set(EDGE_RULES.names())


def test_edge_macs_match_hand_count(tiny_cfg):
    space = SearchSpace(tiny_cfg)
    macs = space.edge_macs((32, 32))
    # E1 (stride 2, 16x16) into D2 (stride 4): down-sample first, 3x3 conv 8->8 at 8x8.
    assert macs["E1->D2"] == 9 * 8 * 8 * 8 * 8
    # G (1x1) into D1: conv at 1x1 first, then up-sample.
    assert macs["G->D1"] == 9 * 8 * 8 * 1 * 1
    # E2 (8x8) into D1 (16x16): conv at the source size.
    assert macs["E2->D1"] == 9 * 8 * 8 * 8 * 8
