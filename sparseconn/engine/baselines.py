"""The rows beside a run's own model(s): the ``evaluate.baselines`` setting resolved.

``evaluate.baselines`` is ``true`` (every non-network baseline of the task), ``false`` (none) or a list of

- task baseline names (``"FT + unwrap (classical)"``; a task may accept short aliases for them in a
  ``baseline_aliases`` dict class attribute, e.g. the phase task's ``classical``);
- ``{model: {name, params}, name}``: a fixed model (:mod:`sparseconn.models`) that ``pipeline`` trains
  with the run's ``train`` settings in ``RUN/baselines/<slug>/`` (slug of ``name``, else of the model
  name), a run folder of its own that ``evaluate``, ``infer`` and ``export`` take too;
- ``{run: PATH, name}``: a trained run folder or checkpoint of the same task, scored on this run's
  test sets as this run's task scores its own outputs (so it must predict in the same units);
- ``{random_child: {seed}, name}``: the random control: a child with as many connections as the searched
  child, drawn uniformly at random among the live ones (:mod:`sparseconn.sampling`), that ``pipeline``
  trains after the searched child exactly as it trains that one (the run's ``train`` settings and seed,
  inheriting from the same supernet checkpoint when ``train.inherit``) in ``RUN/baselines/<slug>/``
  (slug of ``name``, default ``random child (seed N)``), its ``architecture.json`` there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sparseconn.architecture import Architecture
from sparseconn.engine.config import (
    ModelBaseline,
    RandomChildBaseline,
    RunBaseline,
    RunConfig,
    validate_run_config,
)
from sparseconn.engine.jobs import RunOptions, train, train_model
from sparseconn.engine.loading import LoadedModel, load_model
from sparseconn.engine.rundir import prepare_run_dir
from sparseconn.errors import ConfigError, SparseconnError
from sparseconn.fileio import atomic_write_text
from sparseconn.sampling import random_architecture
from sparseconn.space import SearchSpace
from sparseconn.task import Task

BASELINES_DIR = "baselines"


def task_baselines(task: Task, setting: bool | list[Any]) -> dict[str, Callable[..., np.ndarray]]:
    """The task's non-network baselines that ``setting`` selects, by name (a list's strings, in order)."""
    available = task.baselines()
    if isinstance(setting, bool):
        return available if setting else {}
    aliases: dict[str, str] = getattr(task, "baseline_aliases", {})
    chosen: dict[str, Callable[..., np.ndarray]] = {}
    for entry in setting:
        if not isinstance(entry, str):
            continue
        name = entry if entry in available else aliases.get(entry, entry)
        if name not in available:
            known = [*available, *(a for a, n in aliases.items() if n in available)]
            raise ConfigError(f"evaluate.baselines: unknown task baseline {entry!r}; available: "
                              f"{', '.join(repr(k) for k in known) or 'none'}")
        if name in chosen:
            raise ConfigError(f"evaluate.baselines: baseline {name!r} is listed twice")
        chosen[name] = available[name]
    return chosen


def slug(text: str) -> str:
    """A folder name for a row name: lower case, runs of other characters as '-' ('U-Net' -> 'u-net')."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "model"


TrainedEntry = ModelBaseline | RandomChildBaseline


def trained_baselines(cfg: RunConfig) -> list[tuple[str, TrainedEntry]]:
    """``(folder slug, entry)`` of every entry of ``evaluate.baselines`` that ``pipeline`` trains in
    ``RUN/baselines/<slug>/`` (fixed models and random children), in order; slugs are unique."""
    entries = cfg.evaluate.baselines if isinstance(cfg.evaluate.baselines, list) else []
    out: list[tuple[str, TrainedEntry]] = []
    for i, entry in enumerate(entries):
        if isinstance(entry, ModelBaseline | RandomChildBaseline):
            s = slug(entry.name or entry.model.name) if isinstance(entry, ModelBaseline) else slug(entry.label)
            if s in [t for t, _ in out]:
                raise ConfigError(f"evaluate.baselines.{i}: a second model in {BASELINES_DIR}/{s}/; give each "
                                  "model or random_child entry its own `name`")
            out.append((s, entry))
    return out


def model_baselines(cfg: RunConfig) -> list[tuple[str, ModelBaseline]]:
    """``(folder slug, entry)`` of every fixed-model entry of ``evaluate.baselines``; slugs are unique."""
    return [(s, e) for s, e in trained_baselines(cfg) if isinstance(e, ModelBaseline)]


def random_children(cfg: RunConfig) -> list[tuple[str, RandomChildBaseline]]:
    """``(folder slug, entry)`` of every ``random_child`` entry of ``evaluate.baselines``; slugs are unique."""
    return [(s, e) for s, e in trained_baselines(cfg) if isinstance(e, RandomChildBaseline)]


def _own_baselines(cfg: RunConfig) -> bool | list[str]:
    """The task baselines of ``evaluate.baselines`` (its other entries belong to the parent run)."""
    setting = cfg.evaluate.baselines
    return setting if isinstance(setting, bool) else [e for e in setting if isinstance(e, str)]


def baseline_config(cfg: RunConfig, entry: ModelBaseline, source: str) -> RunConfig:
    """The run config of a model baseline: the run's, with ``model`` set, no inheritance from a supernet,
    and only the task's own baselines (its model and run entries belong to the parent run)."""
    data = cfg.model_dump(mode="json")
    data["model"] = entry.model.model_dump(mode="json")
    data["train"]["inherit"] = False
    data["evaluate"]["baselines"] = _own_baselines(cfg)
    return validate_run_config(data, source)


def random_child_config(cfg: RunConfig, source: str) -> RunConfig:
    """The run config of a random child: the run's (its ``train`` settings and seed unchanged), with only the
    task's own baselines."""
    data = cfg.model_dump(mode="json")
    data["evaluate"]["baselines"] = _own_baselines(cfg)
    return validate_run_config(data, source)


def draw_random_child(cfg: RunConfig, entry: RandomChildBaseline, searched: Architecture) -> Architecture:
    """The child of a ``random_child`` entry: as many connections as ``searched``, drawn with its seed."""
    try:
        arch = random_architecture(SearchSpace(cfg.space), len(searched.connections), entry.random_child.seed)
    except SparseconnError as exc:
        raise ConfigError(f"evaluate.baselines: {entry.label}: {exc}") from None
    arch.plugins = list(cfg.plugins)
    return arch


def _start(folder: Path, sub_cfg: RunConfig, opts: RunOptions) -> tuple[Any, RunOptions | None]:
    """``(its best, None)`` for a baseline that finished before a kill (``opts.resume``); else ``(None, the
    options it trains with)``, its folder prepared: resumed from its last checkpoint, or started (again)."""
    if opts.resume and (folder / "train_summary.json").is_file():  # finished before the kill
        return json.loads((folder / "train_summary.json").read_text(encoding="utf-8")).get("best"), None
    resume = opts.resume and (folder / "checkpoints" / "last.pt").is_file()
    if opts.resume and not resume:  # killed before its first checkpoint: start it again
        if opts.dist.is_main:
            atomic_write_text(folder / "config.yaml", sub_cfg.dump())
    else:
        prepare_run_dir(folder, sub_cfg, resume, opts.dist)
    return None, RunOptions(device=opts.device, resume=resume, progress=opts.progress, dist=opts.dist)


def train_baselines(cfg: RunConfig, out: Path, opts: RunOptions = RunOptions(),
                    randoms: dict[str, Architecture] | None = None,
                    inherit_from: Path | None = None) -> dict[str, Any]:
    """Train every model and random-child entry of ``evaluate.baselines`` in ``out/baselines/<slug>/`` with the
    run's ``train`` settings; with ``opts.resume`` a finished one is kept and an unfinished one continues.

    ``randoms``: slug -> the drawn child of each random entry (default: drawn here for ``out``'s
    ``architecture.json``); ``inherit_from``: the supernet checkpoint they inherit from when
    ``train.inherit`` (default: ``out/checkpoints/search_best.pt``). A resumed random child keeps the
    ``architecture.json`` it started with."""
    out = Path(out)
    summaries: dict[str, Any] = {}
    for s, entry in trained_baselines(cfg):
        folder = out / BASELINES_DIR / s
        source = f"{out / 'config.yaml'} (evaluate.baselines: {s})"
        if isinstance(entry, ModelBaseline):
            sub_cfg = baseline_config(cfg, entry, source)
            best, run_opts = _start(folder, sub_cfg, opts)
            summaries[s] = best if run_opts is None else train_model(sub_cfg, folder, run_opts, prepare=False)["best"]
            continue
        sub_cfg = random_child_config(cfg, source)
        saved = folder / "architecture.json"
        started = opts.resume and saved.is_file()
        best, run_opts = _start(folder, sub_cfg, opts)
        if run_opts is None:
            summaries[s] = best
            continue
        if started:
            arch = Architecture.load(saved)
        elif randoms is not None and s in randoms:
            arch = randoms[s]
        else:
            arch = draw_random_child(cfg, entry, Architecture.load(out / "architecture.json"))
        inherit = (inherit_from or out / "checkpoints" / "search_best.pt") if cfg.train.inherit else None
        summaries[s] = train(sub_cfg, arch, folder, run_opts, inherit_from=inherit, prepare=False)["best"]
    return summaries


def check_baseline_runs(cfg: RunConfig) -> list[LoadedModel]:
    """Load every ``{run: PATH}`` entry, refusing one of another task or input (done before a long search)."""
    entries = cfg.evaluate.baselines if isinstance(cfg.evaluate.baselines, list) else []
    loaded = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, RunBaseline):
            continue
        try:
            lm = load_model(entry.run)
        except SparseconnError as exc:
            raise ConfigError(f"evaluate.baselines.{i}: {exc}") from None
        theirs = (lm.cfg.task.name, lm.cfg.space.in_channels)
        if theirs != (cfg.task.name, cfg.space.in_channels):
            raise ConfigError(f"evaluate.baselines.{i}: {entry.run} is a {theirs[0]!r} model of {theirs[1]} input "
                              f"channel(s); this run is {cfg.task.name!r} with {cfg.space.in_channels}")
        loaded.append(lm)
    return loaded


def baseline_models(base: Path, cfg: RunConfig, task: Task, taken: set[str],
                    notes: list[str]) -> dict[str, LoadedModel]:
    """The trained models of ``evaluate.baselines`` by row name: model entries from ``base/baselines/``
    (a note names each one not trained there yet) and run entries. ``taken``: row names already used."""
    rows: dict[str, LoadedModel] = {}
    used = set(taken)

    def add(lm: LoadedModel, name: str | None, fallback: str, key: str) -> None:
        label = name or lm.label(task)
        if name is None and label in used:
            label = f"{label} ({fallback})"
        if label in used:
            raise ConfigError(f"evaluate.baselines: two rows are named {label!r}; give {key} another `name`")
        used.add(label)
        rows[label] = lm

    for s, entry in random_children(cfg) + model_baselines(cfg):  # random ones first: next to the child
        folder = Path(base) / BASELINES_DIR / s
        random = isinstance(entry, RandomChildBaseline)
        if not (folder / "checkpoints").is_dir():
            notes.append(f"{entry.label if random else entry.name or entry.model.name} is not evaluated: {folder} "
                         "holds no trained model (`sparseconn pipeline` trains it there)")
            continue
        if random:
            add(load_model(folder), entry.label, s, f"the random_child entry of seed {entry.random_child.seed}")
        else:
            add(load_model(folder), entry.name, s, f"the model entry {entry.model.name!r}")
    entries = cfg.evaluate.baselines if isinstance(cfg.evaluate.baselines, list) else []
    runs = [e for e in entries if isinstance(e, RunBaseline)]
    for entry, lm in zip(runs, check_baseline_runs(cfg), strict=True):
        add(lm, entry.name, Path(entry.run).name, f"the run entry {str(entry.run)!r}")
    return rows
