"""The user's jobs as importable functions: search, prune, train, evaluate, pipeline.

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

from sparseconn.architecture import Architecture
from sparseconn.engine.checkpoint import load_checkpoint, load_model_state
from sparseconn.engine.config import RunConfig, validate_run_config
from sparseconn.engine.distributed import DistInfo, barrier
from sparseconn.engine.trainer import Trainer
from sparseconn.errors import CheckpointError, SparseconnError
from sparseconn.fileio import atomic_write_json, atomic_write_text
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
    if dist.is_main:  # only rank 0 checks and writes; the others would see rank 0's files
        if out.exists() and any(out.iterdir()):
            raise SparseconnError(f"{out} already holds files; choose another --out or pass --resume to continue")
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.yaml", cfg.dump())
    barrier(dist)


def regularizer_context(space: SearchSpace, size: tuple[int, int]) -> RegContext:
    keys = space.candidates
    macs = space.edge_macs(size)
    return RegContext(keys=keys, groups=torch.tensor(space.stage_groups()),
                      costs=torch.tensor([float(macs[k]) for k in keys]))


def search(cfg: RunConfig, task_cfg: Any, out: Path, opts: RunOptions = RunOptions(), ckpt_prefix: str = "",
           prepare: bool = True) -> dict[str, Any]:
    """Train the supernet with Eq. (2): the task loss plus the connection regularisers."""
    if prepare:
        prepare_run_dir(out, cfg, opts.resume, opts.dist)
    seed_everything(cfg.seed)
    task = make_task(cfg, task_cfg)
    space = SearchSpace(cfg.space)
    net = build_supernet(space)
    payload = {"kind": "supernet", "config": cfg.model_dump(mode="json")}
    trainer = Trainer(net, task, cfg.search, Path(out), "search", payload,
                      ckpt_prefix=ckpt_prefix, device=opts.device, seed=cfg.seed, dist=opts.dist,
                      reg_ctx=regularizer_context(space, cfg.search.cost_size), threshold=cfg.prune.threshold,
                      progress=opts.progress, callbacks=list(opts.callbacks))
    result = trainer.fit(task.datasets(cfg.seed), resume=opts.resume)
    summary = {"stage": "search", "candidates": len(space.candidates), **result,
               "final_connections": net.connections.snapshot()}
    if opts.dist.is_main:
        atomic_write_json(Path(out) / f"{ckpt_prefix}summary.json" if ckpt_prefix else Path(out) / "summary.json",
                          summary)
    return summary


def find_checkpoint(run: Path, which: str = "best", kind: str | None = None) -> Path:
    """The checkpoint of a run folder (or the file itself); pipeline folders prefix the search's."""
    run = Path(run)
    if run.is_file():
        return run
    if not run.is_dir():
        raise CheckpointError(f"{run} is neither a run folder nor a checkpoint file")
    names = [f"search_{which}.pt", f"{which}.pt"] if kind == "supernet" else [f"{which}.pt"]
    for name in names:
        p = run / "checkpoints" / name
        if p.is_file() and (kind is None or load_checkpoint(p).get("kind") == kind):
            return p
    raise CheckpointError(f"{run} has no {'supernet ' if kind == 'supernet' else ''}checkpoints/{which}.pt")


def config_of(ckpt: dict[str, Any], source: Path) -> tuple[RunConfig, Any]:
    if not isinstance(ckpt.get("config"), dict):
        raise CheckpointError(f"{source} holds no run config")
    return validate_run_config(ckpt["config"], f"{source} (stored config)")


def prune(run: Path, threshold: float | None = None, redundancy: bool | None = None, which: str | None = None,
          out: Path | None = None) -> Architecture:
    """Derive ``architecture.json`` from a search run's connection weights (best checkpoint by default)."""
    run = Path(run)
    probe = find_checkpoint(run, "last", kind="supernet") if run.is_dir() else run
    cfg, _ = config_of(load_checkpoint(probe), probe)
    path = find_checkpoint(run, which or cfg.prune.checkpoint, kind="supernet") if run.is_dir() else run
    ckpt = load_checkpoint(path)
    if ckpt.get("kind") != "supernet" or not isinstance(ckpt.get("connections"), dict):
        raise CheckpointError(f"{path} is not a search (supernet) checkpoint")
    space = SearchSpace(cfg.space)
    arch = derive(space.graph, cfg.space, ckpt["connections"],
                  cfg.prune.threshold if threshold is None else threshold,
                  cfg.prune.redundancy if redundancy is None else redundancy)
    target = Path(out) if out is not None else (run if run.is_dir() else run.parent.parent) / "architecture.json"
    arch.save(target)
    return arch


def load_supernet(path: Path) -> GraphNet:
    ckpt = load_checkpoint(path)
    cfg, _ = config_of(ckpt, path)
    net = build_supernet(SearchSpace(cfg.space))
    load_model_state(net, ckpt, path)
    return net


def train(cfg: RunConfig, task_cfg: Any, arch: Architecture, out: Path, opts: RunOptions = RunOptions(),
          inherit_from: Path | None = None, prepare: bool = True) -> dict[str, Any]:
    """Retrain the child of ``arch`` with the task loss alone (optionally from inherited weights)."""
    if prepare:
        prepare_run_dir(out, cfg, opts.resume, opts.dist)
    seed_everything(cfg.seed)
    task = make_task(cfg, task_cfg)
    inherit = None
    if cfg.train.inherit or inherit_from is not None:
        if inherit_from is None:
            raise SparseconnError("train.inherit is set but no supernet checkpoint was given to inherit from")
        inherit = load_supernet(inherit_from).eval()
    net = build_child(arch, inherit=inherit)
    if opts.dist.is_main:
        arch.save(Path(out) / "architecture.json")
    payload = {"kind": "child", "config": cfg.model_dump(mode="json"), "architecture": arch.model_dump(mode="json"),
               "edge_bias": inherit is not None}
    trainer = Trainer(net, task, cfg.train, Path(out), "train", payload, device=opts.device, seed=cfg.seed,
                      dist=opts.dist, threshold=cfg.prune.threshold, progress=opts.progress,
                      callbacks=list(opts.callbacks))
    result = trainer.fit(task.datasets(cfg.seed), resume=opts.resume)
    summary = {"stage": "train", "connections": len(arch.connections), **result}
    if opts.dist.is_main:
        atomic_write_json(Path(out) / "train_summary.json", summary)
    return summary


@dataclass
class LoadedModel:
    net: GraphNet
    cfg: RunConfig
    task_cfg: Any
    kind: str
    path: Path
    checkpoint: dict[str, Any]


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
    cfg, task_cfg = config_of(ckpt, path)
    if ckpt.get("kind") == "child":
        try:
            arch = Architecture.model_validate(ckpt["architecture"])
        except Exception as exc:  # pydantic errors from a damaged file: report, do not crash
            raise CheckpointError(f"{path}: stored architecture is invalid ({str(exc).splitlines()[0]})") from None
        net = GraphNet(arch.space, arch.graph(), gated=False, edge_bias=bool(ckpt.get("edge_bias")))
    elif ckpt.get("kind") == "supernet":
        net = build_supernet(SearchSpace(cfg.space))
    else:
        raise CheckpointError(f"{path}: unknown model kind {ckpt.get('kind')!r}")
    load_model_state(net, ckpt, path)
    return LoadedModel(net.eval(), cfg, task_cfg, ckpt["kind"], path, ckpt)
