"""The graph vocabulary (sparseconn.graph): one node schema, connection names and one graph check for
spaces, architectures and drawings."""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import pytest

from sparseconn.architecture import Architecture, NodeSpec
from sparseconn.errors import ArchitectureError, GraphError, SpaceError, SparseconnError
from sparseconn.graph import KINDS, NodeInfo, check_graph, edge_key, make_graph, split_key
from sparseconn.viz import draw_connections, write_dot

FIXTURE = Path(__file__).parent / "fixtures" / "run_36d2709"  # written by the old code


def wired() -> nx.DiGraph:
    """E1 -> D2 -> D1 -> H, output D1, built by make_graph."""
    nodes = {"E1": NodeInfo("encoder", 8, 2), "D2": NodeInfo("decoder", 8, 4, order=0),
             "D1": NodeInfo("decoder", 8, 2, order=1), "H": NodeInfo("head", 1)}
    return make_graph(nodes, [("E1", "D2"), ("D2", "D1"), ("E1", "D1")], "D1", "H")


def test_connection_names_round_trip():
    assert split_key(edge_key("E3", "D1")) == ("E3", "D1")
    for bad in ("E3D1", "->D1", "E3->"):
        with pytest.raises(SparseconnError, match=f"connection name '{bad}' is not of the form 'SRC->DST'"):
            split_key(bad)


def test_node_attributes_are_the_node_info_fields():
    g = wired()
    assert set(g.nodes["E1"]) == {"kind", "channels", "stride", "size", "feature", "order"}
    assert NodeInfo.of(g, "D2") == NodeInfo("decoder", 8, 4, order=0)
    assert KINDS == ("encoder", "ground", "decoder", "head")


def test_architecture_nodes_are_node_infos_written_name_first(tmp_path):
    arch = Architecture.load(FIXTURE / "child" / "architecture.json")
    node = arch.nodes[0]
    assert isinstance(node, NodeInfo) and isinstance(node, NodeSpec)
    assert node.attrs() == NodeInfo.of(arch.graph(), node.name).attrs()
    saved = json.loads(arch.save(tmp_path / "a.json").read_text(encoding="utf-8"))
    assert list(saved["nodes"][0]) == ["name", "kind", "channels", "stride", "size", "feature", "order"]
    old = json.loads((FIXTURE / "child" / "architecture.json").read_text(encoding="utf-8"))
    plugins = old["space"].pop("plugins")
    del old["space"]["checkpointing"]  # run-level settings since 0.2: the architecture carries its plug-ins
    assert saved == {**old, "plugins": plugins}


def test_a_bare_graph_needs_known_kinds_only():
    check_graph(wired())
    bare = nx.DiGraph([("a", "b")])  # drawn by hand: no output named, so no wiring checks
    nx.set_node_attributes(bare, "decoder", "kind")
    check_graph(bare)


def _unknown_kind(g: nx.DiGraph) -> None:
    g.add_node("X", kind="mystery")


def _cycle(g: nx.DiGraph) -> None:
    g.add_edge("D1", "D2")


def _encoder_output(g: nx.DiGraph) -> None:
    g.graph["output"] = "E1"


def _unfed_stage(g: nx.DiGraph) -> None:
    g.remove_edge("E1", "D2")


@pytest.mark.parametrize("spoil, message", [
    (_unknown_kind, "node 'X' has kind 'mystery': expected one of encoder, ground, decoder, head"),
    (_cycle, "connections form a cycle: D2 -> D1 -> D2"),
    (_encoder_output, "output stage 'E1' is not a decoder stage; decoder stages: D2, D1"),
    (_unfed_stage, "decoder stage D2 has no input connections"),
])
def test_one_check_for_every_graph(spoil, message):
    g = wired()
    spoil(g)
    for error in (GraphError, SpaceError, ArchitectureError):  # code that catches either kind gets it
        with pytest.raises(error, match=message) as info:
            check_graph(g)
        assert "\n" not in str(info.value)


def test_a_graph_must_be_a_digraph():
    with pytest.raises(GraphError, match="expected a networkx.DiGraph search space or architecture, got dict"):
        check_graph({})


def test_drawings_use_the_same_check(tmp_path):
    cyclic = wired()
    cyclic.add_edge("D1", "D2")
    with pytest.raises(GraphError, match="connections form a cycle"):
        draw_connections(cyclic)
    with pytest.raises(ArchitectureError, match="connections form a cycle"):
        write_dot(cyclic, tmp_path / "g.dot")
    assert not (tmp_path / "g.dot").exists()
