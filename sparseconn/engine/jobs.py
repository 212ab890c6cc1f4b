"""The user's training jobs as importable functions: :func:`search`, :func:`prune`, :func:`train` (a
searched child) and :func:`train_model` (a fixed model). The CLI is a thin layer over these; tests and
notebooks call them directly. ``evaluate`` and ``pipeline`` live in :mod:`sparseconn.engine.evaluate`
and :mod:`sparseconn.engine.pipeline`.

What each job writes into its run folder (the layout: :mod:`sparseconn.engine.rundir`):

- ``search``: ``config.yaml``, ``metrics.jsonl``, ``connections.jsonl``, ``checkpoints/last.pt`` and
  ``best.pt`` (kind ``"supernet"``) and ``summary.json``; with ``ckpt_prefix="search_"`` (a pipeline)
  ``checkpoints/search_last.pt``, ``search_best.pt`` and ``search_summary.json``.
- ``prune``: ``architecture.json`` (in the run folder, or ``out``).
- ``train``: ``config.yaml``, ``architecture.json``, ``metrics.jsonl``, ``checkpoints/last.pt`` and
  ``best.pt`` (kind ``"child"``) and ``train_summary.json``.
- ``train_model``: as ``train``, with checkpoints of kind ``"model"``; ``architecture.json`` only for a
  model that is a graph child, and no ``metrics.jsonl`` for a model without parameters (zero epochs).
"""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sparseconn.architecture import Architecture
from sparseconn.encoders import skip_pretrained
from sparseconn.engine.config import RunConfig
from sparseconn.engine.distributed import DistInfo, use_sync_bn
from sparseconn.engine.loading import load_supernet, make_task
from sparseconn.engine.rundir import check_run_membership, config_of, prepare_run_dir, read_checkpoint, run_folder_of
from sparseconn.engine.trainer import Trainer
from sparseconn.errors import CheckpointError, SparseconnError
from sparseconn.fileio import atomic_write_json, check_out_file
from sparseconn.inputs import resolved_params
from sparseconn.models import build_model, display_name
from sparseconn.network import build_child, build_supernet
from sparseconn.pruning import derive
from sparseconn.regularizers import RegContext
from sparseconn.space import SearchSpace
from sparseconn.task import Task


@dataclass
class RunOptions:
    """How a job runs: its device, whether it resumes, progress output, the DDP process group and
    callbacks ``fn(epoch, record)`` called after every epoch."""

    device: str = "cpu"
    resume: bool = False
    progress: bool = True
    dist: DistInfo = DistInfo()
    callbacks: tuple[Callable[[int, dict], None], ...] = ()


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's random number generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def first_build(opts: RunOptions) -> AbstractContextManager[None]:
    """Where a job builds its network: a resumed run loads its last checkpoint next, so its encoder's
    ``pretrained`` weights are not read again (they serve the first construction only)."""
    return skip_pretrained() if opts.resume else nullcontext()


def regularizer_context(space: SearchSpace, size: tuple[int, int]) -> RegContext:
    """What the regularizers know of the space's connections: their order, stages and MACs at ``size``."""
    keys = space.candidates
    macs = space.edge_macs(size)
    return RegContext(keys=keys, groups=torch.tensor(space.stage_groups()),
                      costs=torch.tensor([float(macs[k]) for k in keys]))


def refuse_model(cfg: RunConfig, job: str) -> None:
    """A config with ``model:`` set names a fixed model: searching or retraining a child is an error."""
    if cfg.model is not None:
        raise SparseconnError(f"the config sets model: {cfg.model.name!r} (a fixed model), which {job} does not "
                              "use; train it with `sparseconn train CONFIG` (no --arch), or remove `model:`")


def refuse_sync_bn(section_cfg: Any, opts: RunOptions, section: str) -> None:
    """A distributed run whose ``{section}.sync_bn`` cannot act on its device fails here, before its run folder
    is made (the Trainer would refuse it too, but after)."""
    if section_cfg.sync_bn and opts.dist.enabled:
        use_sync_bn(True, opts.dist, opts.device, section)


def seeded_task_and_data(cfg: RunConfig) -> tuple[Task, Any]:
    """Seed the run, then build its task and datasets: before any network, so that a missing or bad data
    folder fails before a weights download (the datasets draw from no global RNG, so seeds give the same
    runs)."""
    seed_everything(cfg.seed)
    task = make_task(cfg)
    return task, task.datasets(cfg.seed)


def search(cfg: RunConfig, out: Path, opts: RunOptions = RunOptions(), ckpt_prefix: str = "",
           prepare: bool = True) -> dict[str, Any]:
    """Train the supernet with Eq. (2): the task loss plus the connection regularizers. Writes
    ``{ckpt_prefix}summary.json`` and returns the summary."""
    refuse_model(cfg, "search")
    task, datasets = seeded_task_and_data(cfg)
    space = SearchSpace(cfg.space)
    with first_build(opts):
        net = build_supernet(space)
    net.checkpointing = cfg.checkpointing
    reg_ctx = regularizer_context(space, cfg.search.cost_size)
    refuse_sync_bn(cfg.search, opts, "search")
    if prepare:  # only once everything that bad input can break is built: a failed start leaves no folder
        prepare_run_dir(out, cfg, opts.resume, opts.dist)
    payload = {"kind": "supernet", "config": cfg.model_dump(mode="json")}
    trainer = Trainer(net, task, cfg.search, Path(out), "search", payload,
                      ckpt_prefix=ckpt_prefix, device=opts.device, seed=cfg.seed, dist=opts.dist,
                      reg_ctx=reg_ctx, threshold=cfg.prune.threshold,
                      progress=opts.progress, callbacks=list(opts.callbacks), log=cfg.log)
    result = trainer.fit(datasets, resume=opts.resume)
    summary = {"stage": "search", "candidates": len(space.candidates), **result,
               "final_connections": net.connections.snapshot()}
    if opts.dist.is_main:
        atomic_write_json(Path(out) / f"{ckpt_prefix}summary.json", summary)
    return summary


def check_threshold(value: Any) -> float:
    """A pruning threshold given outside a config (``prune --threshold``): a finite number >= 0, as the
    config's ``prune.threshold`` must be."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    if not ok:
        raise SparseconnError(f"--threshold must be a finite number >= 0 (a connection weight), got {value!r}")
    return float(value)


def prune(run: Path, threshold: float | None = None, redundancy: bool | None = None, which: str | None = None,
          out: Path | None = None, force: bool = False) -> Architecture:
    """Derive ``architecture.json`` from a search run's connection weights (best checkpoint by default).

    Written to ``out`` when given (refused, before any reading, when a file is there already, unless
    ``force``), else to the run folder's ``architecture.json`` (replaced: it is prune's own file)."""
    run = Path(run)
    if threshold is not None:
        threshold = check_threshold(threshold)
    if which is not None and which not in ("best", "last"):
        raise SparseconnError(f"--checkpoint must be best or last, got {which!r}")
    if out is not None:
        check_out_file(out, force=force)
    probe, probe_ckpt = read_checkpoint(run, "last", kind="supernet" if run.is_dir() else None)
    check_run_membership(probe, probe_ckpt)
    cfg = config_of(probe_ckpt, probe)
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
    arch.plugins = list(cfg.plugins)
    if out is not None:
        target = Path(out)
    elif run.is_dir():
        target = run / "architecture.json"
    else:  # RUN/checkpoints/best.pt -> RUN/architecture.json; a loose checkpoint file -> beside it
        target = (run_folder_of(run) or run.parent) / "architecture.json"
    arch.save(target)
    return arch


def starting_weights(cfg: RunConfig, arch: Architecture) -> Architecture:
    """``arch`` with its encoder's ``pretrained`` set as the run config's, when both name the same encoder.

    An architecture file fixes the child's structure; where the encoder's weights start (``pretrained``:
    ImageNet, a file, none) is the run's choice, as for the supernet. So ``train segmentation_voc.yaml
    --arch segmentation_voc_child.json`` starts from ImageNet as the config says, and ``--set
    space.encoder.params.pretrained=null`` trains the same child from scratch. A difference is warned about."""
    mine, theirs = cfg.space.encoder, arch.space.encoder
    if mine.name != theirs.name or mine.params.get("pretrained") == theirs.params.get("pretrained"):
        return arch
    warnings.warn(f"space.encoder.params.pretrained is {mine.params.get('pretrained')!r} in the run config and "
                  f"{theirs.params.get('pretrained')!r} in the architecture: the child's encoder starts from "
                  "the run config's", UserWarning, stacklevel=2)
    params = {k: v for k, v in theirs.params.items() if k != "pretrained"}
    if mine.params.get("pretrained") is not None:
        params["pretrained"] = mine.params["pretrained"]
    space = arch.space.model_copy(update={"encoder": theirs.model_copy(update={"params": params})})
    return arch.model_copy(update={"space": space})


def check_same_space(cfg: RunConfig, arch: Architecture) -> None:
    """A one-line error where ``arch`` was derived from another kind of network than ``cfg.space`` builds
    (input channels, input op and its settings, encoder, head): the child is built from the architecture
    alone, so the run's ``config.yaml`` would describe a network it does not hold."""
    mine, theirs = cfg.space, arch.space
    pairs = {"in_channels": (mine.in_channels, theirs.in_channels),
             "input op": (mine.input.name, theirs.input.name),
             "encoder": (mine.encoder.name, theirs.encoder.name),
             "head": (mine.head.name if mine.head else None, theirs.head.name if theirs.head else None)}
    for what, (want, got) in pairs.items():
        if want != got:
            raise SparseconnError(f"--arch: the architecture's {what} is {got!r}, the config's space has {want!r}; "
                                  "retrain a child with the config it was searched with")
    ours, arch_params = (resolved_params(mine.input.name, mine.input.params),
                         resolved_params(theirs.input.name, theirs.input.params))
    if ours != arch_params:
        differ = {k: (arch_params.get(k), ours.get(k)) for k in sorted(set(ours) | set(arch_params))
                  if ours.get(k) != arch_params.get(k)}
        what = ", ".join(f"{k}: {a!r} in the architecture, {c!r} in the config" for k, (a, c) in differ.items())
        raise SparseconnError(f"--arch: the input op {mine.input.name!r} is set up differently ({what}); "
                              "retrain a child with the config it was searched with, or set the config's "
                              "space.input to the architecture's")


def train(cfg: RunConfig, arch: Architecture, out: Path, opts: RunOptions = RunOptions(),
          inherit_from: Path | None = None, prepare: bool = True) -> dict[str, Any]:
    """Retrain the child of ``arch`` with the task loss alone (optionally from inherited weights). Writes
    ``train_summary.json`` and returns the summary."""
    refuse_model(cfg, "retraining a searched child (--arch)")
    check_same_space(cfg, arch)
    arch = starting_weights(cfg, arch)
    task, datasets = seeded_task_and_data(cfg)
    inherit = None
    if cfg.train.inherit or inherit_from is not None:
        if inherit_from is None:
            raise SparseconnError("train.inherit is set but no supernet checkpoint was given to inherit from")
        inherit = load_supernet(inherit_from, arch.space).eval()
    with first_build(opts):
        net = build_child(arch, inherit=inherit)
    net.checkpointing = cfg.checkpointing
    refuse_sync_bn(cfg.train, opts, "train")
    if prepare:  # only once everything that bad input can break is built: a failed start leaves no folder
        prepare_run_dir(out, cfg, opts.resume, opts.dist)
    if opts.dist.is_main:
        arch.save(Path(out) / "architecture.json")
    payload = {"kind": "child", "config": cfg.model_dump(mode="json"), "architecture": arch.model_dump(mode="json"),
               "edge_bias": inherit is not None}
    trainer = Trainer(net, task, cfg.train, Path(out), "train", payload, device=opts.device, seed=cfg.seed,
                      dist=opts.dist, threshold=cfg.prune.threshold, progress=opts.progress,
                      callbacks=list(opts.callbacks), log=cfg.log)
    result = trainer.fit(datasets, resume=opts.resume)
    summary = {"stage": "train", "connections": len(arch.connections), **result}
    if opts.dist.is_main:
        atomic_write_json(Path(out) / "train_summary.json", summary)
    return summary


def train_model(cfg: RunConfig, out: Path, opts: RunOptions = RunOptions(),
                prepare: bool = True) -> dict[str, Any]:
    """Train the fixed model of ``cfg.model`` with the task loss and the ``train`` settings. Writes
    ``train_summary.json`` and returns the summary.

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
    task, datasets = seeded_task_and_data(cfg)
    with first_build(opts):
        net = build_model(cfg.model.name, cfg.model.params, cfg.space, task)
    arch = getattr(net, "architecture", None)
    refuse_sync_bn(cfg.train, opts, "train")
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
                      callbacks=list(opts.callbacks), log=cfg.log)
    result = trainer.fit(datasets, resume=opts.resume)
    summary = {"stage": "train", "model": cfg.model.name, "connections": getattr(net, "num_connections", None),
               **result}
    if opts.dist.is_main:
        atomic_write_json(Path(out) / "train_summary.json", summary)
    return summary
