"""Pictures of a config (its candidate graph), an ``architecture.json`` or a run folder, drawn from data
files only (configs, architecture files, JSON logs): what ``sparseconn draw`` writes, and the figures of
a run's report (:mod:`sparseconn.engine.run_report`).

Drawing happens in two steps: every input is read and checked first (:func:`drawing_jobs`), then the
files are rendered into a hidden staging folder beside the output and moved into place together. Bad
input (a run folder without ``connections.jsonl``, an architecture file from a newer sparseconn, an
unknown format) therefore fails before anything is written, and a drawing that fails half-way leaves
the output folder as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sparseconn.architecture import Architecture
from sparseconn.config import load_space_config, read_yaml
from sparseconn.errors import SparseconnError
from sparseconn.fileio import check_out_folder, missing_folders, remove_folders
from sparseconn.space import SearchSpace

FIGURE_FORMATS = ("png", "svg", "pdf")
FORMATS = (*FIGURE_FORMATS, "dot", "graphml")
DEFAULT_FORMATS = ("png", "svg", "dot", "graphml")
ARCHITECTURE_FILE = "architecture.json"
CONFIG_FILE = "config.yaml"
LOG_SCALE_BELOW = 0.01  # trajectories use a log axis when the pruning threshold is this small or smaller

Job = Callable[[Path], Path]
"""Writes one file to the given path and returns it."""


def check_formats(formats: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The formats, lower-case, without repeats; a one-line error for an unknown or empty list."""
    clean = tuple(dict.fromkeys(str(f).strip().lower().lstrip(".") for f in formats if str(f).strip()))
    if not clean:
        raise SparseconnError(f"no drawing format given: expected some of {', '.join(FORMATS)}")
    for fmt in clean:
        if fmt not in FORMATS:
            raise SparseconnError(f"unknown drawing format {fmt!r}; available: {', '.join(FORMATS)}")
    return clean


def _graph_jobs(stem: str, figure: Callable[[], Any], graph: Any, weights: dict[str, float] | None,
                formats: tuple[str, ...], threshold: float = 1e-3) -> dict[str, Job]:
    from sparseconn.viz import save_figure, write_dot, write_graphml

    jobs: dict[str, Job] = {}
    for fmt in formats:
        if fmt in FIGURE_FORMATS:
            jobs[f"{stem}.{fmt}"] = lambda p: save_figure(figure(), p)
        elif fmt == "dot":
            jobs[f"{stem}.dot"] = lambda p: write_dot(graph, p, weights, threshold=threshold)
        elif fmt == "graphml":
            jobs[f"{stem}.graphml"] = lambda p: write_graphml(graph, p, weights)
    return jobs


def _architecture_jobs(arch: Architecture, formats: tuple[str, ...]) -> dict[str, Job]:
    """``connections.*``: the candidates with the child beside them; ``child.*``: the child alone."""
    from sparseconn.viz import draw_connections, draw_pair

    full = SearchSpace(arch.space).graph
    child = arch.graph()
    candidates = arch.candidates or None
    kept = arch.weights()
    jobs = _graph_jobs("connections", lambda: draw_pair(full, child, candidates, arch.threshold), full,
                       candidates, formats, arch.threshold)
    title = f"derived child: {len(arch.connections)} connections"
    jobs.update(_graph_jobs("child", lambda: draw_connections(child, kept, threshold=arch.threshold, title=title),
                            child, kept, formats, arch.threshold))
    return jobs


def _prune_settings(run: Path) -> dict[str, Any]:
    """The ``prune`` section of the run's ``config.yaml`` ({} when the file or the section is missing)."""
    prune = read_yaml(run / CONFIG_FILE).get("prune") if (run / CONFIG_FILE).is_file() else None
    return prune if isinstance(prune, dict) else {}


def _run_threshold(run: Path) -> float:
    """``prune.threshold`` of the run's ``config.yaml`` (1e-3 when the file or the key is missing)."""
    value = _prune_settings(run).get("threshold")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 1e-3


def _pruned_epoch(run: Path) -> int | None:
    """The search epoch whose weights ``prune`` used: the best (or last) epoch from the search summary."""
    import json

    for name in ("search_summary.json", "summary.json"):  # a pipeline folder, a search folder
        path = run / name
        try:
            summary = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        except (OSError, ValueError):
            continue
        if not isinstance(summary, dict) or summary.get("stage") != "search":
            continue
        if _prune_settings(run).get("checkpoint", "best") == "last":
            epochs = summary.get("epochs")
            return int(epochs) - 1 if isinstance(epochs, int) else None
        best = summary.get("best")
        epoch = best.get("epoch") if isinstance(best, dict) else None
        return int(epoch) if isinstance(epoch, int) else None
    return None


def _run_jobs(run: Path, formats: tuple[str, ...]) -> dict[str, Job]:
    """A run folder: the pair and the child (when it has ``architecture.json``; a search run without
    one: the candidates with their last weights) and the weight trajectories."""
    from sparseconn.viz import draw_connections, load_connections, plot_trajectories

    records = load_connections(run)  # a one-line error naming the folder when connections.jsonl is missing
    jobs: dict[str, Job] = {}
    kept: set[str] | None = None
    if (run / ARCHITECTURE_FILE).is_file():
        arch = Architecture.load(run / ARCHITECTURE_FILE)
        jobs.update(_architecture_jobs(arch, formats))
        threshold, kept = arch.threshold, set(arch.connections)
    else:
        threshold = _run_threshold(run)
        if (run / CONFIG_FILE).is_file():
            space = SearchSpace(load_space_config(run / CONFIG_FILE))
            last = {k: float(v) for k, v in records[-1]["weights"].items()}
            epoch = records[-1].get("epoch", len(records) - 1)
            jobs.update(_graph_jobs(
                "connections",
                lambda: draw_connections(space.graph, last, threshold=threshold,
                                         title=f"connection weights after epoch {epoch} (w ≥ {threshold:g} kept)"),
                space.graph, last, formats, threshold))
    log = threshold <= LOG_SCALE_BELOW
    mark = _pruned_epoch(run) if kept is not None else None
    for fmt in formats:
        if fmt in FIGURE_FORMATS:
            jobs[f"trajectories.{fmt}"] = lambda p: _save(plot_trajectories(records, threshold=threshold,
                                                                            kept=kept, log=log, mark_epoch=mark), p)
    return jobs


def _save(fig: Any, path: Path) -> Path:
    from sparseconn.viz import save_figure

    return save_figure(fig, path)


def drawing_jobs(source: str | os.PathLike[str], formats: tuple[str, ...] = DEFAULT_FORMATS) -> dict[str, Job]:
    """Read and check ``source`` and return ``{file name: writer}`` for everything :func:`draw_source`
    draws from it. Nothing is written; every input error is raised here."""
    from sparseconn.viz import draw_connections

    formats = check_formats(formats)
    source = Path(source)
    if source.is_dir():
        return _run_jobs(source, formats)
    if not source.exists():
        raise SparseconnError(f"{source} does not exist: expected a config YAML, an architecture.json "
                              "or a search or pipeline run folder")
    if source.suffix.lower() == ".json":
        return _architecture_jobs(Architecture.load(source), formats)
    if source.suffix.lower() not in (".yaml", ".yml"):
        raise SparseconnError(f"{source} is a {source.suffix or 'suffix-less'} file; draw takes a config YAML, "
                              "an architecture.json or a search or pipeline run folder")
    space = SearchSpace(load_space_config(source))
    title = f"candidate graph: {len(space.candidates)} connections"
    return _graph_jobs("candidates", lambda: draw_connections(space.graph, title=title), space.graph, None,
                       formats)


def write_jobs(jobs: dict[str, Job], out: str | os.PathLike[str]) -> list[Path]:
    """Render ``jobs`` into a staging folder inside ``out``, then move every file into ``out``.

    If a job fails, nothing in ``out`` changes (and ``out`` is removed again if this call made it).
    """
    out = Path(out)
    made = missing_folders(out)
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".draw-", dir=out))
    try:
        staged = [(job(stage / name), out / name) for name, job in jobs.items()]
        for tmp, final in staged:
            os.replace(tmp, final)
        return [final for _, final in staged]
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        remove_folders(made)  # the folders this call made, if it left them empty
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def draw_source(source: str | os.PathLike[str], out: str | os.PathLike[str],
                formats: tuple[str, ...] = DEFAULT_FORMATS) -> list[Path]:
    """Draw a config (``candidates.*``: its candidate graph), an ``architecture.json``
    (``connections.*``: the candidates beside the child; ``child.*``) or a run folder (those and
    ``trajectories.*``) into ``out``; returns the files written."""
    check_out_folder(out)
    return write_jobs(drawing_jobs(source, formats), out)
