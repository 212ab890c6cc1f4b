"""``evaluate``: test metrics, parameters, MACs and latency of a run's model(s) and the baselines of
``evaluate.baselines`` (the task's non-network methods, fixed models, other trained runs; see
:mod:`sparseconn.engine.baselines`), written as ``evaluation.json`` and a ``report.md`` / ``report.html``
with pictures."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from sparseconn.engine.baselines import baseline_models, task_baselines
from sparseconn.engine.fastpath import check_engine, optimize
from sparseconn.engine.inference import input_multiple, pad_to_multiple, predict
from sparseconn.engine.jobs import RunOptions
from sparseconn.engine.loading import LoadedModel, load_model, make_task
from sparseconn.engine.metrics import MetricAccumulator
from sparseconn.engine.rundir import run_folder_of
from sparseconn.errors import CheckpointError, SparseconnError
from sparseconn.fileio import atomic_write_json
from sparseconn.profiling import count_macs, count_params, measure_latency
from sparseconn.task import Task


def _metrics(task: Task, loader: DataLoader, run_one, limit: int | None) -> tuple[dict[str, float], dict, dict]:
    """Split-level metrics of ``run_one(batch) -> output`` and the first batch with its output."""
    acc = MetricAccumulator(task)
    first_batch, first_out = None, None
    for i, batch in enumerate(loader):
        if limit is not None and i >= limit:
            break
        out = run_one(batch)
        acc.add(out, batch)
        if first_batch is None:
            first_batch, first_out = batch, out
    return acc.result(), first_batch, first_out


def _short(v: float) -> str:
    """4 significant figures at most, 2 decimals for values ≥ 10 (PSNR 27.72, SSIM 0.6471)."""
    return f"{v:.2f}" if abs(v) >= 10 else f"{v:.4g}"


def _needs(fn: Any) -> tuple[str, ...]:
    return tuple(getattr(fn, "needs", ()) or ())


def _scorable(baselines: dict[str, Any], dataset: Any, notes: list[str], where: str) -> dict[str, Any]:
    """The baselines whose ``needs`` the items of ``dataset`` have; a note names each one left out."""
    keys = set(dataset[0]) if len(dataset) else set()
    out = {}
    for name, fn in baselines.items():
        missing = [k for k in _needs(fn) if k not in keys]
        if missing:
            notes.append(f"{name} is not scored on {where}: its items have no {', '.join(missing)}")
        else:
            out[name] = fn
    return out


def _baseline_runner(fn):
    """``run(batch)``: the baseline on each item of the batch, with the extra keys it ``needs``."""
    needs = _needs(fn)

    def run(batch: dict[str, Any]) -> torch.Tensor:
        outs = []
        for i, xi in enumerate(batch["input"]):
            extra = {k: batch[k][i].numpy() for k in needs}
            outs.append(torch.from_numpy(np.asarray(fn(xi.numpy(), **extra), dtype=np.float32)))
        return torch.stack(outs)
    return run


def _net_runner(net: torch.nn.Module, device: str):
    return lambda batch: predict(net, batch["input"].to(device)).cpu()


def _score_set(task: Task, dataset: Any, models: dict[str, torch.nn.Module], baselines: dict[str, Any],
               device: str, limit: int | None, notes: list[str], label: str) -> list[dict[str, Any]]:
    """Metric rows (no costs) of every model and baseline on one extra test set."""
    loader = DataLoader(dataset, batch_size=1)
    rows = []
    for name, net in models.items():
        vals, _, _ = _metrics(task, loader, _net_runner(net, device), limit)
        rows.append({"model": name, **vals})
    for name, fn in _scorable(baselines, dataset, notes, label).items():
        vals, _, _ = _metrics(task, loader, _baseline_runner(fn), limit)
        rows.append({"model": name, **vals})
    return rows


def evaluate(run: Path, opts: RunOptions = RunOptions(), latency: bool = True, report: bool = True,
             latency_size: tuple[int, int] | None = None, engine: str | None = None) -> dict[str, Any]:
    """Evaluate a run folder (its best model; in a pipeline folder also the supernet) or a checkpoint,
    beside the baselines its config's ``evaluate.baselines`` names."""
    if engine is not None:
        check_engine(engine)
    if latency_size is not None and (len(latency_size) != 2 or min(latency_size) < 1):
        raise SparseconnError(f"--size must be two positive integers (H W), got {' '.join(map(str, latency_size))}")
    run = Path(run)
    lm = load_model(run)
    cfg, task = lm.cfg, make_task(lm.cfg)
    ecfg = cfg.evaluate
    size = tuple(latency_size or ecfg.latency_size)
    models: dict[str, LoadedModel] = {lm.label(task): lm}
    notes: list[str] = []
    searched = run / "checkpoints" / "search_best.pt"
    if lm.kind == "child" and run.is_dir() and searched.is_file():
        try:  # a pipeline folder: its searched supernet gets a row too
            sup = load_model(searched)
            if sup.kind != "supernet":
                raise CheckpointError(f"{searched} is not a search (supernet) checkpoint")
            models = {task.display_names["supernet"]: sup, **models}
        except CheckpointError as exc:  # a damaged supernet checkpoint must not hide the child's result
            notes.append(f"the supernet row is missing: {exc}")
    # a checkpoint inside a run folder reports into that folder (beside its logs and architecture)
    base = run if run.is_dir() else (run_folder_of(run) or run.parent)
    baselines = task_baselines(task, ecfg.baselines)
    models.update(baseline_models(base, cfg, task, {*models, *baselines}, notes))
    test = task.datasets(cfg.seed)["test"]
    loader = DataLoader(test, batch_size=1)
    device = opts.device
    rows, outputs, scores, first = [], {}, {}, None
    engines: dict[str, str] = {}  # model -> the inference path its latency was measured on
    for name, m in models.items():
        net = m.net.to(device).eval()
        vals, batch, out = _metrics(task, loader, _net_runner(net, device), ecfg.max_images)
        first = first or batch
        shape = (1, cfg.space.in_channels, *size)
        macs = count_macs(net, shape) if getattr(net, "traceable", True) else None  # NumPy inside: not counted
        row = {"model": name, **vals, "params": count_params(net), "macs": macs,
               "connections": getattr(net, "num_connections", None), "latency_ms": None}
        if latency:
            fast = net
            if getattr(net, "traceable", True):
                example, _ = pad_to_multiple(torch.from_numpy(task.example_input(size, seed=cfg.seed))[None],
                                             input_multiple(net))
                fast = optimize(net, device=device, engine=engine or ecfg.engine, example=example)
                engines[name] = fast.description
            row["latency_ms"] = measure_latency(fast, shape, runs=ecfg.latency_runs, warmup=1, device=device)
        rows.append(row)
        outputs[name] = out[0].numpy()
    for name, fn in _scorable(baselines, test, notes, "the test split").items():
        vals, _, out = _metrics(task, loader, _baseline_runner(fn), ecfg.max_images)
        row = {"model": name, **vals, "params": 0, "macs": None, "connections": None, "latency_ms": None}
        if latency and getattr(fn, "timed", True):
            example = task.example_input(size, seed=cfg.seed)
            extra = {k: example for k in _needs(fn)}  # same-size stand-ins: the cost, not the answer
            times = []
            for _ in range(max(1, min(ecfg.latency_runs, 3))):
                t0 = time.perf_counter()
                fn(example, **extra)
                times.append((time.perf_counter() - t0) * 1e3)
            row["latency_ms"] = float(np.median(times))
        rows.append(row)
        outputs[name] = out[0].numpy()
    sets = {}
    nets = {name: m.net for name, m in models.items()}
    for label, dataset in task.eval_sets(cfg.seed).items():
        sets[label] = {"items": len(dataset),
                       "rows": _score_set(task, dataset, nets, baselines, device, ecfg.max_images, notes, label)}
    for r in rows:
        scores[r["model"]] = " ".join(f"{task.metric_labels.get(k, k)} {_short(r[k])}"
                                      for k in task.metric_names[:2] if k in r)
    result = {"device": device, "latency_size": list(size), "test_items": len(test), "rows": rows,
              "child_model": lm.label(task), "metric_labels": dict(task.metric_labels),
              "sets": sets, "warnings": notes, "latency_engines": engines}
    atomic_write_json(base / "evaluation.json", result)
    if report and first is not None:
        from sparseconn.engine.run_report import write_run_report

        result["report"] = [str(p) for p in write_run_report(base, cfg, task, rows, first, outputs, scores, size,
                                                                        device=device, sets=sets, warnings=notes,
                                                                        engines=engines, child=lm.label(task))]
    return result
