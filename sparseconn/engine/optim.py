"""Optimisers and per-step learning-rate schedules built from a run's search or train section
(:class:`~sparseconn.engine.config.TrainingConfig`)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from sparseconn.engine.config import OptimizerConfig, ScheduleConfig


def make_optimizer(cfg: OptimizerConfig, groups: Iterable[dict]) -> torch.optim.Optimizer:
    groups = [g for g in groups if g["params"]]
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    cls = torch.optim.AdamW if cfg.name == "adamw" else torch.optim.Adam
    return cls(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def weight_groups(net: nn.Module, cfg: OptimizerConfig) -> list[dict]:
    """Encoder and decoder groups (SparseMask trains the encoder at a tenth of the decoder's rate); a
    network without ``encoder_parameters`` (a fixed model such as the U-Net) is one group at ``lr``."""
    if not hasattr(net, "encoder_parameters"):
        return [{"params": [p for p in net.parameters() if p.requires_grad], "lr": cfg.lr, "name": "model"}]
    return [
        {"params": net.encoder_parameters(), "lr": cfg.lr * cfg.encoder_lr_scale, "name": "encoder"},
        {"params": net.decoder_parameters(), "lr": cfg.lr, "name": "decoder"},
    ]


def lr_factor(cfg: ScheduleConfig, step: int, total: int, steps_per_epoch: int) -> float:
    """Multiplier of the base learning rate at ``step`` of ``total`` steps."""
    warm = int(cfg.warmup_epochs * steps_per_epoch)
    if step < warm:
        return (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    floor = cfg.min_lr_ratio
    if cfg.name == "constant":
        return 1.0
    if cfg.name == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    if cfg.name == "poly":
        return floor + (1 - floor) * (1 - min(t, 1.0)) ** cfg.power
    return cfg.gamma ** (step // (cfg.step_epochs * steps_per_epoch))


def make_scheduler(opt: torch.optim.Optimizer, cfg: ScheduleConfig, total: int, steps_per_epoch: int
                   ) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(cfg, s, total, steps_per_epoch))
