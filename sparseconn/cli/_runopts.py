"""Options shared by the run commands and the config loading they do: bundled configs by name, the
resolved config (``--print-config``) and a new run folder for each run without ``--out``."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import typer

from sparseconn.config import read_yaml
from sparseconn.engine.config import RunConfig, apply_overrides, resolve_config, validate_run_config
from sparseconn.engine.devices import resolve_device
from sparseconn.engine.distributed import DistInfo, init_distributed
from sparseconn.engine.jobs import RunOptions
from sparseconn.engine.rundir import new_run_dir
from sparseconn.errors import SparseconnError
from sparseconn.fileio import check_out_folder
from sparseconn.task import TASKS

CONFIG_HELP = ("Run config: a YAML file, or the name of a bundled config (e.g. phase_retrieval for the installed "
               "tasks/phase_retrieval.yaml).")
OUT = typer.Option(None, "--out", "-o", help="Run folder (default: a new runs/<config name>-<job>-<date>-<time>).")
DEVICE = typer.Option("auto", "--device", help="auto (cuda if available), cpu, cuda or cuda:N.")
SEED = typer.Option(None, "--seed", help="Override the config's seed.")
RESUME = typer.Option(False, "--resume", help="Continue the run in --out (required) from its last checkpoint.")
PRINT_CONFIG = typer.Option(False, "--print-config", help="Print the resolved config (YAML, after --set, --seed and "
                                                          "--fast-dev-run) and exit without running.")
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


def start_run(config: Path, overrides: list[str] | None, seed: int | None, fast: bool, show_config: bool,
              out: Path | None, resume: bool) -> tuple[Path, RunConfig] | None:
    """The start every run command shares: the config resolved (a file or a bundled name), read, overridden
    and checked, and ``--resume`` checked against ``--out``. With ``--print-config`` it prints the config
    and returns None: nothing runs."""
    config = resolve_config(config)
    cfg = load_config(config, overrides, seed, fast)
    if show_config:
        print_config(cfg)
        return None
    check_resume(out, resume)
    if out is not None and not resume:
        check_out_folder(out, what="a run folder (new or empty)")  # before the data and model are built
    return config, cfg


def print_config(cfg: RunConfig) -> None:
    """``--print-config``: the resolved config as YAML on stdout (once under torchrun)."""
    if os.environ.get("RANK", "0") == "0":
        typer.echo(cfg.dump().rstrip("\n"))


def check_resume(out: Path | None, resume: bool) -> None:
    """``--resume`` continues one run folder, which only ``--out`` can name."""
    if resume and out is None:
        raise SparseconnError("--resume needs --out RUN_FOLDER, the run to continue (without --out every run "
                              "starts in a new folder)")


def new_run_folder(config: Path, job: str, dist: DistInfo = DistInfo(), root: Path = Path("runs")) -> Path:
    """Create ``root/<config stem>-<job>-<YYYYmmdd-HHMMSS>`` (``-2``, ``-3``, ... appended while the name is
    taken; each try an atomic mkdir, so two runs started at once get two folders). Under torchrun rank 0
    creates it and sends its name to the other ranks."""
    path: str | None = None
    problem: str | None = None
    if dist.is_main:
        try:
            path = str(new_run_dir(root, f"{config.stem}-{job}"))
        except OSError as exc:
            problem = f"cannot create a run folder in {root}: {exc}; pass --out"
    if dist.enabled:  # every rank must write to the folder rank 0 made
        import torch.distributed

        box = [path, problem]
        torch.distributed.broadcast_object_list(box, src=0)
        path, problem = box
    if problem is not None or path is None:
        raise SparseconnError(problem or "no run folder was created; pass --out")
    return Path(path)


@contextmanager
def run_folder(config: Path, out: Path | None, job: str, dist: DistInfo) -> Iterator[Path]:
    """``out`` when given (the job refuses one that holds files); else a :func:`new_run_folder`, removed
    again if the job fails before writing anything into it."""
    if out is not None:
        yield out
        return
    path = new_run_folder(config, job, dist)
    try:
        yield path
    except BaseException:
        if dist.is_main:
            with suppress(OSError):  # rmdir removes an empty folder only: nothing written is lost
                path.rmdir()
        raise


def run_options(device: str, resume: bool, quiet: bool) -> RunOptions:
    dev = resolve_device(device)
    dist = init_distributed(dev)
    if dist.enabled and dev == "cuda":
        dev = f"cuda:{dist.local_rank}"
    return RunOptions(device=dev, resume=resume, progress=not quiet, dist=dist)
