"""The graph vocabulary every layer shares: node kinds and attributes, connection names, graph checks.

Search spaces, architectures, networks and drawings all describe a network as a ``networkx.DiGraph``
whose node attributes are the fields of :class:`NodeInfo` and whose edges may carry ``candidate``
(a searchable connection; the edge from the output stage to the head is fixed) and ``weight``. The
graph names its output stage in ``graph.graph["output"]``. This module imports networkx, never torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal, get_args

import networkx as nx

from sparseconn.errors import GraphError, SpaceError, SparseconnError

NodeKind = Literal["encoder", "ground", "decoder", "head"]
KINDS: tuple[str, ...] = get_args(NodeKind)


@dataclass(frozen=True)
class NodeInfo:
    """The one node schema: a graph node's attributes, and (with a name) a node of ``architecture.json``.

    ``stride`` is None for a ground node, which has a fixed pooled ``size`` instead; ``feature`` is the
    encoder feature index (for a decoder stage, the one it is aligned with); ``order`` is an encoder's
    position in the node list, a decoder stage's processing position (0 = computed first = deepest).
    """

    kind: NodeKind
    channels: int | None
    stride: int | None = None
    size: int | None = None
    feature: int | None = None
    order: int = 0

    def attrs(self) -> dict[str, Any]:
        """The graph-node attributes: the fields above (a subclass's own fields, such as a name, left out)."""
        return {f.name: getattr(self, f.name) for f in fields(NodeInfo)}

    @classmethod
    def of(cls, g: nx.DiGraph, node: str) -> NodeInfo:
        """The attributes of ``node`` in ``g``."""
        return NodeInfo(**{f.name: g.nodes[node][f.name] for f in fields(NodeInfo)})


def edge_key(src: Any, dst: Any) -> str:
    """The name of a connection, as used in state dicts, logs, weight dicts and architecture files:
    ``"E3->D1"``."""
    return f"{src}->{dst}"


def split_key(key: str) -> tuple[str, str]:
    """``"E3->D1"`` -> ``("E3", "D1")``, the inverse of :func:`edge_key`."""
    src, sep, dst = key.partition("->")
    if not sep or not src or not dst:
        raise SparseconnError(f"connection name {key!r} is not of the form 'SRC->DST'")
    return src, dst


def make_graph(nodes: Mapping[str, NodeInfo], candidates: Iterable[tuple[str, str]], output: str,
               head: str | None) -> nx.DiGraph:
    """Build and check the graph; raises :class:`SpaceError` naming the bad node or edge."""
    g = nx.DiGraph(output=output)
    for name, info in nodes.items():
        g.add_node(name, **info.attrs())
    seen = set()
    for src, dst in candidates:
        for end in (src, dst):
            if end not in g:
                raise SpaceError(f"connection {edge_key(src, dst)} names node {end!r}, which does not exist")
        if g.nodes[dst]["kind"] != "decoder":
            raise SpaceError(f"connection {edge_key(src, dst)} ends at {g.nodes[dst]['kind']} node {dst!r}; "
                             "candidate connections must end at a decoder stage")
        if g.nodes[src]["kind"] == "head" or src == dst:
            raise SpaceError(f"connection {edge_key(src, dst)} is not allowed (head source or self loop)")
        if (src, dst) in seen:
            raise SpaceError(f"connection {edge_key(src, dst)} is listed twice")
        seen.add((src, dst))
        g.add_edge(src, dst, candidate=True)
    check_graph(g)
    if head is not None:
        g.add_edge(output, head, candidate=False)
    return g


def check_graph(g: Any) -> None:
    """Raise a one-line :class:`~sparseconn.errors.GraphError` unless ``g`` is a well-formed graph.

    Every graph: a ``networkx.DiGraph`` whose nodes all have a known ``kind``, without cycles. A graph
    that names its output stage (``g.graph["output"]``, as every search space and architecture does)
    must also be wired: the output is a decoder stage, and every decoder stage has an input, is
    reachable from an encoder or ground node and leads to the output. A bare graph drawn by hand
    (no output named) gets the first checks only.
    """
    if not isinstance(g, nx.DiGraph):
        raise GraphError(f"expected a networkx.DiGraph search space or architecture, got {type(g).__name__}")
    output = g.graph.get("output")
    if output is not None and (output not in g or g.nodes[output].get("kind") != "decoder"):
        raise GraphError(f"output stage {output!r} is not a decoder stage; decoder stages: "
                         f"{', '.join(str(n) for n, k in g.nodes(data='kind') if k == 'decoder') or 'none'}")
    for node, kind in g.nodes(data="kind"):
        if kind not in KINDS:
            raise GraphError(f"node {node!r} has kind {kind!r}: expected one of {', '.join(KINDS)}")
    try:
        cycle = nx.find_cycle(g)
        raise GraphError("connections form a cycle: " + " -> ".join([str(u) for u, _ in cycle] + [str(cycle[0][0])]))
    except nx.NetworkXNoCycle:
        pass
    if output is None:
        return
    sources = [n for n in g if g.nodes[n]["kind"] in ("encoder", "ground")]
    reachable = set(sources).union(*(nx.descendants(g, s) for s in sources)) if sources else set()
    feeds_output = nx.ancestors(g, output) | {output}
    for n in decoder_nodes(g):
        if g.in_degree(n) == 0:
            raise GraphError(f"decoder stage {n} has no input connections")
        if n not in reachable:
            raise GraphError(f"decoder stage {n} is not reachable from any encoder or ground node")
        if n not in feeds_output:
            raise GraphError(f"decoder stage {n} does not lead to the output stage {output}")


def decoder_nodes(g: nx.DiGraph) -> list[str]:
    """Decoder stages in computation order: topological, ties broken by the declared ``order``."""
    dec = g.subgraph([n for n in g if g.nodes[n]["kind"] == "decoder"])
    return list(nx.lexicographical_topological_sort(dec, key=lambda n: (g.nodes[n].get("order", 0), str(n))))


def nodes_of(g: nx.DiGraph, kind: str) -> list[str]:
    return sorted((n for n in g if g.nodes[n]["kind"] == kind), key=lambda n: (g.nodes[n]["order"], n))


def candidate_edges(g: nx.DiGraph) -> list[str]:
    """Candidate connection names in a fixed order: by destination's computation order, then source."""
    kind_rank = {k: i for i, k in enumerate(KINDS)}
    pos = {n: i for i, n in enumerate(decoder_nodes(g))}
    edges = [(u, v) for u, v, c in g.edges(data="candidate") if c]
    edges.sort(key=lambda e: (pos[e[1]], kind_rank[g.nodes[e[0]]["kind"]], pos.get(e[0], g.nodes[e[0]]["order"]),
                              e[0]))
    return [edge_key(u, v) for u, v in edges]


def spatial_size(g: nx.DiGraph, node: str, size: tuple[int, int]) -> tuple[int, int]:
    """Spatial size of a node's feature for an input of ``size``: ceil(size / stride), as strided
    convs with 'same' padding give; ground nodes have their pooled size."""
    a = g.nodes[node]
    if a["stride"] is None:
        return (a["size"], a["size"])
    return (math.ceil(size[0] / a["stride"]), math.ceil(size[1] / a["stride"]))


def edge_macs(g: nx.DiGraph, size: tuple[int, int], kernel: int, policy: str = "paper") -> dict[str, int]:
    """Multiply-accumulates of each candidate connection's conv at input ``size`` (the conv runs at
    the source size for conv-then-resize, at the destination size for resize-then-conv)."""
    from sparseconn.ops import RESIZE_POLICIES  # ops imports torch; keep this module light

    rule = RESIZE_POLICIES.get(policy)
    out = {}
    for u, v, c in g.edges(data="candidate"):
        if not c:
            continue
        order = rule(g.nodes[u]["stride"], g.nodes[v]["stride"])
        h, w = spatial_size(g, v if order == "resize_first" else u, size)
        out[edge_key(u, v)] = kernel * kernel * g.nodes[u]["channels"] * g.nodes[v]["channels"] * h * w
    return out
