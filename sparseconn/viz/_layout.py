"""Fig. 3 layout: encoder row on top (fine to coarse, ground at the coarse end), decoder row below.

Decoder stage D_l sits under the encoder feature of the same resolution; the head sits left of the
decoder row, next to the finest stage that feeds it. Positions are in data units: one column is 1.0
wide, the rows are ``ROW_GAP`` apart. Edges leave and enter boxes at spread-out "ports" so that a
hundred edges do not meet in one point.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable
from typing import Any

import networkx as nx

BOX_W = 0.74
BOX_H = 0.62
ROW_GAP = 2.6  # vertical distance between the encoder and the decoder row, in column widths
TOP, BOTTOM = "top", "bottom"

Pos = dict[Hashable, tuple[float, float]]


def _order(attrs: dict[str, Any], fallback: int) -> float:
    order = attrs.get("order")
    return float(order) if order is not None else float(fallback)


def _stride(attrs: dict[str, Any]) -> float:
    stride = attrs.get("stride")
    return float(stride) if stride is not None else float("inf")


def compute_layout(graph: nx.DiGraph) -> Pos:
    """Box centres for every node of ``graph`` (kinds must already be checked)."""
    index = {node: i for i, node in enumerate(graph.nodes)}
    by_kind: dict[str, list[Hashable]] = defaultdict(list)
    for node, attrs in graph.nodes(data=True):
        by_kind[attrs["kind"]].append(node)
    attrs_of = graph.nodes

    # Encoders fine -> coarse: by stride, then encoder feature index. Not by ``order`` alone: a space
    # may name its encoders deepest first (SparseMask's E0 is the stride-32 feature).
    def fineness(n: Hashable) -> tuple[float, float, float, int]:
        attrs = attrs_of[n]
        feature = attrs.get("feature")
        order = _order(attrs, index[n])
        return _stride(attrs), float(feature) if feature is not None else order, order, index[n]

    encoders = sorted(by_kind["encoder"], key=fineness)
    col: dict[Hashable, float] = {n: float(i) for i, n in enumerate(encoders)}
    for k, node in enumerate(by_kind["ground"]):
        col[node] = float(len(encoders) + k)

    # Decoders: fine -> coarse is stride ascending, then processing position descending (0 = deepest).
    decoders = sorted(by_kind["decoder"], key=lambda n: (_stride(attrs_of[n]), -_order(attrs_of[n], 0)))
    # A decoder's ``feature`` names the encoder feature it is aligned with (sparseconn.graph). Without
    # it, and with one decoder stage per encoder node (a super network, or a child that kept the
    # super's ``order``), processing position p belongs under encoder column n - 1 - p.
    by_feature = {attrs_of[e].get("feature"): e for e in encoders if attrs_of[e].get("feature") is not None}
    taken: set[Hashable] = set()
    rest = []
    for d in decoders:
        match = by_feature.get(attrs_of[d].get("feature"))
        order = attrs_of[d].get("order")
        c = len(encoders) - 1 - int(order) if isinstance(order, int | float) else -1
        if match is None and 0 <= c < len(encoders):
            match = encoders[c]
        if match is not None and match not in taken and _stride(attrs_of[match]) == _stride(attrs_of[d]):
            col[d] = col[match]
            taken.add(match)
        else:
            rest.append(d)
    # Otherwise match by stride, finest first inside a group of equal strides; no match: a new column.
    free: dict[float, list[Hashable]] = defaultdict(list)
    for e in encoders:
        if e not in taken:
            free[_stride(attrs_of[e])].append(e)
    extra = float(len(encoders) + len(by_kind["ground"]))
    for d in rest:
        group = free.get(_stride(attrs_of[d]))
        if group:
            col[d] = col[group.pop(0)]
        else:
            col[d], extra = extra, extra + 1.0

    pos: Pos = {n: (col[n], ROW_GAP) for n in encoders + by_kind["ground"]}
    pos.update({d: (col[d], 0.0) for d in decoders})
    left = min((col[d] for d in decoders), default=0.0)
    for k, head in enumerate(by_kind["head"]):
        pos[head] = (left - 1.0 - k, 0.0)
    return pos


def is_top(pos: Pos, node: Hashable) -> bool:
    return pos[node][1] > ROW_GAP / 2


def edge_sides(pos: Pos, src: Hashable, dst: Hashable) -> tuple[str, str]:
    """Which box side each end of an edge uses: across the rows it is the facing sides; within a row
    both ends use the outer side (below the decoder row, above the encoder row), where arcs run."""
    top_s, top_d = is_top(pos, src), is_top(pos, dst)
    if top_s != top_d:
        return (BOTTOM, TOP) if top_s else (TOP, BOTTOM)
    side = TOP if top_s else BOTTOM
    return side, side


def assign_ports(pos: Pos, edges: list[tuple[Hashable, Hashable]]) -> dict[tuple[Hashable, Hashable], tuple]:
    """Attachment points ``{(src, dst): ((xs, ys), (xd, yd))}`` spread along the box sides.

    Across the rows the ports are sorted by the other end's x, so the curves do not cross at the
    box. Within a row (arcs) ports are sorted so that longer arcs nest outside shorter ones: left of
    the box the arcs to the left, nearest first; right of it the arcs to the right, farthest first.
    """
    slots: dict[tuple[Hashable, str], list[tuple[tuple, tuple[Hashable, Hashable], int]]] = defaultdict(list)
    for src, dst in edges:
        side_s, side_d = edge_sides(pos, src, dst)
        for end, node, other, side in ((0, src, dst, side_s), (1, dst, src, side_d)):
            dx = pos[other][0] - pos[node][0]
            across = is_top(pos, node) != is_top(pos, other)
            key = (0, dx, str(other)) if across else (1, dx > 0, -dx, str(other))
            slots[(node, side)].append((key, (src, dst), end))

    points: dict[tuple[Hashable, Hashable], list[tuple[float, float]]] = defaultdict(lambda: [(0, 0), (0, 0)])
    for (node, side), items in slots.items():
        items.sort(key=lambda item: item[0])
        x0, y0 = pos[node]
        span = BOX_W * 0.84
        y = y0 + (BOX_H / 2 if side == TOP else -BOX_H / 2)
        for i, (_, edge, end) in enumerate(items):
            x = x0 - span / 2 + span * (i + 0.5) / len(items)
            points[edge][end] = (x, y)
    return {edge: (pts[0], pts[1]) for edge, pts in points.items()}


def extent(pos: Pos) -> tuple[float, float, float, float]:
    """(x_min, x_max, y_min, y_max) of the boxes, before room for arcs is added."""
    xs = [p[0] for p in pos.values()] or [0.0]
    ys = [p[1] for p in pos.values()] or [0.0]
    return min(xs) - BOX_W / 2, max(xs) + BOX_W / 2, min(ys) - BOX_H / 2, max(ys) + BOX_H / 2
