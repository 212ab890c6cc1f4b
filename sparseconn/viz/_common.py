"""Shared plumbing for the drawings: node colours, labels, weight look-ups, saving.

Everything here reads plain data (``networkx`` graphs, dicts); nothing imports torch. Node kinds,
connection names and the graph checks come from :mod:`sparseconn.graph`, like everywhere else.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib
import networkx as nx
from matplotlib.figure import Figure

from sparseconn.errors import SparseconnError
from sparseconn.fileio import atomic_path
from sparseconn.graph import edge_key

# Fig. 3 of the paper: orange encoders, blue decoders, purple ground; the head is ours (grey).
KIND_FILL = {"encoder": "#f8b26a", "decoder": "#8cb8e6", "ground": "#bb99dc", "head": "#cfcfcf"}
KIND_LINE = {"encoder": "#c0620f", "decoder": "#2a64a8", "ground": "#6a3d9a", "head": "#6e6e6e"}
PRUNED_COLOR = "#8c8c8c"
FIGURE_FORMATS = ("png", "svg", "pdf")


def is_candidate(graph: nx.DiGraph, src: Any, dst: Any) -> bool:
    """Whether an edge is searchable; an edge without the attribute is one unless it feeds a head."""
    attrs = graph.edges[src, dst]
    if "candidate" in attrs:
        return bool(attrs["candidate"])
    return graph.nodes[dst].get("kind") != "head"


def node_label(graph: nx.DiGraph, node: Any) -> str:
    """Three short lines for a node's box: name, channels, stride (or pooled size for a ground node)."""
    attrs = graph.nodes[node]
    lines = [str(node)]
    if attrs.get("channels") is not None:
        lines.append(f"{attrs['channels']} ch")
    if attrs.get("stride") is not None:
        lines.append(f"stride {attrs['stride']}")
    elif attrs.get("size") is not None:
        lines.append(f"pool {attrs['size']}×{attrs['size']}")
    return "\n".join(lines)


def check_weights(graph: nx.DiGraph, weights: Mapping[str, float] | None) -> None:
    """Reject a weight dict that names none of the graph's candidate edges (a naming mismatch)."""
    if not weights:
        return
    keys = [edge_key(u, v) for u, v in graph.edges if is_candidate(graph, u, v)]
    if keys and not any(k in weights for k in keys):
        example = next(iter(weights))
        raise SparseconnError(
            f"connection weights match none of the graph's {len(keys)} candidate edges "
            f"(weights have {example!r}, the graph has {keys[0]!r}): expected keys 'SRC->DST'"
        )


def weight_scale(weights: Mapping[str, float] | None) -> float:
    """Largest weight, at least 1, so widths are comparable across runs whose weights lie in [0, 1]."""
    if not weights:
        return 1.0
    return max(1.0, max(float(w) for w in weights.values()))


def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: int = 150) -> Path:
    """Write ``fig`` to ``path`` (PNG, SVG or PDF, chosen by the suffix) atomically, then close it.

    The canvas size is kept (no tight bounding box), so the image is exactly
    ``fig.get_size_inches() * dpi`` pixels. ``dpi`` below 120 is raised to 120.
    """
    target = Path(path)
    fmt = target.suffix.lower().lstrip(".")
    if fmt not in FIGURE_FORMATS:
        suffixes = ", ".join("." + f for f in FIGURE_FORMATS)
        raise SparseconnError(f"cannot save a figure to {target}: expected a suffix among {suffixes}")
    # SVG keeps text as <text> (searchable, editable in a paper's figure) instead of glyph outlines.
    with atomic_path(target) as tmp, matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(tmp, format=fmt, dpi=max(120, int(dpi)), facecolor="white")
    close_figure(fig)
    return target


def close_figure(fig: Figure) -> None:
    """Release ``fig``; figures made through pyplot are also dropped from pyplot's registry."""
    pyplot = sys.modules.get("matplotlib.pyplot")  # only if the caller already imported it
    if pyplot is not None:
        pyplot.close(fig)
    fig.clear()
