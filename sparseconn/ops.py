"""Edge ops, stage ops and fusions: their contracts, their registries and the built-in ones.

Shapes: an edge maps a source feature (B, C_src, h_src, w_src) to the destination stage's
(B, C_dst, h_dst, w_dst); a fusion maps a list of those to (B, C_dst, h_dst, w_dst); a stage op
keeps the shape.

The contracts (a config names the registered piece; :class:`~sparseconn.network.GraphNet` builds it)::

    @register_edge_op("my_edge")
    class MyEdge(EdgeOp):                       # built as MyEdge(spec: EdgeOpSpec), once per connection
        def forward(self, x, size): ...          # (B, spec.in_channels, h, w) -> (B, spec.out_channels, *size)
        def fold_from(self, other, weight): ...  # optional, see EdgeOp
        def fold_norm_(self) -> bool: ...        # optional, see EdgeOp

    @register_fusion("my_fusion")
    class MyFusion(Fusion):                     # built as MyFusion(n_inputs, channels), once per stage
        def fuse(self, xs): ...                  # n_inputs x (B, C, h, w) -> (B, C, h, w)
        def inherit(self, other, kept): ...      # needed when the fusion has parameters

    @register_stage_op("my_stage")
    def my_stage(channels: int, kernel: int = 3) -> nn.Module: ...   # keeps (B, channels, h, w)

Registering something else fails at once with one line naming it and what it lacks
(:class:`~sparseconn.contracts.PluginError`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from sparseconn.config import EdgeConfig
from sparseconn.contracts import (
    CheckedRegistry,
    PluginError,
    check_method,
    check_signature,
    check_subclass,
    overrides,
)
from sparseconn.errors import ArchitectureError, SparseconnError
from sparseconn.registry import Registry, make_register

# --- resize policies: where the conv sits relative to the resize -----------------------------------

ResizePolicy = Callable[[int | None, int | None], str]
RESIZE_POLICIES: Registry[ResizePolicy] = Registry("resize policy")
register_resize_policy = make_register(RESIZE_POLICIES)


@register_resize_policy("paper")
def paper_policy(src_stride: int | None, dst_stride: int | None) -> str:
    """Fig. 2: a larger input is down-sampled then convolved (cheap conv at the small size);
    a smaller or equal one (ground nodes have no stride: always smaller) is convolved then up-sampled."""
    if src_stride is not None and dst_stride is not None and src_stride < dst_stride:
        return "resize_first"
    return "conv_first"


@register_resize_policy("conv_first")
def conv_first_policy(src_stride: int | None, dst_stride: int | None) -> str:
    """Every connection convolves at its source's resolution, then resizes to the destination's."""
    return "conv_first"


@register_resize_policy("resize_first")
def resize_first_policy(src_stride: int | None, dst_stride: int | None) -> str:
    """Every connection resizes to the destination's resolution first, then convolves there."""
    return "resize_first"


def resize(x: torch.Tensor, size: Sequence[int], align_corners: bool) -> torch.Tensor:
    """Bilinear resize of (B, C, h, w) to (B, C, *size); a no-op when the size already matches."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=align_corners)


_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"relu6": F.relu6, "relu": F.relu}

# --- edge ops -------------------------------------------------------------------------------------

EDGE_ORDERS = ("conv_first", "resize_first")


def pool_weights(n: int, out: int, like: torch.Tensor) -> torch.Tensor:
    """(out, n): row i averages the bins [floor(i n / out), ceil((i + 1) n / out)) of adaptive average pooling."""
    i = torch.arange(out, device=like.device)
    start = torch.div(i * n, out, rounding_mode="floor")
    end = torch.div((i + 1) * n + out - 1, out, rounding_mode="floor")
    j = torch.arange(n, device=like.device)
    inside = (j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])
    return inside.to(like.dtype) / (end - start)[:, None].to(like.dtype)


def pool_by_product(x: torch.Tensor, size: int) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, size)`` of a channels-last (B, C, H, W) as one matrix product: the
    (size², H·W) bin-averaging matrix times the (H·W, C) pixels of each image. Channels-last out."""
    b, c, h, w = x.shape
    pool = pool_weights(h, size, x)[:, None, :, None] * pool_weights(w, size, x)[None, :, None, :]
    pixels = x.permute(0, 2, 3, 1).reshape(b, h * w, c)  # a view of a channels-last tensor
    return torch.matmul(pool.reshape(size * size, h * w), pixels).reshape(b, size, size, c).permute(0, 3, 1, 2)


def ground_pool(x: torch.Tensor, size: int) -> torch.Tensor:
    """Adaptive average pooling of a feature (B, C, H, W) to (B, C, size, size), the ground node's input.

    A channels-last feature on CUDA is pooled by :func:`pool_by_product`: PyTorch's channels-last kernel
    took 0.28-0.30 ms for 1280x32x32 -> 3x3 in bf16 on an H200 (a sixth of the demo child's compiled
    frame), and inductor kept that kernel even after an NCHW copy (which, run eagerly, took 30 us with the
    NCHW kernel)."""
    if x.is_cuda and x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return pool_by_product(x, size)
    return F.adaptive_avg_pool2d(x, size)


@dataclass(frozen=True)
class EdgeOpSpec:
    """Everything an edge op is built from: one connection and the space's ``edges:`` section.

    Every edge op is built as ``Op(spec)``; it reads what it needs and may ignore the rest.
    """

    in_channels: int
    """Channels of the source node's feature."""
    out_channels: int
    """Channels of the destination stage."""
    order: str
    """``conv_first`` or ``resize_first``: what the space's resize policy chose for this connection."""
    config: EdgeConfig = field(default_factory=EdgeConfig)
    """The space's ``edges:`` section (``kernel``, ``preact``, ``align_corners``, ...)."""
    norm: bool = False
    """Give the edge its own normalisation: True in a supernet with ``edges.norm``; False in a child (Eq. 4)."""
    bias: bool = False
    """The edge will receive folded weights (a child that inherits a supernet's): its last layer needs a bias."""
    key: str = ""
    """The connection's name, e.g. ``"E3->D1"``."""

    def __post_init__(self) -> None:
        for what in ("in_channels", "out_channels"):
            value = getattr(self, what)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SparseconnError(f"edge {self.key or '(unnamed)'}: {what} must be an integer >= 1, "
                                      f"got {value!r}")
        if self.order not in EDGE_ORDERS:
            raise SparseconnError(f"edge {self.key or '(unnamed)'}: order must be 'conv_first' or "
                                  f"'resize_first', got {self.order!r}")


class EdgeOp(nn.Module):
    """Contract for edge ops: one connection, from its source feature to its destination stage.

    - ``__init__(spec)``: built from one :class:`EdgeOpSpec`; call ``super().__init__(spec)``, which
      keeps ``spec``, ``in_channels``, ``out_channels`` and ``order``.
    - ``forward(x, size)``: ``(B, in_channels, h_src, w_src)`` -> ``(B, out_channels, *size)``.
    - ``fold_from(other, weight)`` (optional): make this child edge compute ``weight * other(x)`` in eval
      mode, ``other`` being the supernet's edge of the same connection (``train --inherit``). The
      default copies ``other``'s weights and scales :attr:`output_layer` by ``weight``: right for an op
      without a per-edge norm that names its output layer; otherwise it raises, naming the op.
    - ``fold_norm_()`` (optional): fold the op's own normalisation into a conv for the fast inference
      path (eval mode); True if it folded something. The default folds nothing and returns False
      (exact, only slower); BN right after a conv inside an ``nn.Sequential`` is folded anyway.
    """

    output_layer: ClassVar[str | None] = None
    """Dotted name of the submodule (a conv) whose output reaches the edge's output through linear,
    weight-free steps only (a resize, nothing else): the default :meth:`fold_from` scales it."""

    def __init__(self, spec: EdgeOpSpec) -> None:
        super().__init__()
        if not isinstance(spec, EdgeOpSpec):
            raise PluginError(f"{EDGE_OPS.describe(self)} is built from one EdgeOpSpec, got {type(spec).__name__}")
        self.spec = spec
        self.in_channels = spec.in_channels
        self.out_channels = spec.out_channels
        self.order = spec.order

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        raise NotImplementedError  # abstract: registration checks that every edge op defines it

    @torch.no_grad()
    def fold_from(self, other: EdgeOp, weight: float) -> None:
        """Copy ``other``'s weights and scale :attr:`output_layer` by ``weight`` (see the class docstring)."""
        me = EDGE_OPS.describe(self)
        if type(other) is not type(self):
            raise ArchitectureError(f"{me} cannot inherit the weights of a {type(other).__qualname__} edge")
        out = self.output_layer
        if out is None:
            raise ArchitectureError(f"{me} cannot fold a connection weight into its weights: set output_layer "
                                    "to its last conv, or implement fold_from(other, weight)")
        mine, theirs = self.state_dict(), other.state_dict()
        extra = [k for k in theirs if k not in mine]
        if extra:
            raise ArchitectureError(f"{me}: the supernet edge has {extra[0]!r}, which the child edge lacks (a "
                                    "per-edge norm?): implement fold_from(other, weight) to fold it")
        missing = [k for k in mine if k not in theirs and k != f"{out}.bias"]
        if missing:
            raise ArchitectureError(f"{me}: the child edge has {missing[0]!r}, which the supernet edge lacks: "
                                    "implement fold_from(other, weight)")
        try:
            layer = self.get_submodule(out)
        except AttributeError:
            raise ArchitectureError(f"{me}: output_layer {out!r} is not one of its submodules") from None
        if not isinstance(getattr(layer, "weight", None), torch.Tensor):
            raise ArchitectureError(f"{me}: output_layer {out!r} is a {type(layer).__name__} without a weight; "
                                    "expected a conv")
        if f"{out}.bias" not in theirs and getattr(layer, "bias", None) is not None:
            layer.bias.zero_()
        try:
            self.load_state_dict(theirs, strict=False)
        except RuntimeError as exc:  # shape mismatches: torch lists them over several lines
            raise ArchitectureError(f"{me}: the supernet edge's weights do not fit the child edge: "
                                    f"{str(exc).splitlines()[-1].strip()}") from None
        layer.weight.mul_(weight)
        if getattr(layer, "bias", None) is not None:
            layer.bias.mul_(weight)

    def fold_norm_(self) -> bool:
        """Fold this edge's own normalisation into a conv (eval mode); False when nothing was folded."""
        return False


def _check_edge_op(name: str, obj: Any) -> None:
    check_subclass("edge op", name, obj, EdgeOp, "Op(spec: EdgeOpSpec)")
    check_signature("edge op", name, obj, (EdgeOpSpec(1, 1, "conv_first"),), {}, f"{obj.__qualname__}(spec)")
    check_method("edge op", name, obj, EdgeOp, "forward", "forward(x, size)")
    if obj.output_layer is not None and not isinstance(obj.output_layer, str):
        raise PluginError(f"edge op {name!r}: output_layer must be a submodule name or None, "
                          f"got {obj.output_layer!r}")


EDGE_OPS: CheckedRegistry[type[EdgeOp]] = CheckedRegistry("edge op", _check_edge_op)
register_edge_op = make_register(EDGE_OPS)


def build_edge_op(name: str, spec: EdgeOpSpec) -> EdgeOp:
    """The edge op registered as ``name``, for one connection."""
    op = EDGE_OPS.get(name)(spec)
    if getattr(op, "spec", None) is not spec:
        raise PluginError(f"{EDGE_OPS.describe(op)} must call super().__init__(spec) in its __init__")
    return op


def fold_conv_norm(
    conv: nn.Conv2d, bn: nn.BatchNorm2d | None, weight: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of one conv equal to ``weight * bn(conv(.))`` in eval mode (``bn`` may be None)."""
    w, b = conv.weight, conv.bias
    scale = torch.ones(w.shape[0], device=w.device, dtype=w.dtype)
    shift = torch.zeros_like(scale) if b is None else b.clone()
    if bn is not None:
        inv = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        shift = (shift - bn.running_mean) * inv + bn.bias
        scale = inv
    return w * (weight * scale).view(-1, 1, 1, 1), weight * shift


@torch.no_grad()
def folded_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d | None, weight: float = 1.0) -> nn.Conv2d:
    """A new conv with bias equal to ``weight * bn(conv(.))`` in eval mode (stride, groups, ... kept)."""
    w, b = fold_conv_norm(conv, bn, weight)
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                    padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True,
                    padding_mode=conv.padding_mode, device=w.device, dtype=w.dtype)
    out.weight.copy_(w)
    out.bias.copy_(b)
    return out


def _legacy_spec(in_channels: int, out_channels: int | None, *, order: str | None = None, kernel: int = 3,
                 norm: bool = True, norm_before_resize: bool = False, preact: str | None = None,
                 align_corners: bool = False, bias: bool = False) -> EdgeOpSpec:
    """The :class:`EdgeOpSpec` of ``ResizeConv``'s keyword form (before edge ops took one spec)."""
    if out_channels is None or order is None:
        raise SparseconnError(f"ResizeConv takes one EdgeOpSpec, or in_channels, out_channels and order=; got "
                              f"in_channels={in_channels!r}, out_channels={out_channels!r}, order={order!r}")
    cfg = EdgeConfig(kernel=kernel, norm=norm, norm_before_resize=norm_before_resize, preact=preact,
                     align_corners=align_corners)
    return EdgeOpSpec(in_channels, out_channels, order, cfg, norm=norm, bias=bias)


@register_edge_op("resize_conv")
class ResizeConv(EdgeOp):
    """One connection: [preact] -> conv k x k -> [BN], with a bilinear resize before or after the conv.

    Eq. (1) of the paper: ``bn(conv(f_down(m)))`` for larger inputs, ``bn(f_up(conv(m)))`` otherwise.
    The child (Eq. 4) has no BN (``spec.norm`` False); when it inherits supernet weights the BN and the
    connection weight are folded into the conv, which then carries a bias (see :meth:`fold_from`).

    Built from an :class:`EdgeOpSpec`; the older form ``ResizeConv(in_channels, out_channels, order=...,
    kernel=3, norm=True, norm_before_resize=False, preact=None, align_corners=False, bias=False)`` still works.
    """

    def __init__(self, spec: EdgeOpSpec | int, out_channels: int | None = None, **legacy: Any) -> None:
        if not isinstance(spec, EdgeOpSpec):
            spec = _legacy_spec(spec, out_channels, **legacy)
        elif out_channels is not None or legacy:
            raise SparseconnError("ResizeConv takes one EdgeOpSpec and nothing else when given one")
        super().__init__(spec)
        cfg = spec.config
        self.preact = cfg.preact
        self.align_corners = cfg.align_corners
        self.norm_before_resize = cfg.norm_before_resize
        k = cfg.kernel
        self.conv = nn.Conv2d(spec.in_channels, spec.out_channels, k, padding=k // 2, bias=spec.bias)
        self.bn = nn.BatchNorm2d(spec.out_channels) if spec.norm else None

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        if self.preact is not None:
            x = _ACTIVATIONS[self.preact](x)
        if self.order == "resize_first":
            x = self.conv(resize(x, size, self.align_corners))  # (B, C_dst, *size)
            return self.bn(x) if self.bn is not None else x
        x = self.conv(x)  # (B, C_dst, h_src, w_src)
        if self.bn is not None and self.norm_before_resize:
            x = self.bn(x)
        x = resize(x, size, self.align_corners)  # (B, C_dst, *size)
        if self.bn is not None and not self.norm_before_resize:
            x = self.bn(x)
        return x

    @torch.no_grad()
    def fold_norm_(self) -> bool:
        """Fold this edge's own BN into its conv (eval mode; exact, see :meth:`fold_from`); False if
        there is none. The fast inference path calls it."""
        if self.bn is None:
            return False
        self.conv = folded_conv(self.conv, self.bn)
        self.bn = None
        return True

    @torch.no_grad()
    def fold_from(self, other: EdgeOp, weight: float) -> None:
        """Copy ``weight * bn(conv(.))`` of a supernet edge into this plain conv (with bias).

        Exact in eval mode: BN is a per-channel affine map, and bilinear resizing commutes with it
        because its interpolation weights sum to one.
        """
        if not isinstance(other, ResizeConv):
            raise ArchitectureError(f"{EDGE_OPS.describe(self)} cannot inherit the weights of a "
                                    f"{type(other).__qualname__} edge")
        w, shift = fold_conv_norm(other.conv, other.bn, weight)
        self.conv.weight.copy_(w)
        if self.conv.bias is None:
            if torch.count_nonzero(shift).item() > 0:
                raise ArchitectureError(f"edge {self.spec.key or '(unnamed)'}: folding a normalised edge needs "
                                        "a conv with bias (build the child with EdgeOpSpec.bias)")
        else:
            self.conv.bias.copy_(shift)


# --- stage ops ------------------------------------------------------------------------------------


class StageOp(Protocol):
    """Contract for stage ops: a factory (a function or a class) called once per decoder stage.

    ``op(channels, kernel=k)`` returns an ``nn.Module`` that maps the fused ``(B, channels, h, w)`` to the
    same shape; ``k`` is the space's ``decoder.stage_kernel``. A child that inherits supernet weights
    loads each stage's state dict as it is, so the module must not depend on the stage's inputs.
    """

    def __call__(self, channels: int, *, kernel: int) -> nn.Module: ...


def _check_stage_op(name: str, obj: Any) -> None:
    if not callable(obj):
        raise PluginError(f"stage op {name!r}: {type(obj).__name__} {obj!r} is not callable (stage ops are "
                          "factories op(channels, kernel=k) -> nn.Module)")
    check_signature("stage op", name, obj, (8,), {"kernel": 3}, f"{getattr(obj, '__qualname__', 'op')}"
                    "(channels, kernel=k)")


STAGE_OPS: CheckedRegistry[StageOp] = CheckedRegistry("stage op", _check_stage_op)
register_stage_op = make_register(STAGE_OPS)


def build_stage_op(name: str, channels: int, kernel: int) -> nn.Module:
    """The stage op registered as ``name``, for a stage of ``channels`` channels."""
    fn = STAGE_OPS.get(name)
    module = fn(channels, kernel=kernel)
    if not isinstance(module, nn.Module):
        raise PluginError(f"{STAGE_OPS.describe(fn)} returned a {type(module).__name__}, expected an nn.Module")
    return module


@register_stage_op("relu6_conv_bn_relu6")
def relu6_conv_bn_relu6(channels: int, kernel: int = 3) -> nn.Module:
    """The paper's D_l = ReLU6(BN(conv(ReLU6(T_l))))."""
    return nn.Sequential(
        nn.ReLU6(),
        nn.Conv2d(channels, channels, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU6(),
    )


@register_stage_op("bn")
def bn_stage(channels: int, kernel: int = 3) -> nn.Module:
    """SparseMask: one BN on the fused sum, no activation."""
    return nn.BatchNorm2d(channels)


@register_stage_op("identity")
def identity_stage(channels: int, kernel: int = 3) -> nn.Module:
    """No stage op: the fused sum is the stage's output."""
    return nn.Identity()


# --- fusions --------------------------------------------------------------------------------------


class Fusion(nn.Module):
    """Contract for fusions: a decoder stage's inputs (each already mapped by its edge) into one tensor.

    - ``__init__(n_inputs, channels)``: call ``super().__init__(n_inputs, channels)``, which keeps both
      (as ``n_inputs`` and ``out_channels``).
    - ``fuse(xs)``: ``n_inputs`` tensors ``(B, channels, h, w)`` -> ``(B, channels, h, w)``.
    - ``forward(xs, w=None)`` (given): in the supernet, scales input ``i`` by its connection weight
      ``w[i]``, then fuses. A child passes ``w=None``: its weights are folded into its edges, which is
      exact because the weights only scale the inputs. A child fuses its kept inputs only, so it equals
      the supernet with the pruned weights at zero when a zero input adds nothing to ``fuse`` (a sum
      does; a mean, which would divide by fewer inputs, does not).
    - ``inherit(other, kept)`` (needed when the fusion has parameters or buffers): copy the part of the
      supernet's fusion ``other`` that serves the kept inputs, ``kept`` being their positions among
      ``other``'s inputs. The default copies nothing, which is right only for parameter-free fusions;
      for any other it raises, naming the fusion.
    """

    def __init__(self, n_inputs: int, channels: int) -> None:
        super().__init__()
        self.n_inputs = n_inputs
        self.out_channels = channels

    def fuse(self, xs: list[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError  # abstract: registration checks that every fusion defines it

    def forward(self, xs: list[torch.Tensor], w: torch.Tensor | None = None) -> torch.Tensor:
        if w is not None:
            xs = [x * w[i] for i, x in enumerate(xs)]
        return self.fuse(xs)

    def inherit(self, other: Fusion, kept: list[int]) -> None:
        """Nothing to copy for a parameter-free fusion; raises for one with state (see the class docstring)."""
        state = list(self.state_dict())
        if state:
            raise ArchitectureError(f"{FUSIONS.describe(self)} has parameters ({state[0]!r}) but does not "
                                    "implement inherit(other, kept), so a child cannot inherit its weights")


def _check_fusion(name: str, obj: Any) -> None:
    check_subclass("fusion", name, obj, Fusion, "Fusion(n_inputs, channels)")
    check_signature("fusion", name, obj, (2, 8), {}, f"{obj.__qualname__}(n_inputs, channels)")
    if not overrides(obj, Fusion, "forward"):  # a fusion that overrides forward may fuse there
        check_method("fusion", name, obj, Fusion, "fuse", "fuse(xs)")


FUSIONS: CheckedRegistry[type[Fusion]] = CheckedRegistry("fusion", _check_fusion)
register_fusion = make_register(FUSIONS)


def build_fusion(name: str, n_inputs: int, channels: int) -> Fusion:
    """The fusion registered as ``name``, for a stage with ``n_inputs`` inputs of ``channels`` channels."""
    fusion = FUSIONS.get(name)(n_inputs, channels)
    if getattr(fusion, "n_inputs", None) != n_inputs:
        raise PluginError(f"{FUSIONS.describe(fusion)} must call super().__init__(n_inputs, channels) in its "
                          "__init__")
    return fusion


@register_fusion("weighted_sum")
class WeightedSum(Fusion):
    """Eq. (1): T = sum_m w_m * x_m; the child (Eq. 4) sums without weights."""

    def fuse(self, xs: list[torch.Tensor]) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


@register_fusion("concat")
class Concat(Fusion):
    """Concatenate the (weighted) inputs and project back with a 1x1 conv: (B, n*C, h, w) -> (B, C, h, w)."""

    def __init__(self, n_inputs: int, channels: int) -> None:
        super().__init__(n_inputs, channels)
        self.proj = nn.Conv2d(n_inputs * channels, channels, 1, bias=False)

    def fuse(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return self.proj(torch.cat(xs, dim=1))

    @torch.no_grad()
    def inherit(self, other: Fusion, kept: list[int]) -> None:
        """Keep the projection columns of the inputs that survived pruning (exact for 0/1 weights)."""
        if not isinstance(other, Concat):
            raise ArchitectureError(f"{FUSIONS.describe(self)} cannot inherit the weights of a "
                                    f"{type(other).__qualname__} fusion")
        c = self.out_channels
        cols = torch.cat([torch.arange(i * c, (i + 1) * c) for i in kept])
        self.proj.weight.copy_(other.proj.weight[:, cols])
