"""Connection-weight trajectories during the search, read from a run's ``connections.jsonl``.

Each line of that file is one epoch: ``{"epoch": 3, "phase": "search", "weights": {"E1->D1": 0.5, ...}}``.
A torn last line (a run killed mid-write) is ignored; an epoch logged twice (a resumed run) is drawn once,
from its last record.

Example::

    records = load_connections("runs/x")
    save_figure(plot_trajectories(records, threshold=1e-3, log=True), "runs/x/trajectories.png")
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from sparseconn.errors import DataError
from sparseconn.fileio import read_jsonl

CONNECTIONS_FILE = "connections.jsonl"
KEPT_COLOR = "#1f5fa8"
PRUNED_COLOR = "#d0612b"


def load_connections(run_dir_or_file: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The per-epoch records of ``connections.jsonl`` (a run folder or the file itself), in file order.

    Raises :class:`DataError` naming the path when the file is missing, empty, or a line lacks a
    ``weights`` dict.
    """
    path = Path(run_dir_or_file)
    if path.is_dir():
        path = path / CONNECTIONS_FILE
        if not path.is_file():
            raise DataError(f"{path.parent} has no {CONNECTIONS_FILE}: "
                            "draw needs a search or pipeline run folder (of a train run, draw its architecture.json)")
    elif not path.is_file():
        raise DataError(f"{path} does not exist: expected a run folder or its {CONNECTIONS_FILE}")
    try:
        records = read_jsonl(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path} is not JSON lines ({err}): expected one JSON object per epoch") from err
    if not records:
        raise DataError(f"{path} is empty: expected one JSON line per epoch with a 'weights' dict")
    for i, record in enumerate(records, start=1):
        if not isinstance(record, dict) or not isinstance(record.get("weights"), dict):
            raise DataError(f"{path} line {i} has no 'weights' dict: "
                            "expected {'epoch': int, 'weights': {'SRC->DST': float, ...}}")
    return records


def _series(records: list[dict[str, Any]]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Epochs (n,) and, per connection, its weight at each epoch (n,), NaN where a record lacks it."""
    records = [r for r in records if isinstance(r.get("weights"), dict)]
    if not records:
        raise DataError("no records with a 'weights' dict: expected the lines of connections.jsonl")
    # A run killed after logging an epoch but before its checkpoint logs that epoch again on resume:
    # the later record wins, so the line does not double back.
    by_epoch = {float(r.get("epoch", i)): r for i, r in enumerate(records)}
    epochs = np.array(sorted(by_epoch))
    records = [by_epoch[e] for e in epochs]
    names = sorted({k for r in records for k in r["weights"]})
    series = {
        k: np.array([float(r["weights"].get(k, np.nan)) for r in records], dtype=float) for k in names
    }
    return epochs, series


def plot_trajectories(
    records: list[dict[str, Any]],
    *,
    threshold: float = 1e-3,
    kept: set[str] | None = None,
    title: str | None = None,
    log: bool = False,
    mark_epoch: int | None = None,
) -> Figure:
    """Every connection's weight against the epoch; kept connections blue, pruned ones orange.

    ``kept`` names the connections of the derived architecture; when ``None`` a connection is kept if
    its final weight is ≥ ``threshold``. The threshold is a dashed line. With ``log=True`` the y axis
    is logarithmic and weights are floored at ``threshold / 100`` so zeros stay visible. ``mark_epoch``
    draws a dotted vertical line at the epoch whose weights were pruned (e.g. the best checkpoint's).
    """
    epochs, series = _series(records)
    finals = {k: v[~np.isnan(v)][-1] if np.any(~np.isnan(v)) else np.nan for k, v in series.items()}
    if kept is None:
        kept = {k for k, w in finals.items() if w >= threshold}
    kept_names = [k for k in series if k in kept]
    pruned_names = [k for k in series if k not in kept]

    fig = Figure(figsize=(7.5, 4.6), layout="constrained")
    ax = fig.add_subplot()
    floor = threshold / 100 if log else None
    markers = len(epochs) <= 12  # few epochs: dots show where the records are
    # Pruned lines first and thin, so the kept ones read on top of them.
    for names, color, lw, alpha, z in ((pruned_names, PRUNED_COLOR, 0.8, 0.45, 2),
                                       (kept_names, KEPT_COLOR, 1.2, 0.8, 3)):
        for k in names:
            y = series[k] if floor is None else np.maximum(series[k], floor)
            ax.plot(epochs, y, color=color, lw=lw, alpha=alpha, zorder=z,
                    marker="o" if markers else None, ms=2.5)
    ax.axhline(threshold, color="black", lw=1.0, linestyle="--", zorder=4)
    if mark_epoch is not None:
        ax.axvline(mark_epoch, color="0.35", lw=1.0, linestyle=":", zorder=4)

    if log:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("connection weight" + (" (log scale)" if log else ""))
    if len(epochs) > 1 and epochs.max() > epochs.min():
        pad = 0.02 * (epochs.max() - epochs.min()) if markers else 0.0  # room for the end markers
        ax.set_xlim(epochs.min() - pad, epochs.max() + pad)
    else:  # one epoch: a window around it, not matplotlib's ±0.05 of an epoch
        ax.set_xlim(epochs.min() - 0.5, epochs.min() + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, which="major", alpha=0.25)
    default = f"connection weights: {len(kept_names)} kept, {len(pruned_names)} pruned"
    ax.set_title(title or default, fontsize=11)
    handles = [
        Line2D([], [], color=KEPT_COLOR, lw=1.6, label=f"kept ({len(kept_names)})"),
        Line2D([], [], color=PRUNED_COLOR, lw=1.6, label=f"pruned ({len(pruned_names)})"),
        Line2D([], [], color="black", lw=1.0, linestyle="--", label=f"threshold {threshold:g}"),
    ]
    if mark_epoch is not None:
        handles.append(Line2D([], [], color="0.35", lw=1.0, linestyle=":", label=f"pruned at epoch {mark_epoch}"))
    if floor is not None and any(np.nanmin(series[k]) < floor for k in series if np.any(~np.isnan(series[k]))):
        handles.append(Line2D([], [], linestyle="none", label=f"w < {floor:g} drawn at {floor:g}"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    return fig
