"""``pipeline``: search -> prune -> retrain -> (train the model baselines and random children) -> evaluate, all
in one run folder; the fixed models and random children of ``evaluate.baselines`` train in
``RUN/baselines/<slug>/``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from sparseconn.architecture import Architecture
from sparseconn.engine.baselines import (
    check_baseline_runs,
    draw_random_child,
    random_children,
    train_baselines,
    trained_baselines,
)
from sparseconn.engine.config import RunConfig
from sparseconn.engine.distributed import barrier
from sparseconn.engine.evaluate import evaluate
from sparseconn.engine.jobs import RunOptions, prune, refuse_model, search, train
from sparseconn.engine.rundir import prepare_run_dir
from sparseconn.fileio import atomic_write_json


def pipeline(cfg: RunConfig, out: Path, opts: RunOptions = RunOptions(),
             latency_size: tuple[int, int] | None = None) -> dict[str, Any]:
    """Run every stage; with ``opts.resume`` each stage continues from its own last checkpoint."""
    out = Path(out)
    ckpts = out / "checkpoints"
    refuse_model(cfg, "pipeline (search, prune, retrain)")
    trained_baselines(cfg)  # bad baseline entries fail here, not after the search
    check_baseline_runs(cfg)
    if opts.resume:
        prepare_run_dir(out, cfg, True, opts.dist, marker="checkpoints/search_last.pt")
    else:
        prepare_run_dir(out, cfg, False, opts.dist)
    search_done = (out / "search_summary.json").is_file()
    if not search_done:
        search(cfg, out, opts, ckpt_prefix="search_", prepare=False)
    # Rank 0 prunes once the search's checkpoints are all written; the others read its architecture, so
    # every rank retrains the same child.
    barrier(opts.dist)
    if opts.dist.is_main:
        arch = prune(out)
    barrier(opts.dist)
    if not opts.dist.is_main:
        arch = Architecture.load(out / "architecture.json")
    # the random controls are drawn now (deterministic on every rank), so a size they cannot have fails
    # before the retraining; they train after the searched child
    randoms = {s: draw_random_child(cfg, entry, arch) for s, entry in random_children(cfg)}
    retrain_opts = dataclasses.replace(opts, resume=opts.resume and (ckpts / "last.pt").is_file())
    inherit = ckpts / "search_best.pt" if cfg.train.inherit else None
    train_summary = train(cfg, arch, out, retrain_opts, inherit_from=inherit, prepare=False)
    baselines = train_baselines(cfg, out, opts, randoms=randoms, inherit_from=inherit)
    summary: dict[str, Any] = {
        "candidates": len(arch.candidates),
        "connections": len(arch.connections),
        "removed_stages": arch.removed_stages,
        "train": train_summary["best"],
        "baselines": baselines,
    }
    if randoms:
        summary["random_children"] = {
            s: {"seed": r.random_draw.seed, "connections": len(r.connections), "draws": r.random_draw.draws,
                "removed_stages": r.removed_stages} for s, r in randoms.items() if r.random_draw is not None}
    if opts.dist.is_main:
        result = evaluate(out, opts, latency_size=latency_size)
        summary["evaluation"] = result["rows"]
        summary.update({k: result[k] for k in ("device", "test_items", "latency_size", "child_model",
                                               "metric_labels", "sets", "latency_engines")})
        atomic_write_json(out / "summary.json", summary)
    return summary
