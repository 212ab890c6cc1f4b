"""Pruning: from learned connection weights to a child :class:`~sparseconn.architecture.Architecture`.

The paper's rule (§II-B): drop every connection with w < threshold (1e-3), then drop decoder stages
without inputs and stages whose output nobody uses, until nothing changes. SparseMask's two
redundancy clean-ups are an option. Pruning an already-pruned architecture changes nothing.
"""

from __future__ import annotations

import networkx as nx

from sparseconn.architecture import Architecture, EdgeSpec, NodeSpec
from sparseconn.config import SpaceConfig
from sparseconn.errors import ArchitectureError
from sparseconn.graph import NodeInfo, candidate_edges, decoder_nodes, edge_key, nodes_of, split_key


def prune_graph(graph: nx.DiGraph, weights: dict[str, float], threshold: float = 1e-3,
                redundancy: bool = False) -> tuple[nx.DiGraph, list[str]]:
    """Return the pruned copy of ``graph`` (edge attribute ``weight`` set) and the removed stages."""
    keys = candidate_edges(graph)
    missing = [k for k in keys if k not in weights]
    if missing:
        raise ArchitectureError(f"no weight for connection {missing[0]} ({len(missing)} missing)")
    g = graph.copy()
    output = g.graph["output"]
    for k in keys:
        src, dst = split_key(k)
        if weights[k] < threshold:
            g.remove_edge(src, dst)
        else:
            g.edges[src, dst]["weight"] = float(weights[k])
    removed: list[str] = []
    changed = True
    while changed:
        changed = False
        for d in decoder_nodes(g):
            if d == output:
                continue
            if g.in_degree(d) == 0 or g.out_degree(d) == 0:
                g.remove_node(d)
                removed.append(d)
                changed = True
        if not changed and redundancy:
            changed = _drop_redundant(g, output, removed)
    if g.in_degree(output) == 0:
        raise ArchitectureError(f"pruning at threshold {threshold:g} leaves no connection into the output "
                                f"stage {output}; lower the threshold")
    for n in nodes_of(g, "encoder") + nodes_of(g, "ground"):
        if g.out_degree(n) == 0:
            g.remove_node(n)
    return g, removed


def _drop_redundant(g: nx.DiGraph, output: str, removed: list[str]) -> bool:
    """SparseMask's clean-ups, one stage at a time: (a) a stage whose input set equals another's is
    dropped and its consumers rewired to the other; (b) a stage whose inputs and consumers are
    subsets of another's is dropped. Returns whether a stage was dropped."""
    stages = decoder_nodes(g)
    for a in stages:
        if a == output:
            continue
        ins_a, outs_a = set(g.predecessors(a)), set(g.successors(a))
        for b in stages:
            if b == a:
                continue
            ins_b, outs_b = set(g.predecessors(b)), set(g.successors(b))
            same = ins_a == ins_b
            if same and any(c == b or nx.has_path(g, c, b) for c in outs_a):
                continue  # rewiring would create a cycle
            if same or (ins_a <= ins_b and outs_a <= outs_b):
                for c in outs_a - outs_b:
                    g.add_edge(b, c, **g.edges[a, c])  # the rewired edge keeps the replaced weight
                g.remove_node(a)
                removed.append(a)
                return True
    return False


def derive(graph: nx.DiGraph, cfg: SpaceConfig, weights: dict[str, float], threshold: float = 1e-3,
           redundancy: bool = False) -> Architecture:
    """Prune ``graph`` with ``weights`` and package the child as an :class:`Architecture`."""
    kept, removed = prune_graph(graph, weights, threshold, redundancy)
    nodes = [NodeSpec(name=n, **NodeInfo.of(kept, n).attrs()) for n in kept]
    edges = []
    for u, v, a in kept.edges(data=True):
        edges.append(EdgeSpec(src=u, dst=v, candidate=bool(a.get("candidate", True)), weight=a.get("weight")))
    edges.sort(key=lambda e: (not e.candidate, e.dst, e.src))
    all_weights = {k: float(weights[k]) for k in candidate_edges(graph)}
    return Architecture(space=cfg, nodes=nodes, edges=edges, output=kept.graph["output"],
                        threshold=threshold, candidates=all_weights, removed_stages=removed)


def reprune(arch: Architecture, threshold: float | None = None, redundancy: bool = False) -> Architecture:
    """Prune an architecture again (with its own weights): a no-op at its own threshold.

    What the file records of its origin stays: all candidates' searched weights and, for a random
    control, how it was drawn (``random_draw``), so a repruned random child is still reported as one."""
    t = arch.threshold if threshold is None else threshold
    out = derive(arch.graph(), arch.space, arch.weights(), t, redundancy)
    return out.model_copy(update={"candidates": arch.candidates, "removed_stages": arch.removed_stages
                                  + out.removed_stages, "random_draw": arch.random_draw})


__all__ = ["derive", "prune_graph", "reprune", "edge_key"]
