"""Edge rules: which candidate connections a search space offers.

An edge rule is a function ``rule(nodes) -> list[(src, dst)]`` over the space's nodes (a dict of
name -> :class:`~sparseconn.graph.NodeInfo`). It sees only data, so user rules are a few lines::

    @register_edge_rule("skip_only")
    def skip_only(nodes):
        return [(f"E{n.order + 1}", name) for name, n in nodes.items() if n.kind == "decoder"]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from sparseconn.graph import NodeInfo
from sparseconn.registry import Registry, make_register

EdgeRule = Callable[[Mapping[str, NodeInfo]], list[tuple[str, str]]]
EDGE_RULES: Registry[EdgeRule] = Registry("edge rule")
register_edge_rule = make_register(EDGE_RULES)


def _of_kind(nodes: Mapping[str, NodeInfo], kind: str) -> list[str]:
    return [n for n, info in nodes.items() if info.kind == kind]


def _depth(info: NodeInfo) -> tuple[int, int]:
    # Deeper = coarser stride, ties broken by encoder feature index (MobileNetV2's E5/E6 share /16).
    return (info.stride or 10**9, info.feature if info.feature is not None else 10**9)


@register_edge_rule("dense")
def dense(nodes: Mapping[str, NodeInfo]) -> list[tuple[str, str]]:
    """The paper's rule: every encoder node, every ground node and every deeper decoder stage feed
    each decoder stage. With 8 encoder nodes, one ground and 8 stages: 8 * 9 + 28 = 100 edges."""
    enc, gnd, dec = _of_kind(nodes, "encoder"), _of_kind(nodes, "ground"), _of_kind(nodes, "decoder")
    edges = []
    for d in dec:
        edges += [(s, d) for s in enc + gnd]
        edges += [(s, d) for s in dec if nodes[s].order < nodes[d].order]  # computed earlier = deeper
    return edges


@register_edge_rule("sparsemask")
def sparsemask(nodes: Mapping[str, NodeInfo]) -> list[tuple[str, str]]:
    """SparseMask's rule: stage k (k-th deepest) takes the encoder features at its own depth or
    deeper (E_0..E_k) and the "up" inputs U_0..U_k (ground and every earlier stage): 2(k+1) edges,
    90 for 9 stages. Inputs are never finer than the stage, so they are only up-sampled."""
    enc, gnd, dec = _of_kind(nodes, "encoder"), _of_kind(nodes, "ground"), _of_kind(nodes, "decoder")
    edges = []
    for d in dec:
        own = _depth(nodes[d])
        edges += [(s, d) for s in enc if _depth(nodes[s]) >= own]
        edges += [(s, d) for s in gnd]
        edges += [(s, d) for s in dec if nodes[s].order < nodes[d].order]
    return edges
