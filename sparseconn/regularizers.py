"""Connection regularizers: pure tensor functions plus a registry for configs (the run config's
``search.regularizers`` list names them).

Each registered regularizer has the signature ``fn(w, ctx, **params) -> scalar`` where ``w`` is the
(K,) vector of connection weights in the space's candidate order and ``ctx`` carries the per-weight
stage index and cost. The pure functions below are what the tests check by hand.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
    """What a regularizer may know about the weights besides their values."""

    keys: list[str]
    groups: torch.Tensor  # (K,) long: destination stage of each weight
    costs: torch.Tensor  # (K,) float: MACs of each connection at the configured input size


Regularizer = Callable[..., torch.Tensor]
REGULARIZERS: Registry[Regularizer] = Registry("regularizer")
register_regularizer = make_register(REGULARIZERS)


@register_regularizer("binary_entropy")
def _binary_entropy(w: torch.Tensor, ctx: RegContext, eps: float = EPS) -> torch.Tensor:
    """Eq. (3a): mean binary entropy of the weights, pushing each to 0 or 1."""
    return binary_entropy(w, eps)


@register_regularizer("global_sparsity")
def _global_sparsity(w: torch.Tensor, ctx: RegContext, reduction: str = "sum") -> torch.Tensor:
    """Eq. (3b): the sum (or mean) of all weights, one sparsity pressure on the whole network."""
    return global_sparsity(w, reduction)


@register_regularizer("stage_target")
def _stage_target(w: torch.Tensor, ctx: RegContext, ratio_numerator: float = 2.0,
                  max_ratio: float = 0.5) -> torch.Tensor:
    """SparseMask's per-stage loss: each stage's weights pushed to 0 or 1, their mean to min(2 / n, 0.5)."""
    return stage_target(w, ctx.groups.to(w.device), ratio_numerator, max_ratio)


@register_regularizer("cost_weighted_sparsity")
def _cost_weighted(w: torch.Tensor, ctx: RegContext, reduction: str = "sum") -> torch.Tensor:
    """Global sparsity with each weight scaled by its connection's MACs over the mean: costly edges cost more."""
    return cost_weighted_sparsity(w, ctx.costs.to(w.device, w.dtype), reduction)


_RENAMED = {"REGULARISERS": "REGULARIZERS", "Regulariser": "Regularizer",
            "register_regulariser": "register_regularizer"}
"""The British spellings of sparseconn 0.2.0 and their names now (still importable, with a warning)."""


def __getattr__(name: str) -> Any:
    if name in _RENAMED:
        new = _RENAMED[name]
        warnings.warn(f"sparseconn.regularizers.{name} is deprecated; use {new}", DeprecationWarning, stacklevel=2)
        return globals()[new]
    raise AttributeError(f"module 'sparseconn.regularizers' has no attribute {name!r}")
