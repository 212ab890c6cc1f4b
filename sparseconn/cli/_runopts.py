"""Options shared by the run commands and the config loading they do."""

from __future__ import annotations

import warnings
from pathlib import Path

import typer

from sparseconn.config import read_yaml
from sparseconn.engine.config import RunConfig, apply_overrides, validate_run_config
from sparseconn.engine.devices import resolve_device
from sparseconn.engine.distributed import init_distributed
from sparseconn.engine.jobs import RunOptions
from sparseconn.task import TASKS

OUT = typer.Option(None, "--out", "-o", help="Run folder (default: runs/<config name>).")
DEVICE = typer.Option("auto", "--device", help="auto (cuda if available), cpu, cuda or cuda:N.")
SEED = typer.Option(None, "--seed", help="Override the config's seed.")
RESUME = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint.")
FAST = typer.Option(False, "--fast-dev-run", help="Two batches of two items in each stage, for smoke tests.")
SET = typer.Option(None, "--set", help="Override a config value: --set search.epochs=3 (repeatable).")
QUIET = typer.Option(False, "--quiet", help="No progress output.")

# Batches of 2 keep a smoke test of a large model quick (the 37.7M U-Net: one step of 8 at 128x128 took
# 7-13 s on 2 cores) and still give BatchNorm two values a channel, even after a 1x1 global pool.
FAST_DEV_RUN = {
    "search.epochs": 1, "train.epochs": 1, "search.batch_size": 2, "train.batch_size": 2,
    "search.limit_train_batches": 2, "train.limit_train_batches": 2,
    "search.limit_val_batches": 2, "train.limit_val_batches": 2,
    "evaluate.max_images": 2, "evaluate.latency_runs": 1, "evaluate.latency_size": [256, 256],
}


def load_config(path: Path, overrides: list[str] | None, seed: int | None, fast: bool) -> RunConfig:
    """Read, override and validate a run config; ``--fast-dev-run`` shrinks it after the user's values are
    checked (a bad ``search.epochs`` in the file is reported, not silently replaced), ``--set`` still wins."""
    raw = read_yaml(path)
    data = apply_overrides(raw, list(overrides or []))
    if seed is not None:
        data["seed"] = seed
    cfg = validate_run_config(data, str(path))  # imports the plug-ins, so plugin tasks are registered
    if not fast:
        return cfg
    task = TASKS.get(cfg.task.name)
    extra = {**FAST_DEV_RUN, **{f"task.{k}": v for k, v in task.fast_dev_run.items()}}
    data = apply_overrides(apply_overrides(raw, [f"{k}={v}" for k, v in extra.items()]), list(overrides or []))
    if seed is not None:
        data["seed"] = seed
    with warnings.catch_warnings():  # the first validation warned about old keys already
        warnings.simplefilter("ignore", FutureWarning)
        return validate_run_config(data, str(path))


def default_out(config: Path, out: Path | None, suffix: str = "") -> Path:
    return out if out is not None else Path("runs") / f"{config.stem}{suffix}"


def run_options(device: str, resume: bool, quiet: bool) -> RunOptions:
    dev = resolve_device(device)
    dist = init_distributed(dev)
    if dist.enabled and dev == "cuda":
        dev = f"cuda:{dist.local_rank}"
    return RunOptions(device=dev, resume=resume, progress=not quiet, dist=dist)
