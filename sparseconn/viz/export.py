"""Graph files for other tools: Graphviz DOT (written by hand; pydot is not a dependency) and GraphML.

Both carry the node attributes (kind, channels, stride, ...) and, when weights are given, each
edge's connection weight, and both are written atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import networkx as nx

from sparseconn.fileio import atomic_path, atomic_write_text
from sparseconn.graph import check_graph, edge_key
from sparseconn.viz._common import KIND_FILL, KIND_LINE, is_candidate, weight_scale


def _quote(value: Any) -> str:
    """A DOT double-quoted string: backslashes and quotes escaped, newlines as ``\\n``."""
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def _attrs(items: Mapping[str, Any]) -> str:
    parts = []
    for key, value in items.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        name = key if key.isidentifier() else _quote(key)
        parts.append(f"{name}={_quote(value)}")
    return "[" + ", ".join(parts) + "]"


def dot_text(
    graph: nx.DiGraph, weights: Mapping[str, float] | None = None, *, threshold: float = 1e-3
) -> str:
    """The DOT source for ``graph``: encoders and ground on one rank, decoders and heads on another,
    boxes coloured by kind; edge ``penwidth`` grows with the weight, pruned edges are dashed."""
    check_graph(graph)
    scale = weight_scale(weights)
    lines = [
        f"digraph {_quote(graph.graph.get('name') or 'sparseconn')} {{",
        "  rankdir=TB;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
        "  edge [arrowsize=0.5];",
    ]
    for kinds in (("encoder", "ground"), ("decoder", "head")):
        members = [n for n, k in graph.nodes(data="kind") if k in kinds]
        if members:
            lines.append("  { rank=same; " + " ".join(_quote(n) + ";" for n in members) + " }")
    for node, data in graph.nodes(data=True):
        kind = data["kind"]
        label = "\n".join(
            [str(node)]
            + ([f"{data['channels']} ch"] if data.get("channels") is not None else [])
            + ([f"stride {data['stride']}"] if data.get("stride") is not None else [])
            + ([f"pool {data['size']}x{data['size']}"] if data.get("size") is not None else [])
        )
        extra = {k: v for k, v in data.items() if k not in ("label", "color", "fillcolor")}
        lines.append(f"  {_quote(node)} " + _attrs({"label": label, "fillcolor": KIND_FILL[kind],
                                                     "color": KIND_LINE[kind], **extra}))
    for u, v in graph.edges:
        candidate = is_candidate(graph, u, v)
        w = None if weights is None else weights.get(edge_key(u, v))
        attrs: dict[str, Any] = {"candidate": candidate}
        if w is not None:
            attrs["conn_weight"] = f"{float(w):.6g}"
            attrs["tooltip"] = f"w = {float(w):.4g}"
            attrs["penwidth"] = f"{0.5 + 3.0 * min(1.0, max(0.0, float(w) / scale)):.2f}"
            if candidate and float(w) < threshold:
                attrs.update(style="dashed", color="#8c8c8c")
        if "color" not in attrs:
            attrs["color"] = KIND_LINE[graph.nodes[u]["kind"]] if candidate else "#333333"
        lines.append(f"  {_quote(u)} -> {_quote(v)} " + _attrs(attrs))
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_dot(
    graph: nx.DiGraph,
    path: str | os.PathLike[str],
    weights: Mapping[str, float] | None = None,
    *,
    threshold: float = 1e-3,
) -> Path:
    """Write ``graph`` as Graphviz DOT (render with ``dot -Tsvg``); returns the path."""
    return atomic_write_text(path, dot_text(graph, weights, threshold=threshold))


def _graphml_value(value: Any) -> Any:
    """GraphML takes str, int, float and bool only: ``None`` is dropped, anything else becomes JSON."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    try:
        return json.dumps(value)
    except TypeError:
        return str(value)


def _clean(attrs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in ((str(k), _graphml_value(v)) for k, v in attrs.items()) if v is not None}


def write_graphml(
    graph: nx.DiGraph,
    path: str | os.PathLike[str],
    weights: Mapping[str, float] | None = None,
) -> Path:
    """Write ``graph`` as GraphML with a float ``weight`` on every edge that has one; returns the path.

    Node names become strings (GraphML ids are strings); ``None`` attributes (the ground node's stride)
    are left out.
    """
    check_graph(graph)
    out = nx.DiGraph(**_clean(graph.graph))
    names: dict[Hashable, str] = {n: str(n) for n in graph.nodes}
    for node, data in graph.nodes(data=True):
        out.add_node(names[node], **_clean(data))
    for u, v, data in graph.edges(data=True):
        attrs = _clean(data)
        attrs["candidate"] = is_candidate(graph, u, v)
        if weights is not None and edge_key(u, v) in weights:
            attrs["weight"] = float(weights[edge_key(u, v)])
        out.add_edge(names[u], names[v], **attrs)
    with atomic_path(path) as tmp:
        nx.write_graphml(out, tmp)
    return Path(path)
