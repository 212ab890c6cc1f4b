"""Learnable connection weights w in [0, 1], kept apart from the network weights.

Raw values live in a registered ``nn.ParameterDict`` keyed ``"E3->D1"``, so ``.to()``,
``state_dict`` and DDP handle them like any parameter. A *parameterisation* maps raw values to
weights and, for constrained ones, projects the raw values back after each optimiser step.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sparseconn.config import ConnectionConfig
from sparseconn.registry import Registry, make_register


class Parameterisation:
    """raw <-> w mapping. ``value`` is differentiable; ``project_`` runs after each optimiser step."""

    def __init__(self, cfg: ConnectionConfig) -> None:
        self.cfg = cfg

    def raw_from_weight(self, w: float) -> float:
        raise NotImplementedError  # abstract

    def value(self, raw: torch.Tensor, noisy: bool) -> torch.Tensor:
        raise NotImplementedError  # abstract

    def project_(self, raw: torch.Tensor) -> None:
        """Keep raw values feasible (in place); unconstrained parameterisations do nothing."""


PARAMETERISATIONS: Registry[type[Parameterisation]] = Registry("connection parameterisation")
register_parameterisation = make_register(PARAMETERISATIONS)


@register_parameterisation("clamp")
class Clamp(Parameterisation):
    """The paper: w is the raw value itself, clipped to [0, 1] after every step (init 0.5)."""

    def raw_from_weight(self, w: float) -> float:
        return w

    def value(self, raw: torch.Tensor, noisy: bool) -> torch.Tensor:
        return raw.clamp(0.0, 1.0)

    def project_(self, raw: torch.Tensor) -> None:
        raw.clamp_(0.0, 1.0)


@register_parameterisation("clamp_noise")
class ClampNoise(Parameterisation):
    """SparseMask: w = clamp(p + noise * randn, 0, 2) / 2 with raw p in [0, 2] (init 1, i.e. w = 0.5).

    The noise keeps weights from sticking to the boundary; SparseMask's code keeps it at eval time
    too (``eval_noise``), which makes evaluation random, so it is off by default.
    """

    def raw_from_weight(self, w: float) -> float:
        return 2.0 * w

    def value(self, raw: torch.Tensor, noisy: bool) -> torch.Tensor:
        if noisy and self.cfg.noise > 0:
            raw = raw + self.cfg.noise * torch.randn_like(raw)
        return raw.clamp(0.0, 2.0) / 2.0

    def project_(self, raw: torch.Tensor) -> None:
        raw.clamp_(0.0, 2.0)


@register_parameterisation("sigmoid")
class Sigmoid(Parameterisation):
    """Unconstrained logits: w = sigmoid(raw). Never exactly 0 or 1; prune by threshold."""

    def raw_from_weight(self, w: float) -> float:
        w = min(max(w, 1e-12), 1 - 1e-7)
        return math.log(w / (1 - w))

    def value(self, raw: torch.Tensor, noisy: bool) -> torch.Tensor:
        return torch.sigmoid(raw)


class ConnectionWeights(nn.Module):
    """One scalar weight per candidate connection, in a fixed key order."""

    def __init__(self, keys: list[str], cfg: ConnectionConfig) -> None:
        super().__init__()
        self.keys = list(keys)
        self.cfg = cfg
        self.param = PARAMETERISATIONS.get(cfg.param)(cfg)
        init = self.param.raw_from_weight(cfg.init)
        self.raw = nn.ParameterDict({k: nn.Parameter(torch.tensor(float(init))) for k in self.keys})

    def vector(self) -> torch.Tensor:
        """(K,) differentiable weights in key order."""
        raw = torch.stack([self.raw[k] for k in self.keys])
        return self.param.value(raw, noisy=self.training or self.cfg.eval_noise)

    def forward(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.keys, self.vector().unbind(0), strict=True))

    @torch.no_grad()
    def project_(self) -> None:
        for p in self.raw.values():
            self.param.project_(p)

    @torch.no_grad()
    def snapshot(self) -> dict[str, float]:
        """Noise-free weights as plain floats, e.g. for logging and pruning."""
        raw = torch.stack([self.raw[k] for k in self.keys]).detach().float().cpu()
        return dict(zip(self.keys, self.param.value(raw, noisy=False).tolist(), strict=True))

    @torch.no_grad()
    def set_(self, weights: dict[str, float]) -> None:
        """Set weights (unknown keys are an error)."""
        for k, w in weights.items():
            if k not in self.raw:
                raise KeyError(f"unknown connection {k!r}")
            self.raw[k].fill_(self.param.raw_from_weight(float(w)))
