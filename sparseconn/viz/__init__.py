"""Drawings and reports built from plain data (graphs, weight dicts, JSON lines); never imports torch or a
task. A task draws its own pictures (e.g. the phase task's panels:
``sparseconn_tasks.phase_retrieval.panels``).

Figures are :class:`matplotlib.figure.Figure` objects made without pyplot, so nothing needs a display.
"""

from typing import Any

from sparseconn.viz._common import save_figure
from sparseconn.viz.export import write_dot, write_graphml
from sparseconn.viz.graph import draw_connections, draw_pair
from sparseconn.viz.report import comparison_rows, write_report
from sparseconn.viz.trajectories import load_connections, plot_trajectories

__all__ = [
    "comparison_rows",
    "draw_connections",
    "draw_pair",
    "load_connections",
    "plot_trajectories",
    "save_figure",
    "write_dot",
    "write_graphml",
    "write_report",
]


def __getattr__(name: str) -> Any:
    if name in ("phase_panels", "panels"):  # a task's picture: moved out of the task-free viz package
        raise AttributeError(f"sparseconn.viz.{name} moved to the phase task: "
                             "sparseconn_tasks.phase_retrieval.panels (its function phase_panels)")
    raise AttributeError(f"module 'sparseconn.viz' has no attribute {name!r}")
