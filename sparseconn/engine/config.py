"""The run configuration: one pydantic tree, loaded from YAML with ``--set a.b=value`` overrides.

Sections: ``plugins``, ``checkpointing`` and ``log`` (run-level settings), ``task`` (validated by the task's own
``Config``, a :class:`~sparseconn.task.TaskConfig`, and carried as that typed object), ``space`` (the core's
:class:`~sparseconn.config.SpaceConfig`: only what builds the network), ``search``
(:class:`SearchConfig`), ``train`` (:class:`TrainConfig`), ``prune``, ``evaluate`` and ``model``. Every
error names the key path and the file.

Configs written before sparseconn 0.2 keep loading: ``space.plugins`` and ``space.checkpointing`` move to
the run level, and the keys of the other section that an old ``search``/``train`` section carried at
their defaults are dropped (a non-default one is an error naming its section).
"""

from __future__ import annotations

import copy
import os
import warnings
from importlib.metadata import entry_points
from importlib.resources import files
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import Field, SerializeAsAny, ValidationError, field_validator, model_validator

from sparseconn.config import SpaceConfig, format_validation_error, read_yaml, validate
from sparseconn.engine.loggers import check_extras, check_log
from sparseconn.errors import ConfigError, SparseconnError
from sparseconn.registry import PLUGIN_GROUP, import_modules
from sparseconn.schema import StrictModel
from sparseconn.task import TASKS, TaskConfig


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


class TrainingConfig(StrictModel):
    """What the search and the retraining share: epochs, batches, optimiser, schedule, precision, limits."""

    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=8, ge=1)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    accumulate: int = Field(default=1, ge=1)
    """Gradient accumulation: one optimiser step every this many batches (micro-batches), so the effective
    batch is ``batch_size`` x ``accumulate`` x the number of processes. Each micro-batch's loss (with a
    search's connection losses, so that they count once a step) is divided by ``accumulate``: a step equals
    one step on the large batch, and the schedule, gradient clipping and the connection weights' projection
    count optimiser steps. An epoch's last, incomplete group is stepped as the mean over its micro-batches.
    BatchNorm still normalises each micro-batch on its own: ``sync_bn`` or a larger ``batch_size`` helps
    there."""
    grad_clip: float | None = Field(default=5.0, gt=0)
    """Clip the weights' gradient norm (of the accumulated gradient) to this; null: no clipping."""
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    """auto: bf16 (or fp16 with loss scaling) on CUDA, off on CPU."""
    limit_train_batches: int | None = Field(default=None, ge=1)
    """Train on at most this many batches an epoch: micro-batches, not optimiser steps, when ``accumulate``
    is above 1."""
    limit_val_batches: int | None = Field(default=None, ge=1)
    num_workers: int = Field(default=0, ge=0)
    bn_recalibration: int = Field(default=16, ge=0)
    """Precise BN: before each validation, re-estimate BatchNorm statistics over this many training
    batches with the epoch's final weights (0: keep the running averages)."""
    sync_bn: bool = False
    """Under DDP (torchrun on several CUDA GPUs), convert BatchNorm layers to SyncBatchNorm so their batch
    statistics cover all processes' micro-batches. Needs CUDA and NCCL (refused on a CPU run); a single
    process ignores it with a warning. Checkpoints hold plain BatchNorm state: they load as usual."""

    _OTHER: ClassVar[tuple[str, tuple[str, ...]]] = ("", ())
    """The other section's name and its own keys (an old config carried them here at their defaults)."""

    @model_validator(mode="before")
    @classmethod
    def _keys_of_the_other_section(cls, data: Any) -> Any:
        other, keys = cls._OTHER
        if not isinstance(data, dict) or not any(k in data for k in keys):
            return data
        other_cls = SearchConfig if other == "search" else TrainConfig
        default = other_cls()
        data = dict(data)
        for key in keys:
            if key not in data:
                continue
            value = data.pop(key)
            try:
                same = getattr(other_cls.model_validate({key: value}), key) == getattr(default, key)
            except ValidationError:
                same = False
            if not same:
                raise ValueError(f"{key} is a {other} setting: move it to {other}.{key}")
        return data


class SearchConfig(TrainingConfig):
    """The ``search`` section: the supernet's training, with its connection weights and their losses."""

    connection_optimizer: OptimizerConfig = Field(default_factory=lambda: OptimizerConfig(lr=1e-2))
    """Optimiser of the connection weights, with its own settings."""
    regularizers: list[RegularizerConfig] = Field(default_factory=list)
    """Connection losses added to Loss_t (Eq. 2 of the paper)."""
    cost_size: tuple[int, int] = (256, 256)
    """Input size at which ``cost_weighted_sparsity`` measures each connection's MACs."""

    _OTHER: ClassVar[tuple[str, tuple[str, ...]]] = ("train", ("inherit",))


class TrainConfig(TrainingConfig):
    """The ``train`` section: a child (or a fixed model) retrained with the task loss alone."""

    inherit: bool = False
    """Start the child from the supernet's weights instead of from scratch."""

    _OTHER: ClassVar[tuple[str, tuple[str, ...]]] = ("search", ("connection_optimizer", "regularizers", "cost_size"))


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


class RandomChildSpec(StrictModel):
    """How the random child of a ``random_child`` entry is drawn (:func:`sparseconn.sampling.random_architecture`)."""

    seed: int = Field(default=0, ge=0)
    """Seed of the draw (``numpy.random.default_rng``): the same seed draws the same child."""


class RandomChildBaseline(StrictModel):
    """``{random_child: {seed}, name}``: the random control. ``pipeline`` draws a child with as many candidate
    connections as the searched child (``RUN/architecture.json``), uniformly at random among the live
    children of that size (:mod:`sparseconn.sampling`), and trains it as it trains the searched child (the
    run's ``train`` settings, inheriting from the same supernet checkpoint when ``train.inherit``) in
    ``RUN/baselines/<slug of name>/``, its ``architecture.json`` there; ``evaluate`` scores it as a row next
    to the searched child. List several entries for several seeds."""

    random_child: RandomChildSpec
    """``{seed: N}``: the draw's seed (the number of connections is the searched child's)."""
    name: str | None = Field(default=None, min_length=1)
    """Its row name (default: ``random child (seed N)``); also names its folder."""

    @property
    def label(self) -> str:
        return self.name or f"random child (seed {self.random_child.seed})"


BaselineEntry = str | ModelBaseline | RunBaseline | RandomChildBaseline
_ENTRY_FORMS = ("a task baseline name, {model: {name, params}, name}, {run: PATH, name} or "
                "{random_child: {seed}, name}")
_ENTRY_KEYS = {"model": ModelBaseline, "run": RunBaseline, "random_child": RandomChildBaseline}


def _baseline_entry(i: int, entry: Any) -> BaselineEntry:
    """One ``evaluate.baselines`` list entry, checked; a ValueError names the entry and what was expected."""
    if isinstance(entry, str) and entry.strip():
        return entry
    if isinstance(entry, (ModelBaseline, RunBaseline, RandomChildBaseline)):
        return entry
    forms = [k for k in _ENTRY_KEYS if isinstance(entry, dict) and k in entry]
    if len(forms) != 1:
        raise ValueError(f"entry {i} is {entry!r}; expected {_ENTRY_FORMS}")
    cls = _ENTRY_KEYS[forms[0]]
    try:
        return cls.model_validate(entry)
    except ValidationError as exc:
        raise ValueError(format_validation_error(exc, f"entry {i}", cls)) from None


class EvaluateConfig(StrictModel):
    latency_size: tuple[int, int] = (1024, 1024)
    """Input size (H W) of the latency measurements; both positive."""
    latency_runs: int = Field(default=5, ge=1)
    baselines: bool | list[BaselineEntry] = True
    """Rows beside the run's own model(s). ``true``: every non-network baseline of the task (e.g. the
    classical FT pipeline); ``false``: none; or a list of task baseline names (the task's short aliases
    too, e.g. ``classical``), fixed models ``{model: {name, params}, name}`` (trained by ``pipeline``
    in ``RUN/baselines/``), trained runs ``{run: PATH, name}`` and random controls
    ``{random_child: {seed: 0}, name}``: a child with the searched child's number of connections drawn
    uniformly at random among the live ones, trained by ``pipeline`` as the searched child is, in
    ``RUN/baselines/`` (row name default ``random child (seed 0)``; one entry per seed)."""
    max_images: int | None = Field(default=None, ge=1)
    engine: Literal["auto", "reference", "eager", "compiled", "onnxruntime"] = "auto"
    """Inference path whose latency is reported (:mod:`sparseconn.engine.fastpath`; each is checked against
    eager fp32 first). ``auto``: BN folded, channels-last, bf16 / CUDA graphs where the device has them."""

    @field_validator("latency_size")
    @classmethod
    def _positive_size(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) < 1:
            raise ValueError("must be two positive integers (H W)")
        return value

    @field_validator("baselines", mode="before")
    @classmethod
    def _entries(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value  # a bool, or pydantic's own error for anything else
        return [_baseline_entry(i, v) for i, v in enumerate(value)]


RUN_LEVEL = ("plugins", "checkpointing")
"""Run-level keys that sat in the ``space`` section before sparseconn 0.2."""


def migrate(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """An old run config made current, and the old keys it moved (``space.plugins`` -> ``plugins``,
    ``space.checkpointing`` -> ``checkpointing``); a key set in both places with different values is an error."""
    space = data.get("space")
    if not isinstance(space, dict) or not any(k in space for k in RUN_LEVEL):
        return data, []
    data, space, moved = dict(data), dict(space), []
    for key in RUN_LEVEL:
        if key in space:
            value = space.pop(key)
            if key in data and data[key] != value:
                raise ConfigError(f"space.{key} is {value!r} but {key} is {data[key]!r}: {key} is a run-level "
                                  f"setting now; remove space.{key}")
            data.setdefault(key, value)
            moved.append(f"space.{key}")
    data["space"] = space
    return data, moved


class RunConfig(StrictModel):
    plugins: list[str] = Field(default_factory=list)
    """Modules imported before anything is built, so that user tasks, encoders, edge rules, edge ops,
    fusions and heads can register themselves (e.g. ``[my_pkg.my_space]``)."""
    checkpointing: bool = False
    """Gradient checkpointing of each decoder stage while training (saves supernet memory)."""
    log: list[str] = Field(default_factory=lambda: ["jsonl"])
    """Epoch loggers (:mod:`sparseconn.engine.loggers`): ``jsonl`` (``metrics.jsonl``, ``connections.jsonl``;
    always written, listed or not, since reports and ``runs`` read them), ``csv`` (``metrics.csv``),
    ``tensorboard`` (``RUN/tensorboard/``; needs ``pip install 'sparseconn[tensorboard]'``)."""
    task: SerializeAsAny[TaskConfig]
    """``name`` (the task's registry name) plus the task's own options, validated by its ``Config``."""
    space: SpaceConfig
    search: SearchConfig = Field(default_factory=SearchConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    prune: PruneConfig = Field(default_factory=PruneConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    model: ModelConfig | None = None
    """A fixed model instead of a searched child: ``sparseconn train CONFIG`` trains it (no ``--arch``);
    ``space`` gives it the run's ``in_channels``, ``input`` op and ``head``."""
    seed: int = Field(default=0, ge=0)
    """Seed of the run (weights, training items, augmentation): a non-negative integer, as NumPy's
    generators take."""

    @model_validator(mode="before")
    @classmethod
    def _run_level_keys(cls, data: Any) -> Any:
        """Old keys moved, and the plug-ins imported before the task section is read (user tasks may
        live in them)."""
        if not isinstance(data, dict):
            return data
        data = migrate(data)[0]
        plugins = data.get("plugins", [])
        if isinstance(plugins, list) and all(isinstance(p, str) for p in plugins):
            import_modules(plugins)  # (a malformed list is left to the field's validation)
        return data

    @field_validator("log", mode="before")
    @classmethod
    def _loggers(cls, value: Any) -> list[str]:
        return check_log(value)

    @field_validator("task", mode="before")
    @classmethod
    def _typed_task(cls, value: Any) -> Any:
        """A ``task`` dict becomes its task's ``Config`` (:func:`validate_run_config` does it first, with
        errors that name the file; this serves ``RunConfig.model_validate`` called directly)."""
        if isinstance(value, TaskConfig) or not isinstance(value, dict):
            return value
        return task_config_class(value.get("name")).model_validate(value)

    def task_config(self, source: str = "config") -> TaskConfig:
        """The typed task section (kept for callers written before it was carried typed as ``task``)."""
        return self.task

    def dump(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def task_config_class(name: Any) -> type[TaskConfig]:
    """The ``Config`` of the task registered as ``name``; a one-line error if there is none or it breaks
    the contract (it must subclass :class:`~sparseconn.task.TaskConfig`)."""
    if not isinstance(name, str):
        raise ConfigError(f"task.name is {name!r}; expected a task registry name, e.g. phase_retrieval")
    cls = TASKS.get(name).Config
    if not (isinstance(cls, type) and issubclass(cls, TaskConfig)):
        raise ConfigError(f"task {name!r}: its Config ({getattr(cls, '__name__', cls)!r}) must subclass "
                          "sparseconn.task.TaskConfig")
    return cls


def bundled_configs() -> dict[str, Path]:
    """Name -> file of the run configs that the installed plug-ins ship (``*.yaml`` at the top of each
    ``sparseconn.plugins`` entry point's package, e.g. ``sparseconn_tasks/phase_retrieval.yaml``)."""
    found: dict[str, Path] = {}
    for ep in sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        try:
            root = files(ep.value.split(":")[0].split(".")[0])
        except ModuleNotFoundError:  # a broken plug-in: load_plugins reports it
            continue
        for item in sorted(root.iterdir(), key=lambda t: t.name):
            if item.name.endswith(".yaml") and item.is_file():
                found.setdefault(item.name[: -len(".yaml")], Path(str(item)))
    return found


def resolve_config(path: Path) -> Path:
    """``path`` itself when it exists or looks like a path (a separator or a suffix); else the bundled config
    of that name (``phase_retrieval`` -> the installed ``tasks/phase_retrieval.yaml``), or a one-line error
    listing the bundled names."""
    text = str(path)
    if path.exists() or path.suffix or "/" in text or os.sep in text or (os.altsep and os.altsep in text):
        return path
    bundled = bundled_configs()
    if text not in bundled:
        raise ConfigError(f"{text!r} is neither a file nor a bundled config; bundled configs: "
                          f"{', '.join(sorted(bundled)) or '(none installed)'}")
    return bundled[text]


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


def load_run_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read, override and validate a run config. Keys an older sparseconn kept elsewhere are moved, with a
    warning naming their new place."""
    data = apply_overrides(read_yaml(path), overrides or [])
    return validate_run_config(data, str(path))


def validate_run_config(data: dict[str, Any], source: str, warn: bool = True) -> RunConfig:
    """A run config from its data: plug-ins imported first (user tasks may live in them), then the task
    section validated by the task's own ``Config`` and checked against ``space``, then the rest. Keys an
    older sparseconn kept elsewhere are moved, with a warning naming their new place unless ``warn`` is
    False (configs stored in checkpoints, which are also read without the loggers' optional extras: a
    stored config rebuilds a model, which logs nothing)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(data).__name__}")
    data, moved = migrate(data)
    for key in moved if warn else []:
        warnings.warn(f"{source}: {key} is a run-level setting since sparseconn 0.2: write it as "
                      f"{key.split('.', 1)[1]} at the top of the config", FutureWarning, stacklevel=2)
    plugins = data.get("plugins", [])
    if isinstance(plugins, list) and all(isinstance(p, str) for p in plugins):
        import_modules(plugins)  # (a malformed list is left to the validation below)
    task = data.get("task")
    if not isinstance(task, dict):
        raise ConfigError(f"{source}: task: expected a mapping with name (a task registry name), got {task!r}")
    cls = task_config_class(task.get("name"))
    data = {**data, "task": validate(cls, task, source, "task")}
    cfg = validate(RunConfig, data, source)
    if warn:
        try:
            check_extras(cfg.log)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    try:
        TASKS.get(cfg.task.name).check_space(cfg.task, cfg.space)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    _check_models(cfg, source)
    return cfg


def _check_models(cfg: RunConfig, source: str) -> None:
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
            task_baselines(TASKS.get(cfg.task.name)(cfg.task), names)
        except SparseconnError as exc:
            raise ConfigError(f"{source}: {exc}") from None
