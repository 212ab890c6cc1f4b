"""Graph data shared by search spaces, architectures, networks and drawings.

Node attributes: ``kind`` (encoder | ground | decoder | head), ``channels``, ``stride`` (None for a
ground node, which has a fixed pooled ``size``), ``feature`` (encoder feature index; for a decoder
stage, the one it is aligned with), ``order`` (encoders: position in the node list; decoders:
processing position, 0 = computed first = deepest). Edge attribute ``candidate`` marks a
searchable connection; the edge from the output stage to the head is fixed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import networkx as nx

from sparseconn.errors import SpaceError

KINDS = ("encoder", "ground", "decoder", "head")


@dataclass(frozen=True)
class NodeInfo:
    kind: str
    channels: int | None
    stride: int | None = None
    size: int | None = None
    feature: int | None = None
    order: int = 0


def edge_key(src: str, dst: str) -> str:
    """The name of a connection, as used in state dicts, logs and architecture files."""
    return f"{src}->{dst}"


def split_key(key: str) -> tuple[str, str]:
    src, sep, dst = key.partition("->")
    if not sep or not src or not dst:
        raise ValueError(f"connection name {key!r} is not of the form 'SRC->DST'")
    return src, dst


def make_graph(nodes: Mapping[str, NodeInfo], candidates: Iterable[tuple[str, str]], output: str,
               head: str | None) -> nx.DiGraph:
    """Build and check the graph; raises :class:`SpaceError` naming the bad node or edge."""
    g = nx.DiGraph()
    for name, info in nodes.items():
        g.add_node(name, **asdict(info))
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
    if output not in g or g.nodes[output]["kind"] != "decoder":
        raise SpaceError(f"output stage {output!r} is not a decoder stage; decoder stages: "
                         f"{', '.join(n for n in g if g.nodes[n]['kind'] == 'decoder')}")
    if head is not None:
        g.add_edge(output, head, candidate=False)
    g.graph["output"] = output
    check_graph(g)
    return g


def check_graph(g: nx.DiGraph) -> None:
    """Acyclic; every decoder stage has inputs, is reachable from the encoder and reaches the output."""
    try:
        cycle = nx.find_cycle(g)
        raise SpaceError("connections form a cycle: " + " -> ".join([u for u, _ in cycle] + [cycle[0][0]]))
    except nx.NetworkXNoCycle:
        pass
    output = g.graph["output"]
    sources = [n for n in g if g.nodes[n]["kind"] in ("encoder", "ground")]
    reachable = set(sources).union(*(nx.descendants(g, s) for s in sources)) if sources else set()
    feeds_output = nx.ancestors(g, output) | {output}
    for n in decoder_nodes(g):
        if g.in_degree(n) == 0:
            raise SpaceError(f"decoder stage {n} has no input connections")
        if n not in reachable:
            raise SpaceError(f"decoder stage {n} is not reachable from any encoder or ground node")
        if n not in feeds_output:
            raise SpaceError(f"decoder stage {n} does not lead to the output stage {output}")


def decoder_nodes(g: nx.DiGraph) -> list[str]:
    """Decoder stages in computation order: topological, ties broken by the declared ``order``."""
    dec = g.subgraph([n for n in g if g.nodes[n]["kind"] == "decoder"])
    return list(nx.lexicographical_topological_sort(dec, key=lambda n: (g.nodes[n]["order"], n)))


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
