"""A random child: the control that tells whether a search beat chance (the sanity check of one-shot NAS).

:func:`random_architecture` draws a child with exactly ``connections`` of the search space's candidate
connections, **uniformly at random among all live children of that size**, by rejection sampling:

1. ``rng = numpy.random.default_rng(seed)``; the candidates in their fixed order
   (:func:`sparseconn.graph.candidate_edges`).
2. A draw: a uniformly random set of ``connections`` candidates (a random permutation of the candidates,
   ``argsort`` of ``rng.random(len(candidates))``, its first ``connections``), 4096 draws at a time.
3. The first draw (in order) that is *live* is the child: the output stage has an input and every other
   decoder stage that the set touches has both an input and a consumer among the drawn connections (so
   every kept connection lies on a path from an encoder or ground node into the output stage). Stages the
   set does not touch are left out (``removed_stages``), as pruning leaves them out.
4. No live draw in 2**20 draws: an error (children of that size are too rare in this space to draw).

Every live set of that size is equally likely, and nothing else is done to it: the dead-stage removal
that pruning applies is not needed (a live set has no dead stage) and SparseMask's redundancy clean-ups
(``prune.redundancy``) are *not* applied, even where the searched child got them: the control is a plain
random live subset of the same size. The file records how it was drawn (``random_draw``: scheme, seed and
the number of draws); its connection weights are 1 (kept) and 0 (not kept), its threshold 0.5.

Possible sizes: from the fewest connections of a path from an encoder or ground node to the output stage,
to every candidate; a number outside that range is a one-line error naming it and the range.
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from sparseconn.architecture import Architecture, RandomDraw
from sparseconn.config import SpaceConfig
from sparseconn.errors import ArchitectureError
from sparseconn.graph import candidate_edges, decoder_nodes, split_key
from sparseconn.pruning import derive

SCHEME = "uniform-live-rejection"
"""The name ``random_draw.scheme`` records for the scheme above."""
BATCH = 4096
MAX_DRAWS = 2**20
THRESHOLD = 0.5
"""The recorded threshold: kept connections have weight 1, the others 0."""


def connection_range(graph: nx.DiGraph) -> tuple[int, int]:
    """The fewest and the most candidate connections a live child of ``graph`` can have: the fewest
    connections of a path from an encoder or ground node to the output stage, and every candidate."""
    keys = candidate_edges(graph)
    cand = nx.DiGraph([split_key(k) for k in keys])
    output = graph.graph["output"]
    if output not in cand:
        raise ArchitectureError(f"no candidate connection leads into the output stage {output}")
    dist = nx.single_source_shortest_path_length(cand.reverse(copy=False), output)
    sources = [n for n, d in dist.items() if graph.nodes[n]["kind"] in ("encoder", "ground")]
    if not sources:
        raise ArchitectureError(f"no path of candidate connections leads from an encoder or ground node to {output}")
    return min(dist[s] for s in sources), len(keys)


def random_architecture(space, connections: int, seed: int, cfg: SpaceConfig | None = None,
                        max_draws: int = MAX_DRAWS) -> Architecture:
    """A child of ``connections`` candidate connections drawn uniformly at random among the live ones (the
    module's scheme), the same for the same ``seed``. ``space``: a :class:`~sparseconn.space.SearchSpace`,
    or a search-space graph with its ``cfg``."""
    graph, cfg = (space.graph, space.cfg) if cfg is None else (space, cfg)
    for value, what in ((connections, "connections"), (seed, "seed")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ArchitectureError(f"random child: {what} is {value!r}; expected an integer")
    if seed < 0:
        raise ArchitectureError(f"random child: seed is {seed}; expected an integer ≥ 0")
    lo, hi = connection_range(graph)
    if not lo <= connections <= hi:
        raise ArchitectureError(f"a random child of {connections} connections is impossible: a live child of this "
                                f"search space has {lo} to {hi} candidate connections")
    keys = candidate_edges(graph)
    output = graph.graph["output"]
    stages = decoder_nodes(graph)
    col = {d: i for i, d in enumerate(stages)}
    ins = np.zeros((len(keys), len(stages)), dtype=np.int32)   # connection -> the stage it feeds
    outs = np.zeros((len(keys), len(stages)), dtype=np.int32)  # connection -> the stage it comes from
    for e, k in enumerate(keys):
        src, dst = split_key(k)
        ins[e, col[dst]] = 1
        if src in col:
            outs[e, col[src]] = 1
    others = [col[d] for d in stages if d != output]
    rng = np.random.default_rng(int(seed))
    draws = 0
    while draws < max_draws:
        n = min(BATCH, max_draws - draws)
        chosen = np.argsort(rng.random((n, len(keys))), axis=1)[:, :connections]
        mask = np.zeros((n, len(keys)), dtype=np.int32)
        np.put_along_axis(mask, chosen, 1, axis=1)
        fed, used = (mask @ ins) > 0, (mask @ outs) > 0
        live = fed[:, col[output]] & (fed[:, others] == used[:, others]).all(axis=1)
        if live.any():
            first = int(np.argmax(live))
            draws += first + 1
            kept = {keys[e] for e in np.flatnonzero(mask[first])}
            break
        draws += n
    else:
        raise ArchitectureError(f"no live child of {connections} connections in {max_draws} random draws (seed "
                                f"{seed}): children of that size are too rare in this search space to draw")
    weights = {k: 1.0 if k in kept else 0.0 for k in keys}
    arch = derive(graph, cfg, weights, THRESHOLD)
    if sorted(arch.connections) != sorted(kept):  # a live set loses nothing to the dead-stage removal
        raise ArchitectureError("random child: the drawn set was not live (a bug in the sampler)")
    return arch.model_copy(update={"random_draw": RandomDraw(scheme=SCHEME, seed=int(seed), draws=draws)})


__all__ = ["MAX_DRAWS", "SCHEME", "connection_range", "random_architecture"]
