"""The Python API for notebooks and scripts: what the ``sparseconn`` command does, as functions.

Every name here is also at the package's top level (``import sparseconn as sc; sc.search(...)``)::

    import sparseconn as sc

    cfg = sc.load_config("tasks/phase_retrieval.yaml", {"search.epochs": 2, "train.epochs": 2})
    search = sc.search(cfg, "runs/s")                 # supernet + connection weights (Eq. 2)
    arch = sc.prune(search)                           # -> runs/s/architecture.json
    child = sc.train(cfg, arch, "runs/c")             # the child, retrained (Eq. 4)
    table = sc.evaluate(child)                        # test metrics, params, MACs, latency, report
    sc.infer(child, ["holograms/"], "phases/")        # one output file per input file
    sc.draw(search, "figs/")                          # candidate graph, child, weight trajectories
    model = sc.load_model(child).net                  # the trained torch module, in eval mode

Runs are the same folders the CLI writes (``sparseconn evaluate runs/c`` works on them). The device is
``auto`` by default: CUDA when available, else the CPU. Errors are :class:`~sparseconn.errors.SparseconnError`
with a one-line message.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparseconn.architecture import Architecture
from sparseconn.errors import SparseconnError

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Run:
    """A finished job's run folder and the summary it returned (``summary.json`` /
    ``train_summary.json``). Functions that take a run also take its folder as a path."""

    path: Path
    summary: dict[str, Any] = field(default_factory=dict)

    def __fspath__(self) -> str:
        return str(self.path)


def _path(run: Run | PathLike) -> Path:
    return run.path if isinstance(run, Run) else Path(run)


def _overrides(overrides: Mapping[str, Any] | Sequence[str] | None) -> list[str]:
    """``{"search.epochs": 3}`` or ``["search.epochs=3"]`` as ``--set`` items (values written as YAML)."""
    import yaml

    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
                for k, v in overrides.items()]
    if isinstance(overrides, str) or not all(isinstance(o, str) for o in overrides):
        raise SparseconnError(f"overrides must be a mapping {{'a.b': value}} or a list of 'a.b=value' strings, "
                              f"got {overrides!r}")
    return list(overrides)


def load_config(config: Any, overrides: Mapping[str, Any] | Sequence[str] | None = None):
    """A validated run config (:class:`~sparseconn.engine.config.RunConfig`) from a YAML path, the name of a
    bundled config (``"phase_retrieval"``), a mapping of its sections, or a run config, with ``overrides``
    applied (``{"search.epochs": 3}``)."""
    from sparseconn.engine.config import (
        RunConfig,
        apply_overrides,
        load_run_config,
        resolve_config,
        validate_run_config,
    )

    items = _overrides(overrides)
    if isinstance(config, RunConfig):
        return validate_run_config(apply_overrides(config.model_dump(mode="json"), items), "config", warn=False)
    if isinstance(config, Mapping):
        return validate_run_config(apply_overrides(dict(config), items), "config")
    if isinstance(config, str | os.PathLike):  # a file, or the name of a bundled config (phase_retrieval)
        return load_run_config(resolve_config(Path(config)), items)
    raise SparseconnError(f"config must be a YAML path, a mapping or a RunConfig, got {type(config).__name__}")


Callback = Callable[[int, dict], None]
"""``fn(epoch, record)``, called after every epoch with that epoch's line of ``metrics.jsonl``."""


def _options(device: str, resume: bool = False, progress: bool = True, callbacks: Sequence[Callback] = ()):
    from sparseconn.engine.devices import resolve_device
    from sparseconn.engine.jobs import RunOptions

    return RunOptions(device=resolve_device(device), resume=resume, progress=progress, callbacks=tuple(callbacks))


def _out(out: PathLike | None, cfg: Any, job: str) -> Path:
    from sparseconn.engine.rundir import new_run_dir

    return Path(out) if out is not None else new_run_dir(Path("runs"), f"{cfg.task.name}-{job}")


def search(config: Any, out: PathLike | None = None, *, device: str = "auto", resume: bool = False,
           progress: bool = True, overrides: Mapping[str, Any] | Sequence[str] | None = None,
           callbacks: Sequence[Callback] = ()) -> Run:
    """Search: train the supernet and its connection weights (Eq. 2). ``out`` defaults to a new folder
    ``runs/<task>-search-<time>``; ``callbacks``: ``fn(epoch, record)`` after each epoch (e.g. live plots)."""
    from sparseconn.engine.jobs import search as run_search

    cfg = load_config(config, overrides)
    folder = _out(out, cfg, "search")
    return Run(folder, run_search(cfg, folder, _options(device, resume, progress, callbacks)))


def prune(run: Run | PathLike, threshold: float | None = None, *, redundancy: bool | None = None,
          checkpoint: str | None = None, out: PathLike | None = None, force: bool = False) -> Architecture:
    """The child architecture from a search run's connection weights; also written to
    ``RUN/architecture.json`` (or ``out``: an existing file there is replaced only with ``force``)."""
    from sparseconn.engine.jobs import prune as run_prune

    return run_prune(_path(run), threshold, redundancy, checkpoint, Path(out) if out is not None else None,
                     force=force)


def train(config: Any, arch: Architecture | PathLike | None = None, out: PathLike | None = None, *,
          inherit: Run | PathLike | None = None, device: str = "auto", resume: bool = False, progress: bool = True,
          overrides: Mapping[str, Any] | Sequence[str] | None = None, callbacks: Sequence[Callback] = ()) -> Run:
    """Retrain a child (``arch``: an :class:`Architecture` or its file) with the task loss alone, or train
    the fixed model of a config that sets ``model:`` (no ``arch``). ``inherit``: a search run or supernet
    checkpoint whose weights the child starts from (with ``train.inherit`` in the config and an
    architecture file, the search run beside the file). ``callbacks``: ``fn(epoch, record)`` after each epoch."""
    from sparseconn.engine.jobs import train as run_train
    from sparseconn.engine.jobs import train_model

    cfg = load_config(config, overrides)
    folder = _out(out, cfg, "train")
    opts = _options(device, resume, progress, callbacks)
    if cfg.model is not None:
        if arch is not None or inherit is not None:
            raise SparseconnError(f"the config sets model: {cfg.model.name!r} (a fixed model); arch and inherit "
                                  "are for searched children")
        return Run(folder, train_model(cfg, folder, opts))
    if arch is None:
        raise SparseconnError("train needs arch (an Architecture or architecture.json), or a config that sets "
                              "`model:`")
    if not isinstance(arch, Architecture | str | os.PathLike):
        raise SparseconnError(f"arch must be an Architecture or the path of its architecture.json, got {arch!r}")
    source = None if isinstance(arch, Architecture) else Path(arch)
    architecture = arch if isinstance(arch, Architecture) else Architecture.load(source)
    inherit_from = _supernet(inherit) if inherit is not None else None
    if inherit_from is None and cfg.train.inherit:
        if source is None:
            raise SparseconnError("train.inherit is set: pass inherit= (a search run or supernet checkpoint), "
                                  "or the architecture as the file its search run wrote")
        inherit_from = _supernet(source.parent)
    return Run(folder, run_train(cfg, architecture, folder, opts, inherit_from=inherit_from))


def _supernet(source: Run | PathLike) -> Path:
    """The supernet checkpoint of a search run (its best; a pipeline's ``search_best.pt``) or the file."""
    from sparseconn.engine.rundir import search_checkpoint

    path = _path(source)
    found = path if path.is_file() else search_checkpoint(path)
    if found is not None:
        return found
    raise SparseconnError(f"{path} holds no search checkpoint (checkpoints/search_best.pt or best.pt)")


def pipeline(config: Any, out: PathLike | None = None, *, device: str = "auto", resume: bool = False,
             progress: bool = True, overrides: Mapping[str, Any] | Sequence[str] | None = None,
             callbacks: Sequence[Callback] = ()) -> Run:
    """Search, prune, retrain and evaluate in one folder (``runs/<task>-pipeline-<time>`` by default)."""
    from sparseconn.engine.pipeline import pipeline as run_pipeline

    cfg = load_config(config, overrides)
    folder = _out(out, cfg, "pipeline")
    return Run(folder, run_pipeline(cfg, folder, _options(device, resume, progress, callbacks)))


def evaluate(run: Run | PathLike, *, device: str = "auto", latency: bool = True, report: bool = True,
             engine: str | None = None) -> dict[str, Any]:
    """Test metrics, params, MACs and latency of a run's model beside its baselines; writes
    ``evaluation.json`` and the report into the run folder and returns the table."""
    from sparseconn.engine.evaluate import evaluate as run_evaluate

    return run_evaluate(_path(run), _options(device, progress=False), latency=latency, report=report, engine=engine)


def infer(run: Run | PathLike, inputs: PathLike | Sequence[PathLike], out: PathLike, *, device: str = "auto",
          engine: str = "auto", batch_size: int = 1, max_memory: float = 2048.0,
          in_flight: int | str = "auto", precision: str = "auto", calibrate: bool = True,
          force: bool = False) -> list[Path]:
    """Predict every frame of the input files (or folders) with a run's model; one output file per input
    file in ``out``. Returns the files written. The options are ``sparseconn infer``'s: ``max_memory`` MB
    of float32 input frames a batch may hold; ``in_flight`` batches running at once on CUDA (``auto``: 4
    there, 1 on the CPU); ``precision`` ``auto`` (bf16 where the hardware has it natively), ``fp32`` or
    ``bf16``; ``calibrate`` fits the input op to the first frames (the phase task: which sideband holds +φ
    on these holograms), False keeps what it learned in training. An output that would replace an input
    is refused, and so is one that already exists unless ``force``."""
    from sparseconn.engine.infer import infer as run_infer

    items: list[Any] = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs) \
        if isinstance(inputs, Iterable) else [inputs]
    if not all(isinstance(p, str | os.PathLike) for p in items):
        raise SparseconnError(f"inputs must be a path or a list of paths (files or folders), got {inputs!r}")
    return run_infer(_path(run), [Path(p) for p in items], Path(out), _options(device, progress=False),
                     batch_size=batch_size, max_memory=max_memory, engine=engine, in_flight=in_flight,
                     precision=precision, calibrate=calibrate, force=force)


def draw(source: Run | Architecture | PathLike, out: PathLike, formats: str | Sequence[str] = ("svg", "png")
         ) -> list[Path]:
    """Draw a search or pipeline run folder, an ``architecture.json`` (or :class:`Architecture`) or a config
    into ``out``; returns the files written. ``formats``: a list, or one string (``"png"``, or comma-separated
    as the CLI takes it: ``"png,svg"``)."""
    from sparseconn.engine.drawing import check_formats, draw_source

    formats = tuple(formats.split(",")) if isinstance(formats, str) else tuple(formats)
    if isinstance(source, Architecture):
        Path(out).mkdir(parents=True, exist_ok=True)
        source = source.save(Path(out) / "architecture.json")
    return draw_source(_path(source), Path(out), check_formats(formats))


def load_model(run: Run | PathLike, which: str = "best"):
    """A run's trained model (:class:`~sparseconn.engine.loading.LoadedModel`: ``.net`` in eval mode, its
    ``.cfg``, ``.kind`` and checkpoint), from a run folder (its ``which`` checkpoint: ``best`` or ``last``)
    or a checkpoint file."""
    from sparseconn.engine.loading import load_model as load

    return load(_path(run), which)


__all__ = ["Run", "draw", "evaluate", "infer", "load_config", "load_model", "pipeline", "prune", "search", "train"]
