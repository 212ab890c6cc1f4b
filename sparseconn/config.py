"""Typed configuration of a search space: the one home for its defaults.

A space is data: registry *names* and numbers, never classes. YAML is read with ``yaml.safe_load``
and validated with pydantic (unknown keys are errors); every error names the key path and the file.
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any, Literal, get_type_hints

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from sparseconn.errors import ConfigError
from sparseconn.registry import import_modules
from sparseconn.schema import StrictModel


def _odd_kernel(k: int) -> int:
    """A convolution kernel side must be odd: the ops pad ``k // 2``, which keeps a feature map's size only
    for an odd ``k`` (an even one grows it a pixel, and summing a node's inputs fails deep in the model)."""
    if k % 2 == 0:
        raise ValueError("must be an odd kernel size (1, 3, 5, ...): padding k // 2 keeps a feature map's size "
                         "only then")
    return k


class EncoderConfig(StrictModel):
    name: str = "mobilenet_v2"
    """Encoder registry name (``sparseconn.encoders.ENCODERS``)."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments of the encoder constructor, e.g. ``{width: 1.0}``."""
    features: list[int] | None = None
    """Encoder feature indices that become encoder nodes, in naming order (E_base, E_base+1, ...).
    ``None`` uses every feature fine to coarse. SparseMask names its features deepest first."""


class GroundConfig(StrictModel):
    name: str = "G"
    """Node name of this ground feature."""
    source: int = -1
    """Encoder feature index that is average-pooled (negative counts from the end)."""
    size: int = Field(default=1, ge=1)
    """Pooled spatial size (``size x size``): 3 in the paper, 1 (global) in SparseMask."""


class DepthConfig(StrictModel):
    """Channels of decoder stage l (l = 1 for the finest stage)."""

    rule: Literal["linear", "constant", "exponential", "list"] = "linear"
    """linear: min(max, step*l) (the paper); constant: value (SparseMask); exponential:
    min(max, step*2^(l-1)); list: values[l-1]."""
    step: int = Field(default=8, ge=1)
    max: int = Field(default=256, ge=1)
    value: int = Field(default=64, ge=1)
    values: list[int] | None = None

    def channels(self, level: int) -> int:
        """Channels of the stage at 1-based ``level`` (1 = finest)."""
        if self.rule == "linear":
            return min(self.max, self.step * level)
        if self.rule == "constant":
            return self.value
        if self.rule == "exponential":
            return min(self.max, self.step * 2 ** (level - 1))
        assert self.values is not None  # checked by the validator
        return self.values[level - 1]

    @model_validator(mode="after")
    def _check(self) -> DepthConfig:
        if self.rule == "list" and not self.values:
            raise ValueError("depth rule 'list' needs 'values' (one channel count per decoder stage)")
        return self


class DecoderConfig(StrictModel):
    stages: list[int] | None = None
    """Encoder nodes (positions in the encoder node list, 0-based) that get an aligned decoder stage
    with the same resolution. ``None``: one stage per encoder node."""
    depth: DepthConfig = Field(default_factory=DepthConfig)
    stage_op: str = "relu6_conv_bn_relu6"
    """Stage op registry name: ``relu6_conv_bn_relu6`` (the paper's D_l) or ``bn`` (SparseMask)."""
    stage_kernel: int = Field(default=3, ge=1)
    """Kernel side of the decoder stages' convolutions: odd (1, 3, 5, ...)."""
    fusion: str = "weighted_sum"
    """Fusion registry name: ``weighted_sum`` (Eq. 1) or ``concat``."""
    output: str | None = None
    """Decoder stage that feeds the head; default: the stage computed last (the finest)."""

    _stage_kernel = field_validator("stage_kernel")(classmethod(lambda cls, k: _odd_kernel(k)))


class EdgeConfig(StrictModel):
    rule: str = "dense"
    """Edge-rule registry name: ``dense`` (the paper) or ``sparsemask``."""
    op: str = "resize_conv"
    """Edge-op registry name."""
    resize: str = "paper"
    """Resize-policy registry name: ``paper`` (down-sample then conv for larger inputs, conv then
    up-sample otherwise), ``conv_first`` or ``resize_first``."""
    kernel: int = Field(default=3, ge=1)
    """Kernel side of the edge convolutions: odd (1, 3, 5, ...)."""
    norm: bool = True
    """Per-edge BatchNorm in the supernet (Eq. 1); the child drops it (Eq. 4)."""
    norm_before_resize: bool = False
    """BN before the up-sampling (SparseMask) instead of after it (the paper's Eq. 1)."""
    preact: Literal["relu6", "relu"] | None = None
    """Activation applied to the input of each edge (SparseMask: relu6)."""
    align_corners: bool = False

    _kernel = field_validator("kernel")(classmethod(lambda cls, k: _odd_kernel(k)))


class ConnectionConfig(StrictModel):
    param: str = "clamp"
    """Weight parameterisation registry name: ``clamp``, ``clamp_noise`` or ``sigmoid``."""
    init: float = Field(default=0.5, ge=0.0, le=1.0)
    """Initial connection weight w (0.5 in the paper; SparseMask's raw 1 is w = 0.5 too)."""
    noise: float = Field(default=0.1, ge=0.0)
    """Std of the noise added to the raw value by ``clamp_noise``."""
    eval_noise: bool = False
    """``clamp_noise`` only: keep the noise in eval mode, as SparseMask's code does."""


class HeadConfig(StrictModel):
    name: str
    """Head registry name (heads come from tasks, e.g. ``regression``, ``segmentation``)."""
    params: dict[str, Any] = Field(default_factory=dict)


class InputConfig(StrictModel):
    name: str = "identity"
    """Input-op registry name (``sparseconn.inputs.INPUT_OPS``): ``identity``, ``standardise``, or a
    task's own (the phase task's ``hologram`` and ``sideband``)."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments of the input op."""


class SpaceConfig(StrictModel):
    """Everything needed to build a supernet (and, with an architecture, its child)."""

    in_channels: int = Field(default=1, ge=1)
    """Channels of the raw input (what ``infer`` reads); the input op may change the encoder's count."""
    input: InputConfig = Field(default_factory=InputConfig)
    """The fixed first layer of the network (normalisation, demodulation), part of every export."""
    index_base: int = Field(default=1, ge=0)
    """Number of the first node of each kind: 1 gives E1.., D1.. as in the paper; 0 as in SparseMask."""
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    ground: list[GroundConfig] = Field(default_factory=lambda: [GroundConfig()])
    decoder: DecoderConfig = Field(default_factory=DecoderConfig)
    edges: EdgeConfig = Field(default_factory=EdgeConfig)
    connections: ConnectionConfig = Field(default_factory=ConnectionConfig)
    head: HeadConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, data: Any) -> Any:
        """``plugins`` and ``checkpointing`` sat here before sparseconn 0.2: name their new place."""
        if isinstance(data, dict):
            for key in ("plugins", "checkpointing"):
                if key in data:
                    raise ValueError(f"{key} is a run-level setting since sparseconn 0.2: write it at the top of "
                                     f"the run config (and import plug-in modules yourself when building "
                                     f"from Python), not in space")
        return data

    @model_validator(mode="after")
    def _unique_ground_names(self) -> SpaceConfig:
        names = [g.name for g in self.ground]
        if len(set(names)) != len(names):
            raise ValueError(f"ground node names must be unique, got {names}")
        return self


UNKNOWN_KEY_ERRORS = ("extra_forbidden", "unexpected_keyword_argument")
"""Pydantic's error types for a key the schema does not have: a model's, a (pydantic) dataclass's."""


def format_validation_error(exc: ValidationError, source: str, model: type[BaseModel] | None = None,
                            prefix: str = "") -> str:
    """One line naming the first bad key path; unknown keys get the closest valid key at that place."""
    err = exc.errors()[0]
    loc = ".".join([prefix] * bool(prefix) + [str(p) for p in err["loc"]]) or "(root)"
    msg = err["msg"]
    if err["type"] in UNKNOWN_KEY_ERRORS:
        key = str(err["loc"][-1])
        valid = _fields_at(model, err["loc"][:-1]) if model is not None else []
        close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
        msg = f"unknown key {key!r}"
        if close:
            msg += f" (did you mean {close[0]!r}?)"
        elif valid:
            msg += f" (valid keys: {', '.join(valid)})"
    elif err["type"] == "value_error":  # our validators' own messages, which name the bad value
        msg = msg.removeprefix("Value error, ")
        if not isinstance(err.get("input"), dict):  # (a section's validator gets the whole section)
            msg = f"{msg} (got {err['input']!r})"
    elif "input" in err and err["type"] != "missing":
        msg = f"{msg} (got {err['input']!r})"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{source}: {loc}: {msg}{more}"


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the (nested) model or dataclass found by following ``loc`` from ``model``."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue  # list index: the item type was already unwrapped
        annotation = _fields_of(current).get(str(part))
        current = _schema_in(annotation) if annotation is not None else None
        if current is None:
            return []
    return list(_fields_of(current))


def _fields_of(cls: Any) -> dict[str, Any]:
    """``{field name: annotation}`` of a pydantic model or a (pydantic or plain) dataclass; ``{}`` otherwise."""
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        return {name: f.annotation for name, f in cls.model_fields.items()}
    if isinstance(cls, type) and dataclasses.is_dataclass(cls):
        pydantic_fields = getattr(cls, "__pydantic_fields__", None)
        if pydantic_fields is not None:
            return {name: f.annotation for name, f in pydantic_fields.items()}
        hints = get_type_hints(cls)
        return {f.name: hints.get(f.name) for f in dataclasses.fields(cls)}
    return {}


def _schema_in(annotation: Any) -> type | None:
    """The model or dataclass inside a field's annotation (``X``, ``X | None``, ``list[X]``, ...)."""
    if isinstance(annotation, type) and _fields_of(annotation):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _schema_in(arg)
        if found is not None:
            return found
    return None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """``yaml.safe_load`` a mapping, with one-line errors naming the file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}:{where} is not valid YAML: {getattr(exc, 'problem', exc)}") from None
    except UnicodeDecodeError:  # a checkpoint or a picture given where a config goes
        raise ConfigError(f"{p} is not a YAML config: it holds binary data, not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{p} cannot be read: {exc.strerror or exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of config keys, got {type(data).__name__}")
    return data


def validate(model: type[BaseModel], data: Any, source: str, prefix: str = "") -> Any:
    """``model.model_validate(data)`` with a one-line :class:`ConfigError` naming key path and source."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, model, prefix)) from None


def load_space_config(path: str | Path) -> SpaceConfig:
    """Read the ``space:`` section of a run config (or a bare space file), after importing the config's
    plug-in modules (its ``plugins``; in files written before sparseconn 0.2, ``space.plugins``) so that
    what they register can be built."""
    data = read_yaml(path)
    section = data.get("space", data)
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: space: expected a mapping, got {type(section).__name__}")
    section = dict(section)
    plugins = section.pop("plugins", [])
    section.pop("checkpointing", None)
    if "space" in data:
        plugins = [*data.get("plugins", []), *plugins]
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise ConfigError(f"{path}: plugins: expected a list of module names, got {plugins!r}")
    import_modules(plugins)
    return validate(SpaceConfig, section, str(path), "space" if "space" in data else "")
