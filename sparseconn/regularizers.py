"""Connection regularisers: pure tensor functions plus a registry for configs.

Each registered regulariser has the signature ``fn(w, ctx, **params) -> scalar`` where ``w`` is the
(K,) vector of connection weights in the space's candidate order and ``ctx`` carries the per-weight
stage index and cost. The pure functions below are what the tests check by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from sparseconn.registry import Registry, make_register

EPS = 1e-6


def binary_entropy(w: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Eq. (3a): mean of -w log w - (1 - w) log(1 - w); pushes each weight to 0 or 1."""
    wc = w.clamp(eps, 1 - eps)  # log(0) would give inf gradients at the boundary
    return -(w * wc.log() + (1 - w) * (1 - wc).log()).mean()


def global_sparsity(w: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """Eq. (3b): sum of the weights (the paper's formula; its text says "mean": both offered)."""
    if reduction == "sum":
        return w.sum()
    if reduction == "mean":
        return w.mean()
    raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")


def stage_target(w: torch.Tensor, groups: torch.Tensor, ratio_numerator: float = 2.0,
                 max_ratio: float = 0.5, eps: float = EPS) -> torch.Tensor:
    """SparseMask's per-stage loss, summed over stages. For one stage with weights w, m = mean(w) and
    target r = min(2 / len(w), 0.5): binary entropy of w plus the cross-entropy of m against r."""
    total = w.new_zeros(())
    for g in torch.unique(groups):
        ws = w[groups == g]
        r = min(ratio_numerator / ws.numel(), max_ratio)
        m = ws.mean().clamp(eps, 1 - eps)
        total = total + binary_entropy(ws, eps) - (r * m.log() + (1 - r) * (1 - m).log())
    return total


def cost_weighted_sparsity(w: torch.Tensor, costs: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """Each weight scaled by its connection's cost (MACs) over the mean cost: with equal costs this is
    :func:`global_sparsity`, otherwise an expensive connection costs more to keep than a cheap one."""
    scale = costs / costs.mean()
    return global_sparsity(w * scale, reduction)


@dataclass
class RegContext:
    """What a regulariser may know about the weights besides their values."""

    keys: list[str]
    groups: torch.Tensor  # (K,) long: destination stage of each weight
    costs: torch.Tensor  # (K,) float: MACs of each connection at the configured input size


Regulariser = Callable[..., torch.Tensor]
REGULARISERS: Registry[Regulariser] = Registry("regulariser")
register_regulariser = make_register(REGULARISERS)


@register_regulariser("binary_entropy")
def _binary_entropy(w: torch.Tensor, ctx: RegContext, eps: float = EPS) -> torch.Tensor:
    return binary_entropy(w, eps)


@register_regulariser("global_sparsity")
def _global_sparsity(w: torch.Tensor, ctx: RegContext, reduction: str = "sum") -> torch.Tensor:
    return global_sparsity(w, reduction)


@register_regulariser("stage_target")
def _stage_target(w: torch.Tensor, ctx: RegContext, ratio_numerator: float = 2.0,
                  max_ratio: float = 0.5) -> torch.Tensor:
    return stage_target(w, ctx.groups.to(w.device), ratio_numerator, max_ratio)


@register_regulariser("cost_weighted_sparsity")
def _cost_weighted(w: torch.Tensor, ctx: RegContext, reduction: str = "sum") -> torch.Tensor:
    return cost_weighted_sparsity(w, ctx.costs.to(w.device, w.dtype), reduction)
