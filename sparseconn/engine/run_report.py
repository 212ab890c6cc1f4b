"""A run's ``report.md`` and ``report.html``: the comparison table of ``evaluate``, the run's pictures and its
config (the page itself is written by :func:`sparseconn.viz.write_report`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sparseconn.architecture import Architecture
from sparseconn.engine.drawing import ARCHITECTURE_FILE, drawing_jobs, write_jobs


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def random_control_notes(base: Path, cfg: Any, task: Any, rows: list[dict], child: str | None) -> list[str]:
    """The report's lines on the random children of ``evaluate.baselines``: how each was drawn, and the
    searched child's primary metric against theirs on the test split (search vs chance)."""
    from sparseconn.engine.baselines import BASELINES_DIR, random_children

    notes, scored = [], []
    by_name = {r["model"]: r for r in rows}
    for s, entry in random_children(cfg):
        path = Path(base) / BASELINES_DIR / s / ARCHITECTURE_FILE
        if not path.is_file():
            continue
        arch = Architecture.load(path)
        draw = arch.random_draw
        how = f"seed {draw.seed}, live at draw {draw.draws}" if draw else "a random draw"
        notes.append(f"{entry.label}: the random control, {len(arch.connections)} of {len(arch.candidates)} candidate "
                     f"connections drawn uniformly at random among the live children of that size ({how}; no "
                     "redundancy clean-ups), trained with the child's train settings.")
        if entry.label in by_name:
            scored.append(entry.label)
    metric = getattr(task, "primary_metric", None)
    mine = by_name.get(child or "", {}).get(metric)
    if scored and isinstance(mine, int | float):
        higher = bool(getattr(task, "higher_is_better", False))
        theirs = [(n, by_name[n].get(metric)) for n in scored]
        theirs = [(n, v) for n, v in theirs if isinstance(v, int | float)]
        beaten = sum((mine > v) if higher else (mine < v) for _, v in theirs)
        label = getattr(task, "metric_labels", {}).get(metric, metric)
        listed = "; ".join(f"{n} {v:.4g}" for n, v in theirs)
        notes.append(f"Search vs chance ({label} on the test split, {'higher' if higher else 'lower'} is better): "
                     f"{child} {mine:.4g}; {listed}: the searched child beats {beaten} of {len(theirs)} random "
                     f"child{'' if len(theirs) == 1 else 'ren'}.")
    return notes


def write_run_report(base: Path, cfg: Any, task: Any, rows: list[dict], batch: dict, outputs: dict,
                     scores: dict[str, str], size: tuple[int, int], device: str | None = None,
                     sets: dict[str, dict] | None = None, warnings: list[str] | None = None,
                     engines: dict[str, str] | None = None, child: str | None = None) -> tuple[Path, Path]:
    """``report.md`` and ``report.html`` in ``base`` with the comparison table, a table per extra test set
    (``sets``: label -> ``{"items": n, "rows": [...]}``, as ``evaluation.json`` holds them), the pictures
    (in ``base/figures``) and the config used. ``engines``: model -> the inference path its latency was
    measured on (:class:`sparseconn.engine.fastpath.FastModel.description`). ``child``: the run's own
    model's row name, compared with the random children's rows (search vs chance)."""
    from sparseconn.viz import comparison_rows, save_figure, write_report

    base = Path(base)
    figures = base / "figures"
    images: dict[str, Path] = {}
    notes: list[str] = []
    if (base / "connections.jsonl").is_file():
        jobs = drawing_jobs(base, ("png",))
        pair = (base / ARCHITECTURE_FILE).is_file()
        captions = {"connections.png": "Connections: candidates and the derived child" if pair
                    else "Connection weights after the search",
                    "trajectories.png": "Connection weights during the search"}
        chosen = {name: jobs[name] for name in captions if name in jobs}
        for path in write_jobs(chosen, figures):
            images[captions[path.name]] = path
    elif (base / ARCHITECTURE_FILE).is_file():
        jobs = drawing_jobs(base / ARCHITECTURE_FILE, ("png",))
        (path,) = write_jobs({"connections.png": jobs["connections.png"]}, figures)
        images["Connections: candidates and the derived child"] = path
    if (base / ARCHITECTURE_FILE).is_file():
        arch = Architecture.load(base / ARCHITECTURE_FILE)
        notes.append(f"Derived child: {len(arch.connections)} of {len(arch.candidates)} candidate connections "
                     f"kept (w ≥ {arch.threshold:g}); removed stages: {', '.join(arch.removed_stages) or 'none'}.")
    notes += random_control_notes(base, cfg, task, rows, child)
    fig = task.panels(batch, outputs, scores)
    if fig is not None:
        images["Outputs on the first test item"] = save_figure(fig, figures / "panels.png")

    if any(r.get("latency_ms") is not None for r in rows):
        runs = int(cfg.evaluate.latency_runs)
        where = f"on {device}" if device else "on this device"
        notes.append(f"Latency: median of {_plural(runs, 'run')} at {size[0]}x{size[1]}, batch 1, {where}; "
                     "speed-up: the slowest model's latency over each model's.")
        for name, path in (engines or {}).items():
            notes.append(f"Latency path of {name}: {path}.")
    else:
        notes.append("Latency not measured (--no-latency).")
    from sparseconn.engine.baselines import task_baselines

    baselines = list(task_baselines(task, cfg.evaluate.baselines))
    if baselines:
        notes.append(f"Baseline{'s' if len(baselines) > 1 else ''} {', '.join(baselines)}: NumPy on the CPU; "
                     "no learned parameters, MACs not counted.")
    notes += list(warnings or [])
    metrics = list(getattr(task, "metric_names", ()) or ()) or None
    tables = {f"{label} ({_plural(int(s['items']), 'item')})": s["rows"] for label, s in (sets or {}).items()}
    return write_report(base, comparison_rows(rows), images, cfg.dump(), title=f"sparseconn report: {base.name}",
                        notes=notes, metrics=metrics, tables=tables)
