"""Gradient accumulation through the real Trainer: batch 2 x accumulate 4 takes the step of batch 8 x 1.

The networks have no BatchNorm (it normalises each micro-batch on its own, so only BN-free networks give
the large batch's update exactly) and train with plain SGD (no momentum), whose update is proportional to
the gradient: a dropped 1/N scaling or a step per micro-batch moves the weights elsewhere, by far more than
the tolerance (each test checks that margin too)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from sparseconn.engine.checkpoint import load_checkpoint
from sparseconn.engine.config import SearchConfig, TrainConfig, load_run_config
from sparseconn.engine.jobs import regularizer_context
from sparseconn.engine.loading import make_task
from sparseconn.engine.optim import lr_factor
from sparseconn.engine.trainer import Trainer
from sparseconn.errors import ConfigError
from sparseconn.network import build_supernet
from sparseconn.space import SearchSpace
from sparseconn.task import TASKS
from tests.toy_task import ToyConfig, ToyData, write_toy_config

SGD = {"name": "sgd", "lr": 0.5, "momentum": 0.0}


class SmallNet(nn.Module):
    """Two convolutions, no BatchNorm: its gradient on a batch is the mean of its micro-batches'."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 1, 3, padding=1))
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.body(x))


def toy_data(n_train: int) -> dict:
    return {"train": ToyData(n_train, 16, 0), "val": ToyData(2, 16, 1)}


def fit_small(tmp: Path, n_train: int, batch_size: int, accumulate: int, **cfg) -> tuple[dict, dict]:
    """Train a fresh SmallNet one epoch; its final parameters and the fit's summary."""
    settings = {"epochs": 1, "batch_size": batch_size, "accumulate": accumulate, "optimizer": SGD,
                "schedule": {"name": "constant"}, "grad_clip": None, "amp": "off", "bn_recalibration": 0,
                "limit_val_batches": 1, **cfg}
    net = SmallNet()
    trainer = Trainer(net, TASKS.get("toy")(ToyConfig()), TrainConfig(**settings), tmp, "train", {}, progress=False)
    summary = trainer.fit(toy_data(n_train))
    return {k: v.detach().clone() for k, v in net.state_dict().items()}, summary


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


@pytest.mark.parametrize("grad_clip", [None, 0.05])
def test_accumulated_micro_batches_take_the_large_batch_step(tmp_path, grad_clip):
    start = {k: v.detach().clone() for k, v in SmallNet().state_dict().items()}
    big, big_summary = fit_small(tmp_path / "big", 8, 8, 1, grad_clip=grad_clip)
    acc, acc_summary = fit_small(tmp_path / "acc", 8, 2, 4, grad_clip=grad_clip)
    assert (big_summary["steps_per_epoch"], big_summary["optimizer_steps_per_epoch"]) == (1, 1)
    assert (acc_summary["steps_per_epoch"], acc_summary["optimizer_steps_per_epoch"]) == (4, 1)
    assert max_diff(big, acc) < 1e-6
    # The test can fail: the step moved the weights far beyond the tolerance, and a step per micro-batch
    # (accumulate 1 on batches of 2) lands elsewhere.
    assert max_diff(big, start) > 1e-3
    per_micro, _ = fit_small(tmp_path / "per-micro", 8, 2, 1, grad_clip=grad_clip)
    assert max_diff(big, per_micro) > 1e-4


def test_an_epochs_last_incomplete_group_is_stepped_as_its_own_mean(tmp_path):
    """3 micro-batches with accumulate 4: one step on the mean over the 3, i.e. batch 6's step."""
    big, _ = fit_small(tmp_path / "big", 6, 6, 1)
    acc, summary = fit_small(tmp_path / "acc", 6, 2, 4)
    assert (summary["steps_per_epoch"], summary["optimizer_steps_per_epoch"]) == (3, 1)
    assert max_diff(big, acc) < 1e-6


def test_limit_train_batches_counts_micro_batches(tmp_path):
    """The first 4 batches of 2 (limit 4) with accumulate 4 are the 8 items of one batch of 8."""
    big, _ = fit_small(tmp_path / "big", 8, 8, 1)
    acc, summary = fit_small(tmp_path / "acc", 16, 2, 4, limit_train_batches=4)
    assert (summary["steps_per_epoch"], summary["optimizer_steps_per_epoch"]) == (4, 1)
    # 16 items shuffled: the limited epoch's 8 are not the 8 of the other run, but a step was taken.
    assert max_diff(big, acc) > 1e-4


def test_the_schedule_counts_optimiser_steps(tmp_path):
    """poly over 2 epochs of 8 batches, accumulate 4: 2 steps an epoch, 4 in all; the scheduler is stepped
    once per optimiser step."""
    lrs: list[float] = []
    cfg = TrainConfig(epochs=2, batch_size=1, accumulate=4, optimizer=SGD, schedule={"name": "poly", "power": 0.9},
                      grad_clip=None, amp="off", bn_recalibration=0, limit_val_batches=1)
    trainer = Trainer(SmallNet(), TASKS.get("toy")(ToyConfig()), cfg, tmp_path, "train", {}, progress=False,
                      callbacks=[lambda epoch, rec: lrs.append(rec["lr"])])
    summary = trainer.fit(toy_data(8))
    assert (summary["steps_per_epoch"], summary["optimizer_steps_per_epoch"]) == (8, 2)
    assert lrs[0] == pytest.approx(SGD["lr"] * lr_factor(cfg.schedule, 2, 4, 2))
    assert lrs[0] == pytest.approx(SGD["lr"] * 0.5 ** 0.9)  # half-way: not 1 - 2/16 of micro-batches
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["schedulers"][0]["last_epoch"] == 4
    assert math.isclose(lrs[1], 0.0, abs_tol=1e-12)


def _without_batchnorm(net: nn.Module) -> nn.Module:
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, _BatchNorm):
                setattr(parent, name, nn.Identity())
    return net


def fit_search(tmp: Path, cfg_path: Path, batch_size: int, accumulate: int) -> dict:
    run = load_run_config(cfg_path)
    space = SearchSpace(run.space)
    torch.manual_seed(0)
    net = _without_batchnorm(build_supernet(space))
    cfg = SearchConfig(
        epochs=1, batch_size=batch_size, accumulate=accumulate, optimizer=SGD, schedule={"name": "constant"},
        connection_optimizer={"name": "sgd", "lr": 100.0, "momentum": 0.0}, grad_clip=None, amp="off",
        bn_recalibration=0, limit_val_batches=1,
        regularizers=[{"name": "binary_entropy", "coef": 0.001}, {"name": "global_sparsity", "coef": 0.0005}])
    trainer = Trainer(net, make_task(run), cfg, tmp, "search", {}, reg_ctx=regularizer_context(space, (32, 32)),
                      progress=False)
    trainer.fit({"train": ToyData(8, 32, 0), "val": ToyData(2, 32, 1)})
    return {"weights": {k: v.detach().clone() for k, v in net.state_dict().items()},
            "connections": net.connections.vector().detach().clone()}


def test_a_search_step_accumulates_network_and_connection_gradients(tmp_path):
    """Both optimisers (network, connection weights) take batch 8's step, and the connection losses count
    once a step (not once a micro-batch)."""
    cfg_path = write_toy_config(tmp_path)
    torch.manual_seed(0)
    start = _without_batchnorm(build_supernet(SearchSpace(load_run_config(cfg_path).space)))
    start_conn = start.connections.vector().detach().clone()
    big = fit_search(tmp_path / "big", cfg_path, 8, 1)
    acc = fit_search(tmp_path / "acc", cfg_path, 2, 4)
    assert max_diff(big["weights"], acc["weights"]) < 1e-6
    assert (big["connections"] - acc["connections"]).abs().max().item() < 1e-6
    # The weights moved, by the connection losses (alike for all) and by the task loss (differently).
    assert (big["connections"] - start_conn).abs().max().item() > 1e-3
    assert big["connections"].std().item() > 1e-4


@pytest.mark.parametrize("value", [0, -2, 1.5])
def test_accumulate_below_one_is_refused(value):
    with pytest.raises(ValidationError, match="accumulate"):
        TrainConfig(accumulate=value)


def test_a_bad_accumulate_in_a_run_config_is_a_one_line_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_run_config(write_toy_config(tmp_path), ["train.accumulate=0"])
    message = str(info.value)
    assert "\n" not in message and "train.accumulate" in message and "0" in message, message


class _Stop(Exception):
    pass


def test_a_run_resumed_after_an_epoch_ends_where_an_uninterrupted_one_does(tmp_path):
    """Groups never span epochs, so the per-epoch checkpoint (schedule included) resumes exactly."""
    cfg = TrainConfig(epochs=2, batch_size=2, accumulate=3, optimizer=SGD, schedule={"name": "poly"},
                      grad_clip=None, amp="off", bn_recalibration=0, limit_val_batches=1)
    task = TASKS.get("toy")(ToyConfig())

    def stop(epoch: int, record: dict) -> None:
        raise _Stop

    whole = SmallNet()
    Trainer(whole, task, cfg, tmp_path / "whole", "train", {}, progress=False).fit(toy_data(8))
    with pytest.raises(_Stop):
        Trainer(SmallNet(), task, cfg, tmp_path / "cut", "train", {}, progress=False, callbacks=[stop]).fit(
            toy_data(8))
    resumed = SmallNet()
    summary = Trainer(resumed, task, cfg, tmp_path / "cut", "train", {}, progress=False).fit(toy_data(8), resume=True)
    assert (summary["steps_per_epoch"], summary["optimizer_steps_per_epoch"]) == (4, 2)  # groups of 3 and 1
    assert max_diff(whole.state_dict(), resumed.state_dict()) < 1e-6
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["schedulers"][0]["last_epoch"] == 4
