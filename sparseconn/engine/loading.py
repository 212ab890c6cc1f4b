"""Trained models rebuilt from checkpoints: a run's model of any kind (:func:`load_model`), a search's
supernet (:func:`load_supernet`), and the task a stored run config names (:func:`make_task`).

A checkpoint's ``kind`` says how its network is rebuilt: ``"supernet"`` from the stored space config,
``"child"`` from the stored architecture, ``"model"`` (a fixed model) from its stored architecture when it
has one, else from its builder (:mod:`sparseconn.models`). Networks are rebuilt inside
:func:`~sparseconn.encoders.skip_pretrained`: the checkpoint holds the encoder's weights, so an encoder's
``pretrained`` file (or download) is not needed to load a trained model on another machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from sparseconn.architecture import Architecture
from sparseconn.config import SpaceConfig
from sparseconn.encoders import skip_pretrained
from sparseconn.engine.checkpoint import load_checkpoint, load_model_state
from sparseconn.engine.config import ModelConfig, RunConfig
from sparseconn.engine.rundir import check_run_membership, config_of, find_checkpoint, space_difference
from sparseconn.errors import CheckpointError
from sparseconn.models import build_model, graph_model
from sparseconn.network import GraphNet, build_supernet
from sparseconn.registry import import_modules
from sparseconn.space import SearchSpace
from sparseconn.task import TASKS, Task


def make_task(cfg: RunConfig) -> Task:
    """The task that ``cfg`` names, built with its typed ``task`` section."""
    return TASKS.get(cfg.task.name)(cfg.task)


@dataclass
class LoadedModel:
    """A network in eval mode with the run config it was trained under and the checkpoint it came from."""

    net: nn.Module
    cfg: RunConfig
    kind: str
    path: Path
    checkpoint: dict[str, Any]

    def label(self, task: Task) -> str:
        """Its row name in reports: a fixed model's own name, a random control's ``random child (seed N)``
        (the name the parent run's report gives it by default), else the task's name for its kind."""
        if self.kind == "model":
            name = self.checkpoint.get("display_name")
            return name if isinstance(name, str) and name else str(self.checkpoint["model_config"]["name"])
        draw = (self.checkpoint.get("architecture") or {}).get("random_draw") if self.kind == "child" else None
        if isinstance(draw, dict) and isinstance(draw.get("seed"), int):
            return f"random child (seed {draw['seed']})"
        return task.display_names.get(self.kind, self.kind)


def load_supernet(path: Path, space: SpaceConfig | None = None) -> GraphNet:
    """The supernet of a search checkpoint; with ``space``, refuse one searched in another space."""
    ckpt = load_checkpoint(path)
    if ckpt.get("kind") != "supernet":
        raise CheckpointError(f"{path} is not a search (supernet) checkpoint")
    cfg = config_of(ckpt, path)
    where = None if space is None else space_difference(space.model_dump(mode="json"),
                                                         cfg.space.model_dump(mode="json"))
    if where is not None:
        raise CheckpointError(f"checkpoint {path} was saved from another architecture than the child's search "
                              f"space ({where} differs)")
    with skip_pretrained():  # the checkpoint holds the encoder's weights
        net = build_supernet(SearchSpace(cfg.space))
    load_model_state(net, ckpt, path)
    return net


def _fixed_model(ckpt: dict[str, Any], cfg: RunConfig, path: Path) -> nn.Module:
    """The model of a ``"model"`` checkpoint: its stored architecture, else its builder again."""
    try:
        spec = ModelConfig.model_validate(ckpt.get("model_config"))
        arch = Architecture.model_validate(ckpt["architecture"]) if ckpt.get("architecture") is not None else None
    except Exception as exc:  # pydantic errors from a damaged file: report, do not crash
        raise CheckpointError(f"{path}: stored model is invalid ({str(exc).splitlines()[0]})") from None
    name = ckpt.get("display_name") if isinstance(ckpt.get("display_name"), str) else spec.name
    if arch is not None:  # e.g. `architecture` with a path that has moved since: the checkpoint is enough
        return graph_model(arch, name)
    return build_model(spec.name, spec.params, cfg.space, make_task(cfg))


def load_model(source: Path, which: str = "best") -> LoadedModel:
    """A trained model from a run folder (its ``which`` checkpoint, ``best`` or ``last``; a folder without
    best.pt: its last) or a checkpoint file."""
    if which not in ("best", "last"):
        raise CheckpointError(f"which checkpoint must be best or last, got {which!r}")
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
    cfg = config_of(ckpt, path)
    with skip_pretrained():  # the checkpoint holds the encoder's weights
        net = _rebuild(ckpt, cfg, path)
    load_model_state(net, ckpt, path)
    return LoadedModel(net.eval(), cfg, ckpt["kind"], path, ckpt)


def _rebuild(ckpt: dict[str, Any], cfg: RunConfig, path: Path) -> nn.Module:
    """The network of a checkpoint of any kind, before its state is loaded."""
    if ckpt.get("kind") == "child":
        try:
            arch = Architecture.model_validate(ckpt["architecture"])
        except Exception as exc:  # pydantic errors from a damaged file: report, do not crash
            raise CheckpointError(f"{path}: stored architecture is invalid ({str(exc).splitlines()[0]})") from None
        import_modules(arch.plugins)
        net = GraphNet(arch.space, arch.graph(), gated=False, edge_bias=bool(ckpt.get("edge_bias")))
    elif ckpt.get("kind") == "supernet":
        net = build_supernet(SearchSpace(cfg.space))
    elif ckpt.get("kind") == "model":
        net = _fixed_model(ckpt, cfg, path)
    else:
        raise CheckpointError(f"{path}: unknown model kind {ckpt.get('kind')!r}")
    return net
