"""Pictures and reports of runs, drawn from data (configs, architecture files, JSON logs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sparseconn.architecture import Architecture
from sparseconn.config import load_space_config
from sparseconn.errors import SparseconnError
from sparseconn.space import SearchSpace

FORMATS = ("png", "svg", "dot", "graphml")


def _save_graph(fig_fn, graph, weights, stem: Path, formats: tuple[str, ...]) -> list[Path]:
    from sparseconn.viz import save_figure, write_dot, write_graphml

    written = []
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")
        if fmt in ("png", "svg"):
            written.append(save_figure(fig_fn(), path))
        elif fmt == "dot":
            written.append(write_dot(graph, path, weights))
        elif fmt == "graphml":
            written.append(write_graphml(graph, path, weights))
        else:
            raise SparseconnError(f"unknown drawing format {fmt!r}; available: {', '.join(FORMATS)}")
    return written


def draw_source(source: Path, out: Path, formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Draw a config (its candidate graph), an ``architecture.json`` (its child beside the candidates)
    or a run folder (the pair and the weight trajectories)."""
    from sparseconn.viz import draw_connections, draw_pair, load_connections, plot_trajectories, save_figure

    source = Path(source)
    out = Path(out)
    if source.is_dir():
        arch_path = source / "architecture.json"
        records = load_connections(source)  # a clear error when connections.jsonl is missing
        written = []
        if arch_path.is_file():
            written += draw_source(arch_path, out, formats)
        arch = Architecture.load(arch_path) if arch_path.is_file() else None
        threshold = arch.threshold if arch is not None else 1e-3
        kept = set(arch.connections) if arch is not None else None
        fig = plot_trajectories(records, threshold=threshold, kept=kept)
        written.append(save_figure(fig, out / "trajectories.png"))
        return written
    if source.suffix == ".json":
        arch = Architecture.load(source)
        full = SearchSpace(arch.space).graph
        child = arch.graph()
        w = arch.candidates or None
        files = _save_graph(lambda: draw_pair(full, child, w, arch.threshold), full, w, out / "connections", formats)
        files += _save_graph(lambda: draw_connections(child, arch.weights(), threshold=arch.threshold,
                                                      title=f"child: {len(arch.connections)} connections"),
                             child, arch.weights(), out / "child", formats)
        return files
    space = SearchSpace(load_space_config(source))
    title = f"candidate graph: {len(space.candidates)} connections"
    return _save_graph(lambda: draw_connections(space.graph, title=title), space.graph, None, out / "candidates",
                       formats)


def write_run_report(base: Path, cfg: Any, task: Any, rows: list[dict], batch: dict, outputs: dict,
                     scores: dict[str, str], size: tuple[int, int]) -> tuple[Path, Path]:
    """``report.md`` and ``report.html`` in ``base`` with the comparison table and the pictures."""
    from sparseconn.viz import comparison_rows, save_figure, write_report

    images: dict[str, Path] = {}
    if (base / "architecture.json").is_file():
        for p in draw_source(base / "architecture.json", base / "figures", ("png",)):
            if p.stem == "connections":
                images["Connections: candidates and the pruned child"] = p
    if (base / "connections.jsonl").is_file():
        from sparseconn.viz import load_connections, plot_trajectories

        arch = Architecture.load(base / "architecture.json") if (base / "architecture.json").is_file() else None
        fig = plot_trajectories(load_connections(base), threshold=cfg.prune.threshold,
                                kept=set(arch.connections) if arch else None)
        images["Connection weights during the search"] = save_figure(fig, base / "figures" / "trajectories.png")
    fig = task.panels(batch, outputs, scores)
    if fig is not None:
        images["Outputs on the first test item"] = save_figure(fig, base / "figures" / "panels.png")
    notes = [f"Latency: median over {cfg.evaluate.latency_runs} runs at {size[0]}x{size[1]}, batch 1, on this "
             "device; the classical baseline runs on the CPU with NumPy."]
    return write_report(base, comparison_rows(rows), images, cfg.dump(), title=f"sparseconn report: {base.name}",
                        notes=notes)
