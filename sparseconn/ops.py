"""Edge ops, stage ops and fusions, each in a registry chosen by config.

Shapes: an edge maps a source feature (B, C_src, h_src, w_src) to the destination stage's
(B, C_dst, h_dst, w_dst); a fusion maps a list of those to (B, C_dst, h_dst, w_dst); a stage op
keeps the shape.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

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
    return "conv_first"


@register_resize_policy("resize_first")
def resize_first_policy(src_stride: int | None, dst_stride: int | None) -> str:
    return "resize_first"


def resize(x: torch.Tensor, size: Sequence[int], align_corners: bool) -> torch.Tensor:
    """Bilinear resize of (B, C, h, w) to (B, C, *size); a no-op when the size already matches."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=align_corners)


_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"relu6": F.relu6, "relu": F.relu}

# --- edge ops -------------------------------------------------------------------------------------

EDGE_OPS: Registry[type[nn.Module]] = Registry("edge op")
register_edge_op = make_register(EDGE_OPS)


@register_edge_op("resize_conv")
class ResizeConv(nn.Module):
    """One connection: [preact] -> conv k x k -> [BN], with a bilinear resize before or after the conv.

    Eq. (1) of the paper: ``bn(conv(f_down(m)))`` for larger inputs, ``bn(f_up(conv(m)))`` otherwise.
    The child (Eq. 4) has ``norm=False``; when it inherits supernet weights the BN and the
    connection weight are folded into the conv, which then carries a bias (see :meth:`fold_from`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        order: str,
        kernel: int = 3,
        norm: bool = True,
        norm_before_resize: bool = False,
        preact: str | None = None,
        align_corners: bool = False,
        bias: bool = False,
    ) -> None:
        super().__init__()
        if order not in ("conv_first", "resize_first"):
            raise ValueError(f"edge order must be 'conv_first' or 'resize_first', got {order!r}")
        self.order = order
        self.preact = preact
        self.align_corners = align_corners
        self.norm_before_resize = norm_before_resize
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=bias)
        self.bn = nn.BatchNorm2d(out_channels) if norm else None

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
        weight, bias = _folded(self.conv, self.bn, 1.0)
        conv = self.conv
        self.conv = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, padding=conv.padding,
                              bias=True, device=weight.device, dtype=weight.dtype)
        self.conv.weight.copy_(weight)
        self.conv.bias.copy_(bias)
        self.bn = None
        return True

    @torch.no_grad()
    def fold_from(self, other: ResizeConv, weight: float) -> None:
        """Copy ``weight * bn(conv(.))`` of a supernet edge into this plain conv (with bias).

        Exact in eval mode: BN is a per-channel affine map, and bilinear resizing commutes with it
        because its interpolation weights sum to one.
        """
        w, shift = _folded(other.conv, other.bn, weight)
        self.conv.weight.copy_(w)
        if self.conv.bias is None:
            if torch.count_nonzero(shift).item() > 0:
                raise ValueError("folding a normalised edge needs a conv with bias")
        else:
            self.conv.bias.copy_(shift)


def _folded(conv: nn.Conv2d, bn: nn.BatchNorm2d | None, weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of one conv equal to ``weight * bn(conv(.))`` in eval mode."""
    w, b = conv.weight, conv.bias
    scale = torch.ones(w.shape[0], device=w.device, dtype=w.dtype)
    shift = torch.zeros_like(scale) if b is None else b.clone()
    if bn is not None:
        inv = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        shift = (shift - bn.running_mean) * inv + bn.bias
        scale = inv
    return w * (weight * scale).view(-1, 1, 1, 1), weight * shift


# --- stage ops ------------------------------------------------------------------------------------

STAGE_OPS: Registry[Callable[..., nn.Module]] = Registry("stage op")
register_stage_op = make_register(STAGE_OPS)


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
    return nn.Identity()


# --- fusions --------------------------------------------------------------------------------------

FUSIONS: Registry[type[nn.Module]] = Registry("fusion")
register_fusion = make_register(FUSIONS)


@register_fusion("weighted_sum")
class WeightedSum(nn.Module):
    """Eq. (1): T = sum_m w_m * x_m; the child (Eq. 4) sums without weights."""

    def __init__(self, n_inputs: int, channels: int) -> None:
        super().__init__()
        self.out_channels = channels

    def forward(self, xs: list[torch.Tensor], w: torch.Tensor | None = None) -> torch.Tensor:
        out = xs[0] if w is None else xs[0] * w[0]
        for i in range(1, len(xs)):
            out = out + (xs[i] if w is None else xs[i] * w[i])
        return out

    def inherit(self, other: nn.Module, kept: list[int]) -> None:
        """No parameters to copy."""


@register_fusion("concat")
class Concat(nn.Module):
    """Concatenate the (weighted) inputs and project back with a 1x1 conv: (B, n*C, h, w) -> (B, C, h, w)."""

    def __init__(self, n_inputs: int, channels: int) -> None:
        super().__init__()
        self.out_channels = channels
        self.n_inputs = n_inputs
        self.proj = nn.Conv2d(n_inputs * channels, channels, 1, bias=False)

    def forward(self, xs: list[torch.Tensor], w: torch.Tensor | None = None) -> torch.Tensor:
        if w is not None:
            xs = [x * w[i] for i, x in enumerate(xs)]
        return self.proj(torch.cat(xs, dim=1))

    @torch.no_grad()
    def inherit(self, other: Concat, kept: list[int]) -> None:
        """Keep the projection columns of the inputs that survived pruning (exact for 0/1 weights)."""
        c = self.out_channels
        cols = torch.cat([torch.arange(i * c, (i + 1) * c) for i in kept])
        self.proj.weight.copy_(other.proj.weight[:, cols])
