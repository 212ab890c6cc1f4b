"""Where a run's epochs are logged: the run config's ``log`` list, one :class:`EpochLogger` per name.

- ``jsonl``: ``metrics.jsonl`` (one line an epoch) and, with connection weights, ``connections.jsonl``.
  Always written, listed or not: reports, ``runs`` and the figures read them.
- ``csv``: ``metrics.csv``, one row an epoch; the columns are the union of the records' keys in the order
  they first appeared (a key a row lacks is an empty cell).
- ``tensorboard``: event files under ``RUN/tensorboard/<phase>/`` (``search``, ``train``): losses,
  metrics, every learning rate and every connection weight as scalars, and a histogram of the connection
  weights, per epoch. Needs the optional extra ``sparseconn[tensorboard]``.

Every logger takes its run folder, the phase and, for a resumed run, the first epoch that runs again: what
it logged for that epoch and later is dropped, so a run killed between its log lines and its checkpoint
logs each epoch once. The :class:`~sparseconn.engine.trainer.Trainer` builds them on rank 0 only.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from sparseconn.errors import ConfigError, SparseconnError
from sparseconn.fileio import append_jsonl, atomic_write_text, truncate_jsonl


@dataclass(frozen=True)
class EpochEntry:
    """What one epoch logs."""

    epoch: int
    phase: str
    record: dict[str, Any]
    """The ``metrics.jsonl`` line: ``epoch``, ``phase``, ``train_*`` losses, ``lr``, ``time``, ``val_*``
    metrics and ``live_connections``."""
    lrs: dict[str, float]
    """The learning rate of every optimiser parameter group by its name (``model``, ``encoder``,
    ``decoder``, ``connections``)."""
    weights: dict[str, float] | None = None
    """Every connection weight by its key (a supernet), else None."""


class EpochLogger:
    """The interface: built once a :meth:`~sparseconn.engine.trainer.Trainer.fit`, ``log`` each epoch,
    ``close`` at the end (also after an error)."""

    extra: ClassVar[str | None] = None
    """The optional dependency (a ``sparseconn[...]`` extra and the module it provides) it needs, if any."""

    def __init__(self, run_dir: Path, phase: str, resumed_at: int | None = None) -> None:
        self.run_dir, self.phase = Path(run_dir), phase

    def keeps(self, record: dict[str, Any], resumed_at: int) -> bool:
        """A record logged before a resume at epoch ``resumed_at`` stays: another phase's, or an earlier epoch."""
        try:
            epoch = int(record.get("epoch", -1))  # a CSV row holds "3"
        except (TypeError, ValueError):
            epoch = -1
        return record.get("phase") != self.phase or epoch < resumed_at

    def log(self, entry: EpochEntry) -> None:
        raise NotImplementedError  # abstract

    def close(self) -> None:
        """Release what the logger holds open (nothing by default)."""


class JsonlLogger(EpochLogger):
    """``metrics.jsonl`` and ``connections.jsonl``, a line an epoch, appended."""

    def __init__(self, run_dir: Path, phase: str, resumed_at: int | None = None) -> None:
        super().__init__(run_dir, phase, resumed_at)
        if resumed_at is not None:
            for name in ("metrics.jsonl", "connections.jsonl"):
                truncate_jsonl(self.run_dir / name, lambda r: self.keeps(r, resumed_at))

    def log(self, entry: EpochEntry) -> None:
        append_jsonl(self.run_dir / "metrics.jsonl", entry.record)
        if entry.weights is not None:
            append_jsonl(self.run_dir / "connections.jsonl",
                         {"epoch": entry.epoch, "phase": entry.phase, "weights": entry.weights})


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (str, int, float)):
        return str(value)
    return json.dumps(value)


class CsvLogger(EpochLogger):
    """``metrics.csv``: the rows of every phase so far plus one an epoch. The file is rewritten atomically
    each epoch (a header may gain columns), so a killed run never leaves a torn row."""

    path_name = "metrics.csv"

    def __init__(self, run_dir: Path, phase: str, resumed_at: int | None = None) -> None:
        super().__init__(run_dir, phase, resumed_at)
        self.path = self.run_dir / self.path_name
        self.columns: list[str] = []
        self.rows: list[dict[str, str]] = []
        if self.path.is_file():  # an earlier phase of a pipeline, or the run being resumed
            try:
                with open(self.path, newline="", encoding="utf-8") as fh:
                    reader = csv.DictReader(fh)
                    self.columns = list(reader.fieldnames or [])
                    self.rows = [dict(row) for row in reader]
            except (OSError, UnicodeDecodeError, csv.Error) as exc:
                raise SparseconnError(f"{self.path} cannot be read as CSV ({exc}); expected the metrics.csv "
                                      "this run wrote: move it away to start a new one") from None
        if resumed_at is not None:
            self.rows = [r for r in self.rows if self.keeps(r, resumed_at)]
            self._write()

    def log(self, entry: EpochEntry) -> None:
        self.columns += [k for k in entry.record if k not in self.columns]
        self.rows.append({k: _cell(v) for k, v in entry.record.items()})
        self._write()

    def _write(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buf.getvalue())


def _scalar(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


class TensorBoardLogger(EpochLogger):
    """Event files under ``RUN/tensorboard/<phase>/``, step = epoch. Tags: ``train/<loss>``,
    ``val/<metric>``, ``lr/<group>``, ``connections/<key>`` (and the histogram ``connections``),
    ``epoch/<other>`` (``live_connections``, ``time``)."""

    extra = "tensorboard"

    def __init__(self, run_dir: Path, phase: str, resumed_at: int | None = None) -> None:
        super().__init__(run_dir, phase, resumed_at)
        writer_class = summary_writer_class()
        # purge_step hides the events a killed run wrote for the epochs that run again
        self.writer = writer_class(log_dir=str(self.run_dir / "tensorboard" / phase), purge_step=resumed_at)

    def log(self, entry: EpochEntry) -> None:
        step = entry.epoch
        for key, value in entry.record.items():
            x = _scalar(value)
            if x is None or key == "epoch":
                continue
            group, _, name = key.partition("_")
            tag = f"{group}/{name}" if group in ("train", "val") and name else f"epoch/{key}"
            self.writer.add_scalar(tag, x, step)
        for name, lr in entry.lrs.items():
            self.writer.add_scalar(f"lr/{name}", lr, step)
        if entry.weights:
            for key, w in entry.weights.items():
                self.writer.add_scalar(f"connections/{key}", w, step)
            self.writer.add_histogram("connections", torch.tensor(list(entry.weights.values())), step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def summary_writer_class() -> Any:
    """torch's ``SummaryWriter``, or a one-line error naming the extra that provides it."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise SparseconnError(missing_extra_message("tensorboard")) from None
    return SummaryWriter


LOGGERS: dict[str, type[EpochLogger]] = {"jsonl": JsonlLogger, "csv": CsvLogger, "tensorboard": TensorBoardLogger}
"""The loggers a run config's ``log`` list may name."""
ALWAYS = "jsonl"
"""The logger every run writes, listed or not (other code reads ``metrics.jsonl``)."""


def missing_extra_message(name: str) -> str:
    return (f"log: {name!r} needs the {name} package, which is not installed: "
            f"pip install 'sparseconn[{name}]' (or remove {name!r} from log)")


def check_log(names: Any) -> list[str]:
    """The ``log`` list checked: known names, ``jsonl`` first (added when missing), duplicates dropped.
    A ValueError names the bad entry and the valid ones."""
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise ValueError(f"expected a list of logger names ({', '.join(LOGGERS)}), got {names!r}")
    out = [ALWAYS]
    for name in names:
        if not isinstance(name, str) or name not in LOGGERS:
            raise ValueError(f"unknown logger {name!r}; expected any of {', '.join(LOGGERS)}")
        if name not in out:
            out.append(name)
    return out


def check_extras(names: list[str]) -> None:
    """A ConfigError naming the extra when a listed logger's optional dependency is not installed."""
    for name in names:
        extra = LOGGERS[name].extra
        if extra is not None and importlib.util.find_spec(extra) is None:
            raise ConfigError(missing_extra_message(extra))


def make_loggers(names: list[str], run_dir: Path, phase: str, resumed_at: int | None = None) -> list[EpochLogger]:
    """One logger per name (``jsonl`` always, first)."""
    return [LOGGERS[name](run_dir, phase, resumed_at) for name in check_log(names)]
