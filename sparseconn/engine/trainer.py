"""The training loop shared by the search (Eq. 2: Loss_t + alpha Loss_b + beta Loss_s, network and
connection weights optimised jointly), the child's retraining and a fixed model's training (Loss_t alone).

The network is a :class:`~sparseconn.network.GraphNet` (supernet or child) or any fixed model of
:mod:`sparseconn.models`; connection weights, their projection and the encoder's learning-rate group
exist only where the network has them.

Every epoch appends one line to ``metrics.jsonl`` (and, with connection weights, to ``connections.jsonl``)
whose ``phase`` is the :class:`Phase` value: ``search`` or ``train``; the run config's ``log`` adds
``metrics.csv`` and TensorBoard event files (:mod:`sparseconn.engine.loggers`). Only rank 0 logs.

Gradient accumulation (``accumulate: N``): the optimisers step once every N micro-batches of
``batch_size``, on the gradient of the mean over them (each micro-batch's loss, connection losses included,
is scaled by 1/N, so the connection losses count once a step). Clipping, the schedule, the connection
weights' projection and DDP's gradient all-reduce happen once a step (``no_sync`` on the other
micro-batches). An epoch's last group, when the batches do not divide by N, is stepped as the mean over its
own micro-batches; groups never span epochs, so the per-epoch checkpoints resume exactly. BatchNorm layers
still see one micro-batch at a time: ``sync_bn`` (under DDP on GPUs) widens their statistics to all
processes. ``limit_train_batches`` and ``steps_per_epoch`` count micro-batches,
``optimizer_steps_per_epoch`` counts steps."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from sparseconn.engine.checkpoint import (
    fingerprint,
    load_checkpoint,
    load_model_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from sparseconn.engine.config import SearchConfig, TrainingConfig
from sparseconn.engine.distributed import (
    DistInfo,
    all_reduce_sum,
    assert_same_on_all_ranks,
    sync_batchnorm,
    use_sync_bn,
)
from sparseconn.engine.inference import amp_dtype, autocast, predict
from sparseconn.engine.loggers import EpochEntry, EpochLogger, make_loggers
from sparseconn.engine.metrics import MetricAccumulator
from sparseconn.engine.optim import make_optimizer, make_scheduler, weight_groups
from sparseconn.engine.progress import ProgressReporter
from sparseconn.errors import CheckpointError, SparseconnError
from sparseconn.inputs import InputOp, op_to_calibrate
from sparseconn.network import GraphNet
from sparseconn.regularizers import REGULARIZERS, RegContext
from sparseconn.task import Task


class TrainingDiverged(SparseconnError):
    """The loss became NaN or infinite."""


class Phase(str, Enum):
    """Which loop a :class:`Trainer` runs. The value is what logs and checkpoints record (``phase`` in
    ``metrics.jsonl`` and ``connections.jsonl``, ``stage`` in a checkpoint), always as a plain string."""

    SEARCH = "search"
    """The supernet: task loss plus the connection regularisers, connection weights trained too."""
    TRAIN = "train"
    """A child or a fixed model: the task loss alone."""

    def __str__(self) -> str:
        return self.value


def gated(net: nn.Module) -> GraphNet | None:
    """The network when it has connection weights (a supernet), else None."""
    return net if isinstance(net, GraphNet) and net.connections is not None else None


@dataclass(frozen=True, kw_only=True)
class _Loop:
    """What every epoch of one :meth:`Trainer.fit` shares."""

    model: nn.Module
    """The network, wrapped in DDP when distributed."""
    loader: DataLoader
    sampler: DistributedSampler
    datasets: dict[str, Dataset]
    steps: int
    """Training batches (micro-batches) an epoch."""
    accumulate: int
    """Micro-batches an optimiser step."""
    optimizers: list[torch.optim.Optimizer]
    schedulers: list[torch.optim.lr_scheduler.LRScheduler]
    scaler: torch.amp.GradScaler
    dtype: torch.dtype | None
    """Autocast dtype (None: full precision)."""
    bar: ProgressReporter
    loggers: list[EpochLogger]
    """The run's epoch loggers (none on ranks other than 0)."""


CALIBRATION_ITEMS = 8
"""Training items an input op that asks to be calibrated sees (:meth:`Trainer._calibrate_input`)."""


@dataclass
class Trainer:
    net: nn.Module
    task: Task
    cfg: TrainingConfig
    """The run's ``search`` section (:class:`SearchConfig`) for the search, ``train`` for retraining."""
    run_dir: Path
    stage: Phase  # a plain "search" or "train" is accepted and converted
    payload: dict[str, Any]  # plain data stored in every checkpoint (config, architecture, kind)
    ckpt_prefix: str = ""
    device: str = "cpu"
    seed: int = 0
    dist: DistInfo = field(default_factory=DistInfo)
    reg_ctx: RegContext | None = None
    threshold: float = 1e-3
    progress: bool = True
    callbacks: list[Callable[[int, dict], None]] = field(default_factory=list)
    log: list[str] = field(default_factory=lambda: ["jsonl"])
    """The run config's ``log``: epoch loggers by name (``jsonl`` is always written)."""

    def __post_init__(self) -> None:
        try:
            self.stage = Phase(self.stage)
        except ValueError:
            raise SparseconnError(f"Trainer stage {self.stage!r} is unknown: expected one of "
                                  f"{', '.join(p.value for p in Phase)}") from None
        self._sync_bn = use_sync_bn(self.cfg.sync_bn, self.dist, self.device, self.stage.value)

    def ckpt_path(self, which: str) -> Path:
        return self.run_dir / "checkpoints" / f"{self.ckpt_prefix}{which}.pt"

    # -- data ------------------------------------------------------------------------------------
    def _loader(self, ds: Dataset, train: bool) -> tuple[DataLoader, DistributedSampler]:
        sampler = DistributedSampler(ds, num_replicas=self.dist.world_size, rank=self.dist.rank, shuffle=train,
                                     seed=self.seed, drop_last=train and len(ds) >= self.dist.world_size)
        bs = self.cfg.batch_size if train else 1  # evaluation is full size: images may differ in size
        loader = DataLoader(ds, batch_size=bs, sampler=sampler, num_workers=self.cfg.num_workers,
                            drop_last=train and len(ds) // self.dist.world_size >= bs)
        return loader, sampler

    def _to(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}

    # -- losses ----------------------------------------------------------------------------------
    def regularizer_terms(self) -> dict[str, torch.Tensor]:
        supernet = gated(self.net)
        if self.stage is not Phase.SEARCH or supernet is None:
            return {}
        w = supernet.connections.vector().float()
        return {r.name: r.coef * REGULARIZERS.get(r.name)(w, self.reg_ctx, **r.params)
                for r in self._search_cfg().regularizers}

    def _search_cfg(self) -> SearchConfig:
        if not isinstance(self.cfg, SearchConfig):
            raise SparseconnError(f"the search stage needs the run's search section (a SearchConfig), "
                                  f"got a {type(self.cfg).__name__}")
        return self.cfg

    # -- evaluation ------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, loader: DataLoader, limit: int | None = None) -> dict[str, float]:
        self.net.eval()
        acc = MetricAccumulator(self.task)
        amp = amp_dtype(self.cfg.amp, self.device)
        for i, batch in enumerate(loader):
            if limit is not None and i >= limit:
                break
            batch = self._to(batch)
            out = predict(self.net, batch["input"], amp=amp)
            acc.add(out, batch, {"loss": float(self.task.loss(out, batch))})
        return acc.result(self.dist, self.device)  # summed over ranks: every rank gets the same numbers

    @torch.no_grad()
    def recalibrate_bn(self, loader: DataLoader, batches: int, dtype: torch.dtype | None = None) -> None:
        """Precise BN: re-estimate every BatchNorm's running statistics with the current weights.

        Running averages (momentum 0.1) lag behind weights that move quickly, and the supernet's chains
        of per-edge BN amplify the lag: in eval mode its output can collapse while the train-mode output
        is fine. Averaging exact batch statistics over ``batches`` training batches removes the lag.
        Under DDP each rank measures its shard and the statistics are averaged, so ranks stay identical.
        """
        bns = [m for m in self.net.modules()
               if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
        if batches <= 0 or not bns:
            return
        momenta = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches below
        was_training = self.net.training
        self.net.train()
        try:
            for i, batch in enumerate(loader):
                if i >= batches:
                    break
                with autocast(self.device, dtype):
                    self.net(batch["input"].to(self.device, non_blocking=True))  # the bare module, not DDP
        finally:
            for m, mom in zip(bns, momenta, strict=True):
                m.momentum = mom
            self.net.train(was_training)
        if self.dist.enabled:
            flat = torch.cat([torch.cat([m.running_mean.flatten(), m.running_var.flatten()]) for m in bns]).double()
            flat = all_reduce_sum(flat, self.dist) / self.dist.world_size
            k = 0
            for m in bns:
                n = m.running_mean.numel()
                m.running_mean.copy_(flat[k:k + n].view_as(m.running_mean))
                m.running_var.copy_(flat[k + n:k + 2 * n].view_as(m.running_var))
                k += 2 * n

    # -- the loop --------------------------------------------------------------------------------
    def fit(self, datasets: dict[str, Dataset], resume: bool = False) -> dict[str, Any]:
        net = self.net.to(self.device)
        if not any(p.requires_grad for p in net.parameters()):
            return self._fixed(datasets)
        with sync_batchnorm(net, enabled=self._sync_bn):  # before DDP wraps it; plain BatchNorm again after
            return self._fit(net, datasets, resume)

    def _fit(self, net: nn.Module, datasets: dict[str, Dataset], resume: bool) -> dict[str, Any]:
        cfg = self.cfg
        train_loader, sampler = self._loader(datasets["train"], train=True)
        val_loader, _ = self._loader(datasets["val"], train=False)
        steps = min(len(train_loader), cfg.limit_train_batches or len(train_loader))
        if steps == 0:
            raise SparseconnError(f"the training set has {len(datasets['train'])} items, fewer than one batch "
                                  f"of {cfg.batch_size} per process")
        opt_steps = math.ceil(steps / cfg.accumulate)  # the schedule counts optimiser steps
        total = opt_steps * cfg.epochs
        opts = [make_optimizer(cfg.optimizer, weight_groups(net, cfg.optimizer))]
        supernet = gated(net)
        if self.stage is Phase.SEARCH and supernet is not None:
            conn = self._search_cfg().connection_optimizer
            opts.append(make_optimizer(conn, [
                {"params": supernet.connection_parameters(), "lr": conn.lr, "name": "connections"}]))
        scheds = [make_scheduler(o, cfg.schedule, total, opt_steps) for o in opts]
        dtype = amp_dtype(cfg.amp, self.device)
        scaler = torch.amp.GradScaler(enabled=dtype == torch.float16)
        start, best = 0, {"metric": self.task.primary_metric, "value": None, "epoch": None}
        if resume:
            ckpt = load_checkpoint(self.ckpt_path("last"))
            load_model_state(net, ckpt, self.ckpt_path("last"))
            if len(ckpt.get("optimizers", [])) != len(opts):
                raise CheckpointError(f"{self.ckpt_path('last')} holds {len(ckpt.get('optimizers', []))} optimiser "
                                      f"states, this stage needs {len(opts)}")
            for o, s in zip(opts, ckpt["optimizers"], strict=True):
                o.load_state_dict(s)
            for sch, s in zip(scheds, ckpt["schedulers"], strict=True):
                sch.load_state_dict(s)
            scaler.load_state_dict(ckpt["scaler"])
            set_rng_state(ckpt["rng"])
            start, best = ckpt["epoch"] + 1, ckpt["best"]
        # Not on resume: the op keeps what its checkpoint holds (a run begun before the op learned its setting
        # keeps the setting it was trained with, rather than switching its input mid-training).
        calibration = None if resume else self._calibrate_input(net, datasets["train"])
        op, scale = getattr(net, "input_op", None), getattr(self.task, "target_scale", None)
        if isinstance(op, InputOp) and scale is not None:
            op.set_target_scale(scale)
        # A resumed run's loggers drop what a run killed between its log lines and its checkpoint logged
        # for the epochs that run again.
        loggers = make_loggers(self.log, self.run_dir, self.stage.value, start if resume else None) \
            if self.dist.is_main else []
        model = DDP(net, device_ids=[self.dist.local_rank] if self.device.startswith("cuda") else None) \
            if self.dist.enabled else net
        bar = ProgressReporter(self.stage.value, cfg.epochs, enabled=self.progress and self.dist.is_main)
        loop = _Loop(model=model, loader=train_loader, sampler=sampler, datasets=datasets, steps=steps,
                     accumulate=cfg.accumulate, optimizers=opts, schedulers=scheds, scaler=scaler, dtype=dtype,
                     bar=bar, loggers=loggers)
        try:
            for epoch in range(start, cfg.epochs):
                record = self._epoch(loop, epoch)
                self.recalibrate_bn(train_loader, min(steps, cfg.bn_recalibration), dtype)
                record.update({f"val_{k}": v for k, v in self.evaluate(val_loader, cfg.limit_val_batches).items()})
                best = self._finish_epoch(loop, epoch, record, best)
                for cb in self.callbacks:
                    cb(epoch, record)
        finally:
            bar.close()
            for logger in loggers:
                logger.close()
        return {"best": best, "epochs": cfg.epochs, "steps_per_epoch": steps, "optimizer_steps_per_epoch": opt_steps,
                "world_size": self.dist.world_size, **({"input_calibration": calibration} if calibration else {})}

    def _calibrate_input(self, net: nn.Module, ds: Dataset) -> str | None:
        """Calibrate the network's input op on the first training items where it asks to be
        (:attr:`~sparseconn.inputs.InputOp.calibrated` False: the phase task's sideband op learns which order
        holds +φ on this data); the same items on every rank, and the random state left as it was."""
        op = op_to_calibrate(net)
        if op is None or len(ds) == 0:
            return None
        state = rng_state()
        try:
            items = [torch.as_tensor(ds[i]["input"]) for i in range(min(len(ds), CALIBRATION_ITEMS))]
        finally:
            set_rng_state(state)
        items = [t for t in items if t.shape == items[0].shape]  # (C, H, W) each; a batch needs one size
        with torch.no_grad():
            return op.calibrate(torch.stack(items).float().to(self.device))

    def _epoch(self, loop: _Loop, epoch: int) -> dict:
        """One pass over the training batches, an optimiser step every ``loop.accumulate`` of them (and
        after the last); returns the epoch's record (validation not yet in it), whose losses are
        micro-batch means."""
        net = self.net
        net.train()
        loop.sampler.set_epoch(epoch)
        self.task.set_epoch(loop.datasets, epoch)
        loop.bar.start_epoch(epoch, loop.steps)
        t0, sums, n = time.perf_counter(), {}, 0
        acc = loop.accumulate
        for i, batch in enumerate(loop.loader):
            if i >= loop.steps:
                break
            first = i - i % acc  # the first micro-batch of this step's group
            group = min(acc, loop.steps - first)  # micro-batches in the group (fewer in an epoch's last one)
            stepping = i == first + group - 1
            if i == first:
                for o in loop.optimizers:
                    o.zero_grad(set_to_none=True)
            batch = self._to(batch)
            # DDP all-reduces the gradients on the backward of a group's last micro-batch only.
            with nullcontext() if stepping or not isinstance(loop.model, DDP) else loop.model.no_sync():
                with autocast(self.device, loop.dtype):
                    out = loop.model(batch["input"])
                loss_t = self.task.loss(out.float(), batch)
                regs = self.regularizer_terms()
                loss = loss_t + sum(regs.values()) if regs else loss_t
                bad = torch.tensor([0.0 if torch.isfinite(loss) else 1.0], device=self.device)
                if all_reduce_sum(bad, self.dist).item() > 0:
                    raise TrainingDiverged(f"{self.stage.value}: loss became {loss.item()} at epoch {epoch} step "
                                           f"{i}; the last good checkpoint is kept at {self.ckpt_path('last')}")
                # The mean over the group: connection losses, the same on every micro-batch, count once.
                loop.scaler.scale(loss / group).backward()
            if stepping:
                self._step(loop)
            for k, v in {"loss": loss, "loss_t": loss_t, **regs}.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            n += 1
            shown = {"loss": float(loss.detach())}
            if gated(net) is not None:
                shown["live"] = self.live_connections()
            loop.bar.batch(shown)
        rec = {"epoch": epoch, "phase": self.stage.value, **{f"train_{k}": v / max(n, 1) for k, v in sums.items()}}
        rec["lr"] = loop.optimizers[0].param_groups[-1]["lr"]
        rec["time"] = time.perf_counter() - t0
        return rec

    def _step(self, loop: _Loop) -> None:
        """One optimiser step on the accumulated gradient: unscaled, clipped, stepped, scheduled, projected."""
        net, cfg = self.net, self.cfg
        for o in loop.optimizers:
            loop.scaler.unscale_(o)
        if cfg.grad_clip is not None:
            weights = net.weight_parameters() if isinstance(net, GraphNet) else list(net.parameters())
            torch.nn.utils.clip_grad_norm_(weights, cfg.grad_clip)
        for o in loop.optimizers:
            loop.scaler.step(o)
        loop.scaler.update()
        for s in loop.schedulers:
            s.step()
        if isinstance(net, GraphNet):
            net.constrain_()

    def live_connections(self) -> int | None:
        supernet = gated(self.net)
        if supernet is None:
            return getattr(self.net, "num_connections", None)
        return sum(w >= self.threshold for w in supernet.connections.snapshot().values())

    def _payload(self, record: dict, epoch: int, best: dict, *, opts: list, scheds: list, scaler: Any,
                 weights: dict[str, float] | None) -> dict[str, Any]:
        net = self.net
        return {**self.payload, "stage": self.stage.value, "model": net.state_dict(), "fingerprint": fingerprint(net),
                "optimizers": [o.state_dict() for o in opts], "schedulers": [s.state_dict() for s in scheds],
                "scaler": scaler.state_dict(), "rng": rng_state(), "epoch": epoch, "best": best,
                "connections": weights, "metrics": record}

    def _fixed(self, datasets: dict[str, Dataset]) -> dict[str, Any]:
        """A network without trainable parameters (e.g. the classical pipeline as a model): zero epochs.
        It is scored once on the validation split, and ``last.pt`` / ``best.pt`` hold it (epoch -1)."""
        val_loader, _ = self._loader(datasets["val"], train=False)
        record = {f"val_{k}": v for k, v in self.evaluate(val_loader, self.cfg.limit_val_batches).items()}
        value = record.get(f"val_{self.task.primary_metric}")
        best = {"metric": self.task.primary_metric, "value": value, "epoch": None}
        if self.dist.is_main:
            scaler = torch.amp.GradScaler(enabled=False)
            payload = self._payload(record, -1, best, opts=[], scheds=[], scaler=scaler, weights=None)
            for which in ("last", "best"):
                save_checkpoint(self.ckpt_path(which), payload)
        return {"best": best, "epochs": 0, "steps_per_epoch": 0, "optimizer_steps_per_epoch": 0,
                "world_size": self.dist.world_size}

    def _finish_epoch(self, loop: _Loop, epoch: int, record: dict, best: dict) -> dict:
        """Log the epoch (rank 0), save ``last.pt`` and, when the metric improved, ``best.pt``; returns
        the best so far."""
        supernet = gated(self.net)
        weights = supernet.connections.snapshot() if supernet is not None else None
        if supernet is not None:
            assert_same_on_all_ranks(supernet.connections.vector().detach().float(), self.dist)
        record["live_connections"] = self.live_connections()
        key = f"val_{self.task.primary_metric}"
        value = record.get(key)
        sign = 1 if self.task.higher_is_better else -1
        improved = value is not None and math.isfinite(value) and (
            best["value"] is None or sign * value > sign * best["value"])
        if improved:
            best = {"metric": self.task.primary_metric, "value": value, "epoch": epoch}
        if self.dist.is_main:
            lrs = {g.get("name", f"group{i}"): g["lr"]
                   for o in loop.optimizers for i, g in enumerate(o.param_groups)}
            entry = EpochEntry(epoch, self.stage.value, record, lrs, weights)
            for logger in loop.loggers:
                logger.log(entry)
            payload = self._payload(record, epoch, best, opts=loop.optimizers, scheds=loop.schedulers,
                                    scaler=loop.scaler, weights=weights)
            save_checkpoint(self.ckpt_path("last"), payload)
            if improved:
                save_checkpoint(self.ckpt_path("best"), payload)
        shown = {k: record[k] for k in ("train_loss", key, "live_connections") if record.get(k) is not None}
        loop.bar.end_epoch(epoch, shown)
        return best
