"""The user's jobs as importable functions: search, prune, train (a child or a fixed model), evaluate,
pipeline.

The CLI is a thin layer over these; tests and notebooks call them directly. Run folder::

    config.yaml          resolved config            metrics.jsonl      one line an epoch (both phases)
    connections.jsonl    every weight, every epoch  architecture.json  after pruning
    checkpoints/last.pt, best.pt                    summary.json       short summary
    (in a pipeline folder the search's checkpoints are checkpoints/search_last.pt, search_best.pt)
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from sparseconn.architecture import Architecture
from sparseconn.config import SpaceConfig
from sparseconn.engine.checkpoint import load_checkpoint, load_model_state
from sparseconn.engine.config import ModelConfig, RunConfig, validate_run_config
from sparseconn.engine.distributed import DistInfo, barrier
from sparseconn.engine.trainer import Trainer
from sparseconn.errors import CheckpointError, SparseconnError
from sparseconn.fileio import atomic_write_json, atomic_write_text
from sparseconn.models import build_model, display_name, graph_model
from sparseconn.network import GraphNet, build_child, build_supernet
from sparseconn.pruning import derive
from sparseconn.regularizers import RegContext
from sparseconn.space import SearchSpace
from sparseconn.task import TASKS, Task


@dataclass
class RunOptions:
    device: str = "cpu"
    resume: bool = False
    progress: bool = True
    dist: DistInfo = DistInfo()
    callbacks: tuple[Callable[[int, dict], None], ...] = ()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_task(cfg: RunConfig, task_cfg: Any) -> Task:
    return TASKS.get(cfg.task["name"])(task_cfg)


def prepare_run_dir(out: Path, cfg: RunConfig, resume: bool, dist: DistInfo, marker: str = "checkpoints/last.pt"
                    ) -> None:
    """Refuse to overwrite an existing run; on resume, require a checkpoint and the same config."""
    out = Path(out)
    if resume:
        if not (out / marker).is_file():
            raise CheckpointError(f"--resume: {out} has no {marker} to resume from")
        saved = (out / "config.yaml").read_text(encoding="utf-8") if (out / "config.yaml").is_file() else None
        if saved is not None and saved != cfg.dump():
            raise SparseconnError(f"--resume: the config differs from {out / 'config.yaml'}; resume with that file")
        return
    # Every rank checks the folder before anyone writes (the barrier), so all ranks fail together
    # instead of rank 0 raising while the others wait for it; then only rank 0 writes.
    occupied = out.exists() and any(out.iterdir())
    barrier(dist)
    if occupied:
        raise SparseconnError(f"{out} already holds files; choose another --out or pass --resume to continue")
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.yaml", cfg.dump())
    barrier(dist)


def regularizer_context(space: SearchSpace, size: tuple[int, int]) -> RegContext:
    keys = space.candidates
    macs = space.edge_macs(size)
    return RegContext(keys=keys, groups=torch.tensor(space.stage_groups()),
                      costs=torch.tensor([float(macs[k]) for k in keys]))


def refuse_model(cfg: RunConfig, job: str) -> None:
    """A config with ``model:`` set names a fixed model: searching or retraining a child is an error."""
    if cfg.model is not None:
        raise SparseconnError(f"the config sets model: {cfg.model.name!r} (a fixed model), which {job} does not "
                              "use; train it with `sparseconn train CONFIG` (no --arch), or remove `model:`")


def search(cfg: RunConfig, task_cfg: Any, out: Path, opts: RunOptions = RunOptions(), ckpt_prefix: str = "",
           prepare: bool = True) -> dict[str, Any]:
    """Train the supernet with Eq. (2): the task loss plus the connection regularisers."""
    refuse_model(cfg, "search")
    seed_everything(cfg.seed)
    task = make_task(cfg, task_cfg)
    space = SearchSpace(cfg.space)
    net = build_supernet(space)
    reg_ctx = regularizer_context(space, cfg.search.cost_size)
    datasets = task.datasets(cfg.seed)
    if prepare:  # only once everything that bad input can break is built: a failed start leaves no folder
        prepare_run_dir(out, cfg, opts.resume, opts.dist)
    payload = {"kind": "supernet", "config": cfg.model_dump(mode="json")}
    trainer = Trainer(net, task, cfg.search, Path(out), "search", payload,
                      ckpt_prefix=ckpt_prefix, device=opts.device, seed=cfg.seed, dist=opts.dist,
                      reg_ctx=reg_ctx, threshold=cfg.prune.threshold,
                      progress=opts.progress, callbacks=list(opts.callbacks))
    result = trainer.fit(datasets, resume=opts.resume)
    summary = {"stage": "search", "candidates": len(space.candidates), **result,
               "final_connections": net.connections.snapshot()}
    if opts.dist.is_main:
        atomic_write_json(Path(out) / f"{ckpt_prefix}summary.json" if ckpt_prefix else Path(out) / "summary.json",
                          summary)
    return summary


def _locate(run: Path, which: str, kind: str | None) -> tuple[Path, dict[str, Any] | None]:
    """Path of a run's checkpoint, and the checkpoint itself when telling its kind needed loading it."""
    run = Path(run)
    if run.is_file():
        return run, None
    if not run.is_dir():
        raise CheckpointError(f"{str(run)!r} does not exist (expected a run folder or a checkpoint file)")
    names = [f"search_{which}.pt", f"{which}.pt"] if kind == "supernet" else [f"{which}.pt"]
    for name in names:
        p = run / "checkpoints" / name
        if not p.is_file():
            continue
        if kind is None:
            return p, None
        ckpt = load_checkpoint(p)
        if ckpt.get("kind") == kind:
            return p, ckpt
    raise CheckpointError(f"{run} has no {'supernet ' if kind == 'supernet' else ''}checkpoints/{which}.pt")


def find_checkpoint(run: Path, which: str = "best", kind: str | None = None) -> Path:
    """The checkpoint of a run folder (or the file itself); pipeline folders prefix the search's."""
    return _locate(run, which, kind)[0]


def read_checkpoint(run: Path, which: str = "best", kind: str | None = None) -> tuple[Path, dict[str, Any]]:
    """:func:`find_checkpoint` and the loaded checkpoint, read from disk once."""
    path, ckpt = _locate(run, which, kind)
    return path, ckpt if ckpt is not None else load_checkpoint(path)


def run_folder_of(checkpoint: Path) -> Path | None:
    """``RUN`` for ``RUN/checkpoints/NAME.pt``; None for a checkpoint file outside a run folder."""
    checkpoint = Path(checkpoint)
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else None


def config_of(ckpt: dict[str, Any], source: Path) -> tuple[RunConfig, Any]:
    if not isinstance(ckpt.get("config"), dict):
        raise CheckpointError(f"{source} holds no run config")
    return validate_run_config(ckpt["config"], f"{source} (stored config)")


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    """Dotted path of the first place where two plain-data trees differ ('' for the roots)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in [*a, *(k for k in b if k not in a)]:
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{path}.{k}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return _first_difference(x, y, f"{path}.{i}")
    return path


_NOT_ARCHITECTURE = ("plugins", "checkpointing")  # space settings that change no parameter


def _space_difference(mine: Any, theirs: Any) -> str | None:
    """``space.<key>`` where two dumped space configs build different networks, or None if they match."""
    if not isinstance(mine, dict) or not isinstance(theirs, dict):
        return None if mine == theirs else "space"
    a = {k: v for k, v in mine.items() if k not in _NOT_ARCHITECTURE}
    b = {k: v for k, v in theirs.items() if k not in _NOT_ARCHITECTURE}
    return None if a == b else f"space{_first_difference(a, b)}"


def check_run_membership(path: Path, ckpt: dict[str, Any], run: Path | None = None) -> None:
    """Refuse a checkpoint whose search space is not the one its run folder's ``config.yaml`` describes
    (e.g. a ``best.pt`` copied in from another run); ``run`` defaults to the folder above ``checkpoints/``."""
    path = Path(path)
    if run is None:
        run = run_folder_of(path)
    cfg_file = Path(run) / "config.yaml" if run is not None else None
    if cfg_file is None or not cfg_file.is_file() or not isinstance(ckpt.get("config"), dict):
        return
    try:
        saved = yaml.safe_load(cfg_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        raise SparseconnError(f"{cfg_file} is not readable YAML; cannot check {path} against it") from None
    if not isinstance(saved, dict) or "space" not in saved:
        return
    where = _space_difference(saved["space"], ckpt["config"].get("space"))
    if where is not None:
        raise CheckpointError(f"checkpoint {path} was saved from another architecture than {cfg_file} describes "
                              f"({where} differs)")


def prune(run: Path, threshold: float | None = None, redundancy: bool | None = None, which: str | None = None,
          out: Path | None = None) -> Architecture:
    """Derive ``architecture.json`` from a search run's connection weights (best checkpoint by default)."""
    run = Path(run)
    probe, probe_ckpt = read_checkpoint(run, "last", kind="supernet" if run.is_dir() else None)
    check_run_membership(probe, probe_ckpt)
    cfg, _ = config_of(probe_ckpt, probe)
    path, ckpt = (probe, probe_ckpt) if not run.is_dir() else \
        read_checkpoint(run, which or cfg.prune.checkpoint, kind="supernet")
    if ckpt.get("kind") != "supernet" or not isinstance(ckpt.get("connections"), dict):
        raise CheckpointError(f"{path} is not a search (supernet) checkpoint")
    check_run_membership(path, ckpt)
    if ckpt.get("fingerprint") != probe_ckpt.get("fingerprint"):
        raise CheckpointError(f"checkpoint {path} was saved from another architecture than {probe}")
    space = SearchSpace(cfg.space)
    missing = sorted(set(space.candidates) - set(ckpt["connections"]))
    if missing:
        raise CheckpointError(f"{path} holds no weight for connection {missing[0]!r} of the search space")
    arch = derive(space.graph, cfg.space, ckpt["connections"],
                  cfg.prune.threshold if threshold is None else threshold,
                  cfg.prune.redundancy if redundancy is None else redundancy)
    if out is not None:
        target = Path(out)
    elif run.is_dir():
        target = run / "architecture.json"
    else:  # RUN/checkpoints/best.pt -> RUN/architecture.json; a loose checkpoint file -> beside it
        target = (run_folder_of(run) or run.parent) / "architecture.json"
    arch.save(target)
    return arch


def load_supernet(path: Path, space: SpaceConfig | None = None) -> GraphNet:
    """The supernet of a search checkpoint; with ``space``, refuse one searched in another space."""
    ckpt = load_checkpoint(path)
    if ckpt.get("kind") != "supernet":
        raise CheckpointError(f"{path} is not a search (supernet) checkpoint")
    cfg, _ = config_of(ckpt, path)
    where = None if space is None else _space_difference(space.model_dump(mode="json"),
                                                          cfg.space.model_dump(mode="json"))
    if where is not None:
        raise CheckpointError(f"checkpoint {path} was saved from another architecture than the child's search "
                              f"space ({where} differs)")
    net = build_supernet(SearchSpace(cfg.space))
    load_model_state(net, ckpt, path)
    return net


def train(cfg: RunConfig, task_cfg: Any, arch: Architecture, out: Path, opts: RunOptions = RunOptions(),
          inherit_from: Path | None = None, prepare: bool = True) -> dict[str, Any]:
    """Retrain the child of ``arch`` with the task loss alone (optionally from inherited weights)."""
    refuse_model(cfg, "retraining a searched child (--arch)")
    seed_everything(cfg.seed)
    task = make_task(cfg, task_cfg)
    inherit = None
    if cfg.train.inherit or inherit_from is not None:
        if inherit_from is None:
            raise SparseconnError("train.inherit is set but no supernet checkpoint was given to inherit from")
        inherit = load_supernet(inherit_from, arch.space).eval()
    net = build_child(arch, inherit=inherit)
    datasets = task.datasets(cfg.seed)
    if prepare:  # only once everything that bad input can break is built: a failed start leaves no folder
        prepare_run_dir(out, cfg, opts.resume, opts.dist)
    if opts.dist.is_main:
        arch.save(Path(out) / "architecture.json")
    payload = {"kind": "child", "config": cfg.model_dump(mode="json"), "architecture": arch.model_dump(mode="json"),
               "edge_bias": inherit is not None}
    trainer = Trainer(net, task, cfg.train, Path(out), "train", payload, device=opts.device, seed=cfg.seed,
                      dist=opts.dist, threshold=cfg.prune.threshold, progress=opts.progress,
                      callbacks=list(opts.callbacks))
    result = trainer.fit(datasets, resume=opts.resume)
    summary = {"stage": "train", "connections": len(arch.connections), **result}
    if opts.dist.is_main:
        atomic_write_json(Path(out) / "train_summary.json", summary)
    return summary


def train_model(cfg: RunConfig, task_cfg: Any, out: Path, opts: RunOptions = RunOptions(),
                prepare: bool = True) -> dict[str, Any]:
    """Train the fixed model of ``cfg.model`` with the task loss and the ``train`` settings.

    Checkpoints have kind ``"model"`` and hold the model config (and the architecture of a graph child,
    which is also written to ``architecture.json``). A model without parameters (the classical
    pipeline) trains for zero epochs: it is scored once on the validation split and its checkpoints
    are written, so ``evaluate`` and ``infer`` work on the folder.
    """
    if cfg.model is None:
        raise SparseconnError("train_model: the config sets no `model:` (a fixed model's name and params)")
    if cfg.train.inherit:
        raise SparseconnError(f"train.inherit is set, but model {cfg.model.name!r} is fixed, not pruned from a "
                              "supernet: set train.inherit: false (--set train.inherit=false)")
    seed_everything(cfg.seed)
    task = make_task(cfg, task_cfg)
    net = build_model(cfg.model.name, cfg.model.params, cfg.space, task)
    arch = getattr(net, "architecture", None)
    datasets = task.datasets(cfg.seed)
    if prepare:  # only once everything that bad input can break is built: a failed start leaves no folder
        prepare_run_dir(out, cfg, opts.resume, opts.dist)
    payload: dict[str, Any] = {"kind": "model", "config": cfg.model_dump(mode="json"),
                               "model_config": cfg.model.model_dump(mode="json"),
                               "display_name": display_name(net, cfg.model.name)}
    if isinstance(arch, Architecture):
        payload["architecture"] = arch.model_dump(mode="json")
        if opts.dist.is_main:
            arch.save(Path(out) / "architecture.json")
    trainer = Trainer(net, task, cfg.train, Path(out), "train", payload, device=opts.device, seed=cfg.seed,
                      dist=opts.dist, threshold=cfg.prune.threshold, progress=opts.progress,
                      callbacks=list(opts.callbacks))
    result = trainer.fit(datasets, resume=opts.resume)
    summary = {"stage": "train", "model": cfg.model.name, "connections": getattr(net, "num_connections", None),
               **result}
    if opts.dist.is_main:
        atomic_write_json(Path(out) / "train_summary.json", summary)
    return summary


@dataclass
class LoadedModel:
    net: nn.Module
    cfg: RunConfig
    task_cfg: Any
    kind: str
    path: Path
    checkpoint: dict[str, Any]

    def label(self, task: Task) -> str:
        """Its row name in reports: a fixed model's own name, else the task's name for its kind."""
        if self.kind == "model":
            name = self.checkpoint.get("display_name")
            return name if isinstance(name, str) and name else str(self.checkpoint["model_config"]["name"])
        return task.display_names.get(self.kind, self.kind)


def _fixed_model(ckpt: dict[str, Any], cfg: RunConfig, task_cfg: Any, path: Path) -> nn.Module:
    """The model of a ``"model"`` checkpoint: its stored architecture, else its builder again."""
    try:
        spec = ModelConfig.model_validate(ckpt.get("model_config"))
        arch = Architecture.model_validate(ckpt["architecture"]) if ckpt.get("architecture") is not None else None
    except Exception as exc:  # pydantic errors from a damaged file: report, do not crash
        raise CheckpointError(f"{path}: stored model is invalid ({str(exc).splitlines()[0]})") from None
    name = ckpt.get("display_name") if isinstance(ckpt.get("display_name"), str) else spec.name
    if arch is not None:  # e.g. `architecture` with a path that has moved since: the checkpoint is enough
        return graph_model(arch, name)
    return build_model(spec.name, spec.params, cfg.space, make_task(cfg, task_cfg))


def load_model(source: Path, which: str = "best") -> LoadedModel:
    """A trained model from a run folder (its best, else last checkpoint) or a checkpoint file."""
    source = Path(source)
    if source.is_dir():
        try:
            path = find_checkpoint(source, which)
        except CheckpointError:
            path = find_checkpoint(source, "last")
    else:
        path = find_checkpoint(source)
    ckpt = load_checkpoint(path)
    check_run_membership(path, ckpt, source if source.is_dir() else None)
    cfg, task_cfg = config_of(ckpt, path)
    if ckpt.get("kind") == "child":
        try:
            arch = Architecture.model_validate(ckpt["architecture"])
        except Exception as exc:  # pydantic errors from a damaged file: report, do not crash
            raise CheckpointError(f"{path}: stored architecture is invalid ({str(exc).splitlines()[0]})") from None
        net = GraphNet(arch.space, arch.graph(), gated=False, edge_bias=bool(ckpt.get("edge_bias")))
    elif ckpt.get("kind") == "supernet":
        net = build_supernet(SearchSpace(cfg.space))
    elif ckpt.get("kind") == "model":
        net = _fixed_model(ckpt, cfg, task_cfg, path)
    else:
        raise CheckpointError(f"{path}: unknown model kind {ckpt.get('kind')!r}")
    load_model_state(net, ckpt, path)
    return LoadedModel(net.eval(), cfg, task_cfg, ckpt["kind"], path, ckpt)
