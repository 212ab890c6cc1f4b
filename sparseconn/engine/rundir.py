"""The run folder: creating it, finding and reading its checkpoints, and checking that a checkpoint belongs
to it.

A run folder holds what the jobs write into it (:mod:`sparseconn.engine.jobs`, :mod:`sparseconn.engine.pipeline`,
:mod:`sparseconn.engine.evaluate`)::

    config.yaml            the resolved config (written first by every training job; --resume compares it)
    metrics.jsonl          one line an epoch, tagged with its phase (search, train)
    connections.jsonl      every connection weight, every epoch (search only)
    checkpoints/last.pt    the last epoch (model, optimisers, RNG: what --resume needs)
    checkpoints/best.pt    the epoch with the best validation metric
    architecture.json      the pruned child (prune; train and train_model of a child write theirs)
    summary.json           search: its short summary; pipeline: the whole pipeline's
    train_summary.json     train, train_model: the training's short summary
    evaluation.json        evaluate: the test-set table
    report.md, report.html evaluate: the report (images in figures/, where `sparseconn draw RUN` also draws)

A pipeline folder holds every stage in one folder: the search's checkpoints and summary carry the prefix
``search_`` (``checkpoints/search_last.pt``, ``search_best.pt``, ``search_summary.json``), the retrained
child's are unprefixed, ``summary.json`` is the pipeline's, and ``baselines/<slug>/`` holds a run folder
per fixed model of ``evaluate.baselines``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from sparseconn.engine.checkpoint import load_checkpoint
from sparseconn.engine.config import RUN_LEVEL, RunConfig, validate_run_config
from sparseconn.engine.distributed import DistInfo, barrier
from sparseconn.errors import CheckpointError, SparseconnError
from sparseconn.fileio import atomic_write_text


def search_checkpoint(run: Path) -> Path | None:
    """The supernet checkpoint a child inherits from in a search run folder: a pipeline's
    ``checkpoints/search_best.pt``, else a search run's ``checkpoints/best.pt``; None if neither exists."""
    found = [run / "checkpoints" / n for n in ("search_best.pt", "best.pt")]
    return next((p for p in found if p.is_file()), None)


def new_run_dir(parent: Path, stem: str) -> Path:
    """A new, empty run folder ``parent/<stem>-<YYYYmmdd-HHMMSS>`` (``-2``, ``-3``, ... when that exists),
    created here, so that two runs started in the same second never share one."""
    base = Path(parent) / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    Path(parent).mkdir(parents=True, exist_ok=True)
    for k in range(1, 10_000):
        folder = base if k == 1 else base.with_name(f"{base.name}-{k}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise SparseconnError(f"could not create a new run folder next to {base}")


def prepare_run_dir(out: Path, cfg: RunConfig, resume: bool, dist: DistInfo, marker: str = "checkpoints/last.pt"
                    ) -> None:
    """Refuse to overwrite an existing run; on resume, require a checkpoint and the same config."""
    out = Path(out)
    if resume:
        if not (out / marker).is_file():
            raise CheckpointError(f"--resume: {out} has no {marker} to resume from")
        saved = (out / "config.yaml").read_text(encoding="utf-8") if (out / "config.yaml").is_file() else None
        if saved is not None and saved != cfg.dump():
            raise SparseconnError(f"--resume: the config differs from {out / 'config.yaml'}; resume with that file")
        return
    # Every rank checks the folder before anyone writes (the barrier), so all ranks fail together
    # instead of rank 0 raising while the others wait for it; then only rank 0 writes.
    is_file = out.exists() and not out.is_dir()
    occupied = out.is_dir() and any(out.iterdir())
    barrier(dist)
    if is_file:
        raise SparseconnError(f"--out {str(out)!r} is a file; expected a run folder (new or empty)")
    if occupied:
        raise SparseconnError(f"{out} already holds files; choose another --out or pass --resume to continue")
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.yaml", cfg.dump())
    barrier(dist)


def _locate(run: Path, which: str, kind: str | None) -> tuple[Path, dict[str, Any] | None]:
    """Path of a run's checkpoint, and the checkpoint itself when telling its kind needed loading it."""
    run = Path(run)
    if run.is_file():
        return run, None
    if not run.is_dir():
        raise CheckpointError(f"{str(run)!r} does not exist (expected a run folder or a checkpoint file)")
    names = [f"search_{which}.pt", f"{which}.pt"] if kind == "supernet" else [f"{which}.pt"]
    for name in names:
        p = run / "checkpoints" / name
        if not p.is_file():
            continue
        if kind is None:
            return p, None
        ckpt = load_checkpoint(p)
        if ckpt.get("kind") == kind:
            return p, ckpt
    raise CheckpointError(f"{run} has no {'supernet ' if kind == 'supernet' else ''}checkpoints/{which}.pt")


def find_checkpoint(run: Path, which: str = "best", kind: str | None = None) -> Path:
    """The checkpoint of a run folder (or the file itself); pipeline folders prefix the search's."""
    return _locate(run, which, kind)[0]


def read_checkpoint(run: Path, which: str = "best", kind: str | None = None) -> tuple[Path, dict[str, Any]]:
    """:func:`find_checkpoint` and the loaded checkpoint, read from disk once."""
    path, ckpt = _locate(run, which, kind)
    return path, ckpt if ckpt is not None else load_checkpoint(path)


def run_folder_of(checkpoint: Path) -> Path | None:
    """``RUN`` for ``RUN/checkpoints/NAME.pt``; None for a checkpoint file outside a run folder."""
    checkpoint = Path(checkpoint)
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else None


def config_of(ckpt: dict[str, Any], source: Path) -> RunConfig:
    """The run config stored in a checkpoint, validated (its task section typed); ``source`` names the
    file in errors."""
    if not isinstance(ckpt.get("config"), dict):
        raise CheckpointError(f"{source} holds no run config")
    return validate_run_config(ckpt["config"], f"{source} (stored config)", warn=False)


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    """Dotted path of the first place where two plain-data trees differ ('' for the roots)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in [*a, *(k for k in b if k not in a)]:
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{path}.{k}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return _first_difference(x, y, f"{path}.{i}")
    return path


_NOT_ARCHITECTURE = RUN_LEVEL  # configs before 0.2 kept these run settings (no parameter) in the space


def space_difference(mine: Any, theirs: Any) -> str | None:
    """``space.<key>`` where two dumped space configs build different networks, or None if they match
    (``plugins`` and ``checkpointing``, which older configs kept in the space, are not compared)."""
    if not isinstance(mine, dict) or not isinstance(theirs, dict):
        return None if mine == theirs else "space"
    a = {k: v for k, v in mine.items() if k not in _NOT_ARCHITECTURE}
    b = {k: v for k, v in theirs.items() if k not in _NOT_ARCHITECTURE}
    return None if a == b else f"space{_first_difference(a, b)}"


def check_run_membership(path: Path, ckpt: dict[str, Any], run: Path | None = None) -> None:
    """Refuse a checkpoint whose search space is not the one its run folder's ``config.yaml`` describes
    (e.g. a ``best.pt`` copied in from another run); ``run`` defaults to the folder above ``checkpoints/``."""
    path = Path(path)
    if run is None:
        run = run_folder_of(path)
    cfg_file = Path(run) / "config.yaml" if run is not None else None
    if cfg_file is None or not cfg_file.is_file() or not isinstance(ckpt.get("config"), dict):
        return
    try:
        saved = yaml.safe_load(cfg_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        raise SparseconnError(f"{cfg_file} is not readable YAML; cannot check {path} against it") from None
    if not isinstance(saved, dict) or "space" not in saved:
        return
    where = space_difference(saved["space"], ckpt["config"].get("space"))
    if where is not None:
        raise CheckpointError(f"checkpoint {path} was saved from another architecture than {cfg_file} describes "
                              f"({where} differs)")
