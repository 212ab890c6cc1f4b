"""Fixed (not searched) models: baselines that train, evaluate, profile, infer and export like a child.

A model is a builder registered by name, ``fn(space: SpaceConfig, **params) -> nn.Module``. ``space`` is
the run's space section: a builder takes from it what a drop-in for the task needs (``in_channels``,
the ``input`` op, the ``head``) and ignores the search settings. A builder that also needs the task's
settings declares a keyword ``task`` and gets the run's :class:`~sparseconn.task.Task` (the phase task's
``classical`` model takes its phase range from it). The contract of a built model::

    stride: int                 # inputs are padded to multiples of this for any-size inference
    any_size: bool              # optional, default False; True: the model pads after its input op
                                #   itself (sparseconn.inputs.padded_input) and callers pass raw inputs
    num_connections: int | None # searched-style connections (None: not a connection graph)
    display_name: str           # optional: its name in reports (default: the registry name)
    architecture: Architecture  # optional: a GraphNet child built from one; its run folder gets
                                #   architecture.json, the drawings, and its checkpoint stores it
    traceable: bool             # optional, default True; False: its forward runs outside torch
                                #   (NumPy), so MACs are not counted and it cannot be exported

Built-ins: ``unet`` (Ronneberger et al. 2015), ``sparsemask_child`` (SparseMask's published VOC child,
docs/reference.md §2) and ``architecture`` (any ``architecture.json``). Run configs name one under ``model:``
(``sparseconn train CONFIG``) or in ``evaluate.baselines``.

Example::

    net = build_model("unet", {"width": 64}, space)   # 31.0M parameters with 1 channel in and out
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from sparseconn.architecture import Architecture
from sparseconn.config import (
    ConnectionConfig,
    DecoderConfig,
    DepthConfig,
    EdgeConfig,
    EncoderConfig,
    GroundConfig,
    SpaceConfig,
)
from sparseconn.contracts import check_params
from sparseconn.errors import ArchitectureError, ConfigError
from sparseconn.graph import edge_key
from sparseconn.heads import build_head
from sparseconn.inputs import build_input_op, crop_output, finished_output, padded_input
from sparseconn.network import GraphNet, build_child
from sparseconn.pruning import derive
from sparseconn.registry import Registry, make_register
from sparseconn.space import SearchSpace

if TYPE_CHECKING:
    from sparseconn.task import Task

ModelBuilder = Callable[..., nn.Module]
MODELS: Registry[ModelBuilder] = Registry("model")
register_model = make_register(MODELS)


def _parameters(fn: ModelBuilder) -> list[str]:
    """The keyword parameters a builder takes from a config (all but ``space`` and ``task``)."""
    sig = inspect.signature(fn)
    return [p for p in list(sig.parameters)[1:] if p != "task"
            and sig.parameters[p].kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]


def check_model_params(name: str, params: dict[str, Any]) -> None:
    """A one-line error for an unknown model name (listing the registered ones), an unknown parameter or
    a missing required one."""
    fn = MODELS.get(name)
    sig = inspect.signature(fn)
    valid = _parameters(fn)
    missing = [p for p in valid if sig.parameters[p].default is inspect.Parameter.empty and p not in params]
    if missing:
        raise ConfigError(f"model {name!r} needs parameter {missing[0]!r} (params: {{{missing[0]}: ...}})")
    check_params("model", name, fn, params, skip=1, passed=("task",))


def build_model(name: str, params: dict[str, Any], space: SpaceConfig, task: Task | None = None) -> nn.Module:
    """Build the registered model ``name`` with ``params`` for the run's ``space`` (and ``task``)."""
    check_model_params(name, params)
    fn = MODELS.get(name)
    extra = {"task": task} if "task" in inspect.signature(fn).parameters else {}
    net = fn(space, **params, **extra)
    stride = getattr(net, "stride", None)
    if not isinstance(net, nn.Module) or isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ConfigError(f"model {name!r} built {type(net).__name__} without an integer stride >= 1; a model "
                          "must be an nn.Module with `stride` and `num_connections`")
    if not hasattr(net, "num_connections"):
        raise ConfigError(f"model {name!r} built {type(net).__name__} without `num_connections` (int or None)")
    return net


def display_name(net: nn.Module, default: str) -> str:
    """How reports name a built model."""
    name = getattr(net, "display_name", None)
    return name if isinstance(name, str) and name else default


# -- graph children -------------------------------------------------------------------------------------

def graph_model(arch: Architecture, name: str) -> GraphNet:
    """The child of ``arch`` as a fixed model: it keeps its architecture (for architecture.json, the
    drawings and the checkpoint) and its report name."""
    net = build_child(arch)
    net.architecture = arch
    net.display_name = name
    return net


SPARSEMASK_CHILD: dict[str, tuple[str, ...]] = {
    "D1": ("E0", "G"),
    "D2": ("E2", "G"),
    "D3": ("E3", "G"),
    "D8": ("E0", "E1", "E2", "E3", "E8", "G", "D1", "D2", "D3"),
}
"""Inputs of each stage of SparseMask's searched VOC child (docs/reference.md §2): 15 connections."""


def sparsemask_space(space: SpaceConfig, width: float = 1.0, pretrained: str | None = None) -> SpaceConfig:
    """SparseMask's VOC search space (``tasks/segmentation.yaml``) with the run's ``in_channels``,
    ``input`` op and ``head`` in place of its 3-channel input and segmentation head.

    MobileNetV2 features named deepest first (E0 = the 1280-channel last conv ... E8 = the first conv),
    a global ground feature G, 9 decoder stages of 64 channels with a BN stage op, 1x1 edges with
    ReLU6 pre-activation and BN before the (align-corners) up-sampling.
    """
    encoder = {"width": width} if pretrained is None else {"width": width, "pretrained": pretrained}
    return SpaceConfig(
        in_channels=space.in_channels, input=space.input.model_copy(deep=True), index_base=0,
        encoder=EncoderConfig(name="mobilenet_v2", params=encoder, features=[8, 7, 6, 5, 4, 3, 2, 1, 0]),
        ground=[GroundConfig(name="G", source=8, size=1)],
        decoder=DecoderConfig(depth=DepthConfig(rule="constant", value=64), stage_op="bn", fusion="weighted_sum",
                              output="D8"),
        edges=EdgeConfig(rule="sparsemask", op="resize_conv", resize="conv_first", kernel=1, norm=True,
                         norm_before_resize=True, preact="relu6", align_corners=True),
        connections=ConnectionConfig(param="clamp_noise", init=0.5, noise=0.1),
        head=None if space.head is None else space.head.model_copy(deep=True),
    )


def sparsemask_architecture(space: SpaceConfig, width: float = 1.0, pretrained: str | None = None) -> Architecture:
    """SparseMask's published child as an :class:`Architecture` of :func:`sparsemask_space`: its 15
    connections at weight 1, every other candidate at 0, pruned at the usual threshold."""
    cfg = sparsemask_space(space, width, pretrained)
    search_space = SearchSpace(cfg)
    candidates = search_space.candidates
    kept = {edge_key(src, dst) for dst, srcs in SPARSEMASK_CHILD.items() for src in srcs}
    missing = sorted(kept - set(candidates))
    if missing:  # the space above and the published child disagree: a bug here, not bad input
        raise ArchitectureError(f"SparseMask connection {missing[0]} is not a candidate of its search space")
    return derive(search_space.graph, cfg, {k: float(k in kept) for k in candidates}, threshold=1e-3)


@register_model("sparsemask_child")
def sparsemask_child(space: SpaceConfig, width: float = 1.0, pretrained: str | None = None) -> GraphNet:
    """SparseMask's searched VOC child (15 connections) with the run's input op and head.

    ``width``: MobileNetV2 width multiplier (1.0 in SparseMask); ``pretrained``: a local ImageNet
    MobileNetV2 state dict for the encoder (SparseMask starts from one; without it, random weights).
    """
    return graph_model(sparsemask_architecture(space, width, pretrained), "SparseMask")


@register_model("architecture")
def architecture(space: SpaceConfig, path: str) -> GraphNet:
    """The child of any ``architecture.json`` (e.g. another search's, retrained here), as saved.

    Its input channels and head must be the run's: the model replaces the run's network.
    """
    arch = Architecture.load(path)
    if arch.space.in_channels != space.in_channels:
        raise ConfigError(f"architecture {path} takes {arch.space.in_channels} input channels, the run's "
                          f"space.in_channels is {space.in_channels}")
    if arch.space.head != space.head:
        raise ConfigError(f"architecture {path} has head {_head(arch.space)}, the run's space.head is {_head(space)}")
    return graph_model(arch, f"child ({Path(path).resolve().parent.name})")


def _head(space: SpaceConfig) -> str:
    return "none" if space.head is None else repr(space.head.model_dump())


# -- U-Net ----------------------------------------------------------------------------------------------

class DoubleConv(nn.Sequential):
    """(3x3 conv -> BN -> ReLU) x 2 with 'same' padding: one U-Net level."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        )


UNET_WIDTH_TABLE_I = 70.5
"""Width of the U-Net with Table I's 37.7M parameters (1 channel in and out): levels of 71, 141, 282,
564 and 1128 channels. No whole width gives it: 70 has 37.1M, 71 has 38.2M (width 64: 31.0M)."""


class UNet(nn.Module):
    """The classic U-Net (Ronneberger et al. 2015) with BatchNorm and 'same' padding.

    Four down levels (double 3x3 conv, then 2x2 max pool), a bottom double conv, four up levels
    (2x2 transposed conv halving the channels, concatenation with the skip, double conv) and the run's
    head on the last level. Level l (0 = full size) has ``round(width * 2**l)`` channels; the output has
    the input's size (a size that is not a multiple of 16 is padded after each up-sampling).

    Shape: ``(B, in_channels, H, W)`` -> the head's output at ``(H, W)`` (the phase task: (B, 1, H, W)).
    """

    display_name = "U-Net"
    stride = 16
    any_size = True  # pads after its input op (sparseconn.inputs.padded_input)
    num_connections = None
    levels = 4

    def __init__(self, space: SpaceConfig, width: float = 64, out_channels: int = 1) -> None:
        super().__init__()
        if isinstance(width, bool) or not isinstance(width, (int, float)) or not 1 <= width <= 4096:
            raise ConfigError(f"model 'unet' width must be a number in [1, 4096], got {width!r}")
        ch = [int(width * 2**level + 0.5) for level in range(self.levels + 1)]  # (71, 141, 282, 564, 1128)
        self.channels = ch
        self.input_op = build_input_op(space.input.name, space.in_channels, space.input.params)
        c = self.input_op.out_channels
        self.down = nn.ModuleList()
        for level in range(self.levels):
            self.down.append(DoubleConv(c, ch[level]))
            c = ch[level]
        self.bottom = DoubleConv(ch[-2], ch[-1])
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for level in reversed(range(self.levels)):
            self.up.append(nn.ConvTranspose2d(ch[level + 1], ch[level], 2, stride=2))
            self.merge.append(DoubleConv(2 * ch[level], ch[level]))
        if space.head is not None:
            self.head = build_head(space.head.name, ch[0], space.head.params)
        else:  # no head configured: the original 1x1 output conv
            self.head = nn.Conv2d(ch[0], out_channels, 1)
        self.has_run_head = space.head is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z, size = padded_input(self.input_op, x, self.stride)  # (B, C, H', W'), multiples of the stride
        y = z
        skips = []
        for block in self.down:
            y = block(y)
            skips.append(y)  # (B, ch[l], H / 2^l, W / 2^l)
            y = F.max_pool2d(y, 2)
        y = self.bottom(y)  # (B, ch[4], H / 16, W / 16)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips), strict=True):
            y = up(y)  # (B, ch[l], 2h, 2w): one row/column short of the skip where its side was odd
            dh, dw = skip.shape[-2] - y.shape[-2], skip.shape[-1] - y.shape[-1]
            if dh or dw:
                y = F.pad(y, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))
            y = merge(torch.cat([skip, y], dim=1))  # (B, 2 ch[l] -> ch[l], ...)
        if not self.has_run_head:
            return crop_output(self.head(y), size, z.shape[-2:])
        return finished_output(self.input_op, self.head(y, tuple(z.shape[-2:])), z, size, self.training)


@register_model("unet")
def unet(space: SpaceConfig, width: float = 64, out_channels: int = 1) -> UNet:
    """The classic U-Net with the run's input op and head. ``width``: channels of the first level (64 in
    Ronneberger et al.: 31.0M parameters; :data:`UNET_WIDTH_TABLE_I` = 70.5 matches Table I's 37.7M);
    ``out_channels``: output channels of the 1x1 output conv when the space has no head."""
    return UNet(space, width, out_channels)


__all__ = ["MODELS", "SPARSEMASK_CHILD", "UNET_WIDTH_TABLE_I", "UNet", "build_model", "check_model_params",
           "display_name", "graph_model", "register_model", "sparsemask_architecture", "sparsemask_space"]
