"""Connection drawings in the style of the paper's Fig. 3.

Encoder stages run fine to coarse along the top row with the ground node at the coarse end; decoder
stages run along a parallel row below, each under the encoder feature of its resolution; the head
sits left of the decoder row. Encoder/ground -> decoder edges are S-curves between the rows,
decoder -> decoder edges are arcs under the decoder row, so no edge crosses a box. Width and opacity
grow with the connection weight; edges below the pruning threshold are faint and dashed.

Example::

    fig = draw_connections(space.graph, weights, threshold=1e-3, title="super-PRNet")
    save_figure(fig, "runs/x/connections.png")
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field

import networkx as nx
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch
from matplotlib.path import Path as MPath

from sparseconn.graph import KINDS, check_graph, edge_key
from sparseconn.viz import _layout as L
from sparseconn.viz._common import (
    KIND_FILL,
    KIND_LINE,
    PRUNED_COLOR,
    check_weights,
    is_candidate,
    node_label,
    save_figure,
    weight_scale,
)
from sparseconn.viz.export import write_dot, write_graphml

__all__ = ["draw_connections", "draw_pair", "save_figure", "write_dot", "write_graphml"]

_ARROW = "-|>,head_length=0.35,head_width=0.18"
STACK_RATIO = 1.4  # draw_pair stacks its panels when one is wider than this times its height


def _curve(pos: L.Pos, src: Hashable, dst: Hashable, a: tuple, b: tuple) -> MPath:
    """A cubic Bezier from port ``a`` to port ``b``: an S-curve across rows, an arc within a row."""
    (xa, ya), (xb, yb) = a, b
    if L.is_top(pos, src) != L.is_top(pos, dst):
        mid = 0.5 * (yb - ya)  # vertical tangents at both ends, so curves leave boxes straight
        verts = [(xa, ya), (xa, ya + mid), (xb, yb - mid), (xb, yb)]
    else:
        depth = 0.3 + 0.2 * abs(xb - xa)  # longer arcs run deeper, so they nest instead of overlap
        sign = 1.0 if L.is_top(pos, src) else -1.0
        verts = [(xa, ya), (xa, ya + sign * depth), (xb, yb + sign * depth), (xb, yb)]
    return MPath(verts, [MPath.MOVETO, MPath.CURVE4, MPath.CURVE4, MPath.CURVE4])


def _side_link(pos: L.Pos, src: Hashable, dst: Hashable) -> MPath | None:
    """A short straight link between neighbours in one row (the fixed stage -> head edge)."""
    (xs, ys), (xd, yd) = pos[src], pos[dst]
    if abs(ys - yd) > 1e-9 or abs(abs(xs - xd) - 1.0) > 1e-9:
        return None
    step = L.BOX_W / 2 if xd > xs else -L.BOX_W / 2
    return MPath([(xs + step, ys), (xd - step, yd)])


@dataclass
class _Plan:
    """Everything about a drawing that does not need a figure: boxes, edge paths and styles, limits."""

    layout: L.Pos
    edges: list[tuple[MPath, dict]] = field(default_factory=list)  # drawn in this order
    kept: list = field(default_factory=list)
    pruned: list = field(default_factory=list)
    fixed: list = field(default_factory=list)
    limits: tuple[float, float, float, float] = (0.0, 1.0, 0.0, 1.0)

    def figsize(self) -> tuple[float, float]:
        # One data unit (a column) is about 1.05 in; 1.3 in more for the title and the legend. Sizes
        # are rounded to 0.1 in, so the image is a whole number of pixels at common dpi.
        x0, x1, y0, y1 = self.limits
        return round(max(6.0, 1.05 * (x1 - x0) + 0.3), 1), round(1.05 * (y1 - y0) + 1.3, 1)


def _plan(graph, weights, threshold, show_pruned, pos) -> _Plan:
    check_graph(graph)
    check_weights(graph, weights)
    layout = L.compute_layout(graph)
    if pos is not None:
        layout.update({n: tuple(p) for n, p in pos.items() if n in graph})
    plan = _Plan(layout)
    side_links: dict[tuple, MPath] = {}
    for u, v in graph.edges:
        w = None if weights is None else weights.get(edge_key(u, v))
        if not is_candidate(graph, u, v):
            plan.fixed.append((u, v))
            link = _side_link(layout, u, v)
            if link is not None:
                side_links[(u, v)] = link
        elif w is not None and float(w) < threshold:
            plan.pruned.append((u, v))
        else:
            plan.kept.append((u, v))
    shown = plan.kept + plan.fixed + (plan.pruned if show_pruned else [])
    ports = L.assign_ports(layout, [e for e in shown if e not in side_links])

    scale = weight_scale(weights)

    def weight_of(e: tuple) -> float:
        return float(weights.get(edge_key(*e), scale)) if weights else 0.0

    x0, x1, y0, y1 = L.extent(layout)
    pruned, fixed = set(plan.pruned), set(plan.fixed)
    for e in sorted(shown, key=lambda e: (e not in pruned, e in fixed, weight_of(e))):  # heavy ones on top
        path = side_links.get(e) or _curve(layout, *e, *ports[e])
        bbox = path.get_extents()
        y0, y1 = min(y0, bbox.y0), max(y1, bbox.y1)
        if e in pruned:
            # No arrowhead: dozens of grey heads would crowd the decoder boxes' inputs.
            style = {"color": PRUNED_COLOR, "lw": 0.6, "alpha": 0.35, "linestyle": (0, (3, 2)), "zorder": 1,
                     "arrowstyle": "-"}
        elif e in fixed:
            style = {"color": "#333333", "lw": 1.4, "alpha": 0.9, "zorder": 3, "mutation_scale": 9}
        elif not weights or edge_key(*e) not in weights:  # no weight known: one plain style
            style = {"color": KIND_LINE[graph.nodes[e[0]]["kind"]], "lw": 1.0, "alpha": 0.55, "zorder": 2}
        else:
            frac = min(1.0, max(0.0, weight_of(e) / scale))
            style = {"color": KIND_LINE[graph.nodes[e[0]]["kind"]], "lw": 0.5 + 2.5 * frac,
                     "alpha": 0.3 + 0.6 * frac, "zorder": 2}
        plan.edges.append((path, style))
    plan.limits = (x0 - 0.1, x1 + 0.1, y0 - 0.1, y1 + 0.1)
    return plan


def draw_connections(
    graph: nx.DiGraph,
    weights: Mapping[str, float] | None = None,
    *,
    threshold: float = 1e-3,
    title: str | None = None,
    ax: Axes | None = None,
    show_pruned: bool = True,
    pos: Mapping[Hashable, tuple[float, float]] | None = None,
) -> Figure:
    """Draw a search space or architecture; returns the figure (``ax.figure`` when ``ax`` is given).

    ``weights`` maps ``"SRC->DST"`` to a connection weight; candidate edges without a weight are drawn
    plain. Edges with weight < ``threshold`` are dashed and faint, or left out with
    ``show_pruned=False``. ``pos`` overrides the box centres (e.g. a super graph's layout, so a child
    lines up with it); nodes it lacks are placed by the default layout.
    """
    plan = _plan(graph, weights, threshold, show_pruned, pos)
    if ax is None:
        ax = Figure(figsize=plan.figsize(), layout="constrained").add_subplot()
    for path, style in plan.edges:
        style = {"mutation_scale": 7, "arrowstyle": _ARROW, **style}
        ax.add_patch(FancyArrowPatch(path=path, shrinkA=0, shrinkB=0, **style))
    for node, (x, y) in plan.layout.items():
        kind = graph.nodes[node]["kind"]
        ax.add_patch(FancyBboxPatch((x - L.BOX_W / 2, y - L.BOX_H / 2), L.BOX_W, L.BOX_H,
                                    boxstyle="round,pad=0,rounding_size=0.06", fc=KIND_FILL[kind],
                                    ec=KIND_LINE[kind], lw=1.0, zorder=4))
        ax.text(x, y, node_label(graph, node), ha="center", va="center", fontsize=7.5,
                linespacing=1.15, zorder=5)
    x0, x1, y0, y1 = plan.limits
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal", adjustable="box")
    ax.set_axis_off()
    kept, pruned, fixed = plan.kept, plan.pruned, plan.fixed
    n_cand = len(kept) + len(pruned)
    if title is None:
        title = (f"{len(kept)} of {n_cand} candidate connections kept (w ≥ {threshold:g})"
                 if weights else f"{n_cand} candidate connections")
    ax.set_title(title, fontsize=11)
    ax.legend(handles=_legend_handles(graph, weights, threshold, kept, pruned, fixed, show_pruned),
              loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, fontsize=8, frameon=False)
    return ax.figure


def _legend_handles(graph, weights, threshold, kept, pruned, fixed, show_pruned) -> list:
    present = {k for _, k in graph.nodes(data="kind")}
    handles: list = [
        Patch(fc=KIND_FILL[k], ec=KIND_LINE[k], label=f"{k} stage") for k in KINDS if k in present
    ]
    label = f"kept ({len(kept)}), width ∝ weight" if weights else f"candidate ({len(kept)})"
    handles.append(Line2D([], [], color="#444444", lw=2.0, label=label))
    if pruned:
        suffix = "" if show_pruned else ", not drawn"
        handles.append(Line2D([], [], color=PRUNED_COLOR, lw=1.0, linestyle=(0, (3, 2)),
                              label=f"pruned, w < {threshold:g} ({len(pruned)}{suffix})"))
    if fixed:
        handles.append(Line2D([], [], color="#333333", lw=1.4, label=f"fixed ({len(fixed)})"))
    return handles


def draw_pair(
    super_graph: nx.DiGraph,
    child_graph: nx.DiGraph,
    weights: Mapping[str, float] | None = None,
    threshold: float = 1e-3,
    *,
    titles: tuple[str, str] | None = None,
    stacked: bool | None = None,
) -> Figure:
    """The super network (a) and its derived child (b), side by side (or one above the other with
    ``stacked=True``) as in Fig. 3; the child reuses the super layout so the stages line up.

    ``stacked=None`` stacks the panels when one panel is much wider than tall (the paper's 17-stage
    space): side by side, such a pair shrinks to half its size in a report column."""
    check_graph(super_graph)
    check_graph(child_graph)
    pos = L.compute_layout(super_graph)
    w, h = _plan(super_graph, weights, threshold, True, pos).figsize()
    if stacked is None:
        stacked = w > STACK_RATIO * h
    fig = Figure(figsize=(w, 2 * h) if stacked else (2 * w, h), layout="constrained")
    axes = fig.subplots(2, 1) if stacked else fig.subplots(1, 2)
    n_child = sum(1 for u, v in child_graph.edges if is_candidate(child_graph, u, v))
    n_super = sum(1 for u, v in super_graph.edges if is_candidate(super_graph, u, v))
    titles = titles or (f"(a) super network: {n_super} candidate connections",
                        f"(b) derived child: {n_child} connection{'' if n_child == 1 else 's'}")
    draw_connections(super_graph, weights, threshold=threshold, title=titles[0], ax=axes[0], pos=pos)
    keys = [edge_key(u, v) for u, v in child_graph.edges]
    child_weights = {k: weights[k] for k in keys if k in weights} if weights else None
    draw_connections(child_graph, child_weights or None, threshold=threshold, title=titles[1], ax=axes[1],
                     pos=pos)
    # Same limits in both panels, so boxes and labels have the same size.
    (a0, a1), (b0, b1) = axes[0].get_ylim(), axes[1].get_ylim()
    for ax in axes:
        ax.set_xlim(axes[0].get_xlim())
        ax.set_ylim(min(a0, b0), max(a1, b1))
    return fig
