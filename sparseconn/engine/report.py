"""Kept so that old imports keep working: this module was split in two.

- :mod:`sparseconn.engine.drawing`: ``draw_source``, ``drawing_jobs``, ``write_jobs``, ``check_formats``,
  ``Job`` and the constants ``FIGURE_FORMATS``, ``FORMATS``, ``DEFAULT_FORMATS``, ``ARCHITECTURE_FILE``,
  ``CONFIG_FILE``, ``LOG_SCALE_BELOW``;
- :mod:`sparseconn.engine.run_report`: ``write_run_report``.

New code imports from those modules.
"""

from sparseconn.engine.drawing import (
    ARCHITECTURE_FILE,
    CONFIG_FILE,
    DEFAULT_FORMATS,
    FIGURE_FORMATS,
    FORMATS,
    LOG_SCALE_BELOW,
    Job,
    check_formats,
    draw_source,
    drawing_jobs,
    write_jobs,
)
from sparseconn.engine.run_report import write_run_report

__all__ = [
    "ARCHITECTURE_FILE",
    "CONFIG_FILE",
    "DEFAULT_FORMATS",
    "FIGURE_FORMATS",
    "FORMATS",
    "LOG_SCALE_BELOW",
    "Job",
    "check_formats",
    "draw_source",
    "drawing_jobs",
    "write_jobs",
    "write_run_report",
]
