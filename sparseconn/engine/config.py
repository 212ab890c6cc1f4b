"""The run configuration: one pydantic tree, loaded from YAML with ``--set a.b=value`` overrides.

Sections: ``task`` (validated by the task's own ``Config``), ``space`` (the core's
:class:`~sparseconn.config.SpaceConfig`), ``search`` and ``train`` (:class:`TrainConfig`),
``prune`` and ``evaluate``. Every error names the key path and the file.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from sparseconn.config import SpaceConfig, format_validation_error, read_yaml, validate
from sparseconn.errors import ConfigError, SparseconnError
from sparseconn.registry import import_modules
from sparseconn.schema import StrictModel
from sparseconn.task import TASKS


class OptimizerConfig(StrictModel):
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    momentum: float = Field(default=0.9, ge=0)
    """SGD only."""
    encoder_lr_scale: float = Field(default=1.0, gt=0)
    """Encoder learning rate = lr x this (SparseMask: 0.1)."""


class ScheduleConfig(StrictModel):
    name: Literal["constant", "cosine", "poly", "step"] = "cosine"
    """Per-step learning-rate schedule; SparseMask uses poly with power 0.9."""
    warmup_epochs: float = Field(default=0.0, ge=0)
    power: float = 0.9
    step_epochs: int = Field(default=30, ge=1)
    gamma: float = 0.1
    min_lr_ratio: float = Field(default=0.0, ge=0)


class RegularizerConfig(StrictModel):
    name: str
    """Regularizer registry name (``binary_entropy``, ``global_sparsity``, ``stage_target``,
    ``cost_weighted_sparsity``)."""
    coef: float = Field(ge=0)
    params: dict[str, Any] = Field(default_factory=dict)


class TrainConfig(StrictModel):
    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=8, ge=1)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    connection_optimizer: OptimizerConfig = Field(default_factory=lambda: OptimizerConfig(lr=1e-2))
    """Optimiser of the connection weights (search only), with its own settings."""
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    regularizers: list[RegularizerConfig] = Field(default_factory=list)
    """Connection losses added to Loss_t during the search (Eq. 2); ignored when retraining."""
    cost_size: tuple[int, int] = (256, 256)
    """Input size at which ``cost_weighted_sparsity`` measures each connection's MACs."""
    grad_clip: float | None = Field(default=5.0, gt=0)
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    """auto: bf16 (or fp16 with loss scaling) on CUDA, off on CPU."""
    inherit: bool = False
    """Retraining only: start the child from the supernet's weights instead of from scratch."""
    limit_train_batches: int | None = Field(default=None, ge=1)
    limit_val_batches: int | None = Field(default=None, ge=1)
    num_workers: int = Field(default=0, ge=0)
    bn_recalibration: int = Field(default=16, ge=0)
    """Precise BN: before each validation, re-estimate BatchNorm statistics over this many training
    batches with the epoch's final weights (0: keep the running averages)."""


class PruneConfig(StrictModel):
    threshold: float = Field(default=1e-3, ge=0)
    redundancy: bool = False
    """Also apply SparseMask's two redundancy clean-ups."""
    checkpoint: Literal["best", "last"] = "best"
    """Which search checkpoint's connection weights are pruned (the paper: best validation)."""


class ModelConfig(StrictModel):
    """A fixed (not searched) model of :data:`sparseconn.models.MODELS`."""

    name: str
    """Model registry name: ``unet``, ``sparsemask_child``, ``architecture`` or a task's (``classical``)."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments of the model's builder, e.g. ``{width: 70.5}``."""


class ModelBaseline(StrictModel):
    """``{model: {name, params}, name}``: a fixed model that ``pipeline`` trains with the run's ``train``
    settings in ``RUN/baselines/<slug of name or model.name>/`` and evaluates as a row."""

    model: ModelConfig
    name: str | None = Field(default=None, min_length=1)
    """Its row name (default: the model's own, e.g. U-Net); also names its folder."""


class RunBaseline(StrictModel):
    """``{run: PATH}``: an already trained run folder or checkpoint, evaluated as a row."""

    run: Path
    """Relative paths are from the working directory."""
    name: str | None = Field(default=None, min_length=1)
    """Its row name (default: the model's own)."""


BaselineEntry = str | ModelBaseline | RunBaseline
_ENTRY_FORMS = "a task baseline name, {model: {name, params}, name} or {run: PATH, name}"


def _baseline_entry(i: int, entry: Any) -> BaselineEntry:
    """One ``evaluate.baselines`` list entry, checked; a ValueError names the entry and what was expected."""
    if isinstance(entry, str) and entry.strip():
        return entry
    if isinstance(entry, (ModelBaseline, RunBaseline)):
        return entry
    if not isinstance(entry, dict) or ("model" in entry) == ("run" in entry):
        raise ValueError(f"entry {i} is {entry!r}; expected {_ENTRY_FORMS}")
    cls = ModelBaseline if "model" in entry else RunBaseline
    try:
        return cls.model_validate(entry)
    except ValidationError as exc:
        raise ValueError(format_validation_error(exc, f"entry {i}", cls)) from None


class EvaluateConfig(StrictModel):
    latency_size: tuple[int, int] = (1024, 1024)
    latency_runs: int = Field(default=5, ge=1)
    baselines: bool | list[BaselineEntry] = True
    """Rows beside the run's own model(s). ``true``: every non-network baseline of the task (e.g. the
    classical FT pipeline); ``false``: none; or a list of task baseline names (the task's short aliases
    too, e.g. ``classical``), fixed models ``{model: {name, params}, name}`` (trained by ``pipeline``
    in ``RUN/baselines/``) and trained runs ``{run: PATH, name}``."""
    max_images: int | None = Field(default=None, ge=1)
    engine: Literal["auto", "reference", "eager", "compiled", "onnxruntime"] = "auto"
    """Inference path whose latency is reported (:mod:`sparseconn.engine.fastpath`; each is checked against
    eager fp32 first). ``auto``: BN folded, channels-last, bf16 / CUDA graphs where the device has them."""

    @field_validator("baselines", mode="before")
    @classmethod
    def _entries(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value  # a bool, or pydantic's own error for anything else
        return [_baseline_entry(i, v) for i, v in enumerate(value)]


class RunConfig(StrictModel):
    task: dict[str, Any]
    """``name`` (task registry name) plus the task's own options."""
    space: SpaceConfig
    search: TrainConfig = Field(default_factory=TrainConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    prune: PruneConfig = Field(default_factory=PruneConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    model: ModelConfig | None = None
    """A fixed model instead of a searched child: ``sparseconn train CONFIG`` trains it (no ``--arch``);
    ``space`` gives it the run's ``in_channels``, ``input`` op and ``head``."""
    seed: int = 0

    @model_validator(mode="after")
    def _task_named(self) -> RunConfig:
        if not isinstance(self.task.get("name"), str):
            raise ValueError("task.name is required (a task registry name, e.g. phase_retrieval)")
        return self

    def task_config(self, source: str = "config") -> BaseModel:
        """The task section validated by the task's own ``Config`` model and checked against ``space``."""
        cls = TASKS.get(self.task["name"])
        body = {k: v for k, v in self.task.items() if k != "name"}
        task_cfg = validate(cls.Config, body, source, "task")
        try:
            cls.check_space(task_cfg, self.space)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        return task_cfg

    def dump(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML: numbers, booleans, lists)."""
    out = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE (e.g. search.epochs=3), got {item!r}")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}: value {raw!r} is not valid YAML") from None
        node: Any = out
        parts = key.split(".")
        for part in parts[:-1]:
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"--set {key}: {part!r} is not an index of the list")
                node = node[int(part)]
                continue
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {part!r} is not a section")
            node = node.setdefault(part, {})
        last = parts[-1]
        if isinstance(node, list) and last.isdigit() and int(last) < len(node):
            node[int(last)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"--set {key}: cannot set {last!r} here")
    return out


def load_run_config(path: str | Path, overrides: list[str] | None = None) -> tuple[RunConfig, BaseModel]:
    """Read, override and validate a run config; returns it with the validated task section."""
    data = apply_overrides(read_yaml(path), overrides or [])
    return validate_run_config(data, str(path))


def validate_run_config(data: dict[str, Any], source: str) -> tuple[RunConfig, BaseModel]:
    cfg = validate(RunConfig, data, source)
    import_modules(cfg.space.plugins)  # user tasks may live in the plugin modules
    task_cfg = cfg.task_config(source)
    _check_models(cfg, task_cfg, source)
    return cfg, task_cfg


def _check_models(cfg: RunConfig, task_cfg: BaseModel, source: str) -> None:
    """Model names and parameters of ``model`` and ``evaluate.baselines``, and the task baseline names,
    checked when the config is read (not after a long search)."""
    from sparseconn.models import check_model_params

    where = [("model", cfg.model)] if cfg.model is not None else []
    entries = cfg.evaluate.baselines if isinstance(cfg.evaluate.baselines, list) else []
    where += [(f"evaluate.baselines.{i}.model", e.model) for i, e in enumerate(entries) if isinstance(e, ModelBaseline)]
    for key, model in where:
        try:
            check_model_params(model.name, model.params)
        except SparseconnError as exc:
            raise ConfigError(f"{source}: {key}: {exc}") from None
    names = [e for e in entries if isinstance(e, str)]
    if names:
        from sparseconn.engine.baselines import task_baselines

        try:
            task_baselines(TASKS.get(cfg.task["name"])(task_cfg), names)
        except SparseconnError as exc:
            raise ConfigError(f"{source}: {exc}") from None
