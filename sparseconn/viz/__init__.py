"""Drawings and reports built from plain data (graphs, weight dicts, JSON lines); never imports torch.

Figures are :class:`matplotlib.figure.Figure` objects made without pyplot, so nothing needs a display.
"""

from sparseconn.viz._common import save_figure
from sparseconn.viz.export import write_dot, write_graphml
from sparseconn.viz.graph import draw_connections, draw_pair
from sparseconn.viz.panels import phase_panels
from sparseconn.viz.report import comparison_rows, write_report
from sparseconn.viz.trajectories import load_connections, plot_trajectories

__all__ = [
    "comparison_rows",
    "draw_connections",
    "draw_pair",
    "load_connections",
    "phase_panels",
    "plot_trajectories",
    "save_figure",
    "write_dot",
    "write_graphml",
    "write_report",
]
