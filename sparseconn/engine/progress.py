"""Progress display: rich bars on a terminal, one plain line per epoch otherwise."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class ProgressReporter:
    """Epoch and batch bars with the live loss, metric and connection count."""

    def __init__(self, stage: str, epochs: int, enabled: bool = True, tty: bool | None = None) -> None:
        self.stage = stage
        self.enabled = enabled
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.console = Console(stderr=True)
        self._progress: Progress | None = None
        if self.enabled and self.tty:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                console=self.console, transient=False,
            )
            self._progress.start()
            self._epoch_bar = self._progress.add_task(f"{stage} epochs", total=epochs, info="")
            self._batch_bar = self._progress.add_task("  batches", total=1, info="")

    def start_epoch(self, epoch: int, batches: int) -> None:
        if self._progress is not None:
            self._progress.reset(self._batch_bar, total=batches, description=f"  epoch {epoch}", info="")

    def batch(self, info: dict[str, Any]) -> None:
        if self._progress is not None:
            self._progress.update(self._batch_bar, advance=1, info=_fmt(info))

    def end_epoch(self, epoch: int, info: dict[str, Any]) -> None:
        if self._progress is not None:
            self._progress.update(self._epoch_bar, advance=1, info=_fmt(info))
        elif self.enabled:
            print(f"[{self.stage}] epoch {epoch}: {_fmt(info)}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


class CountProgress:
    """One bar counting items (``infer``'s frames) on a terminal, from the first item on (lines printed before
    it stay above it); silent otherwise. ``total`` None: unknown."""

    def __init__(self, description: str, total: int | None, enabled: bool = True, tty: bool | None = None) -> None:
        self.description, self.total = description, total
        self.enabled = enabled and (sys.stderr.isatty() if tty is None else tty)
        self.console = Console(stderr=True)
        self._progress: Progress | None = None

    def advance(self, n: int = 1, info: str = "") -> None:
        if not self.enabled:
            return
        if self._progress is None:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                console=self.console, transient=False,
            )
            self._progress.start()
            self._bar = self._progress.add_task(self.description, total=self.total, info="")
        self._progress.update(self._bar, advance=n, info=info)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self.enabled = False


def _fmt(info: dict[str, Any]) -> str:
    parts = []
    for k, v in info.items():
        parts.append(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}")
    return "  ".join(parts)
