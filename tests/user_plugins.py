"""A user's own fusion and edge op, written against the plug-in contracts alone (``sparseconn.ops``).

A config loads this module with ``plugins: [tests.user_plugins]``:

- ``gate_sum``: a fusion with parameters, a learned per-input, per-channel gate in (0, 1):
  ``T = sum_i sigmoid(g_i) * (w_i * x_i)``. A child keeps the gates of its kept inputs (``inherit``).
- ``dwsep``: a depthwise-separable conv edge, depthwise k x k -> pointwise 1 x 1 -> [BN], with the
  bilinear resize before or after it as the resize policy chose. A child folds the supernet's BN and
  connection weight into its pointwise conv (``fold_from``); the fast path folds the BN of a supernet
  edge the same way (``fold_norm_``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sparseconn.ops import (
    EDGE_OPS,
    FUSIONS,
    EdgeOp,
    EdgeOpSpec,
    Fusion,
    fold_conv_norm,
    folded_conv,
    register_edge_op,
    register_fusion,
    resize,
)


class GateSum(Fusion):
    """(B, C, h, w) x n -> (B, C, h, w): a sum of the inputs, each scaled by its own channel gates."""

    def __init__(self, n_inputs: int, channels: int) -> None:
        super().__init__(n_inputs, channels)
        self.gate = nn.Parameter(torch.zeros(n_inputs, channels))  # logits: every gate starts at 0.5

    def fuse(self, xs: list[torch.Tensor]) -> torch.Tensor:
        gates = torch.sigmoid(self.gate)  # (n, C)
        out = xs[0] * gates[0].view(1, -1, 1, 1)
        for i in range(1, len(xs)):
            out = out + xs[i] * gates[i].view(1, -1, 1, 1)
        return out

    @torch.no_grad()
    def inherit(self, other: Fusion, kept: list[int]) -> None:
        assert isinstance(other, GateSum)
        self.gate.copy_(other.gate[kept])


class DepthwiseSeparable(EdgeOp):
    """(B, C_in, h, w) -> (B, C_out, *size): depthwise k x k, pointwise 1 x 1, BN in a supernet."""

    def __init__(self, spec: EdgeOpSpec) -> None:
        super().__init__(spec)
        k, c_in = spec.config.kernel, spec.in_channels
        self.align_corners = spec.config.align_corners
        self.dw = nn.Conv2d(c_in, c_in, k, padding=k // 2, groups=c_in, bias=False)
        self.pw = nn.Conv2d(c_in, spec.out_channels, 1, bias=spec.bias)
        self.bn = nn.BatchNorm2d(spec.out_channels) if spec.norm else None

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        if self.order == "resize_first":
            x = resize(x, size, self.align_corners)
        x = self.pw(self.dw(x))
        x = resize(x, size, self.align_corners)  # a no-op when it already has the size
        return self.bn(x) if self.bn is not None else x

    @torch.no_grad()
    def fold_from(self, other: EdgeOp, weight: float) -> None:
        assert isinstance(other, DepthwiseSeparable)
        self.dw.weight.copy_(other.dw.weight)
        w, b = fold_conv_norm(other.pw, other.bn, weight)
        self.pw.weight.copy_(w)
        self.pw.bias.copy_(b)

    @torch.no_grad()
    def fold_norm_(self) -> bool:
        if self.bn is None:
            return False
        self.pw, self.bn = folded_conv(self.pw, self.bn), None
        return True


if "gate_sum" not in FUSIONS:  # the module may be imported under two names (tests.user_plugins, user_plugins)
    register_fusion("gate_sum")(GateSum)
if "dwsep" not in EDGE_OPS:
    register_edge_op("dwsep")(DepthwiseSeparable)
