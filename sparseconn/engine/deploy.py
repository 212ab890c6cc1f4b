"""Kept so that old imports keep working: this module was split in two.

- :mod:`sparseconn.engine.infer`: ``infer``, ``parse_batch_size``, ``parse_in_flight``, ``parse_max_memory``,
  ``check_engine`` and the constants ``MB``, ``DEFAULT_MAX_MEMORY_MB``, ``DEFAULT_IN_FLIGHT``,
  ``CALIBRATION_FRAMES``;
- :mod:`sparseconn.engine.export`: ``export``, ``check_format``, ``parse_tolerance``, ``check_sizes`` and the
  constants ``FORMATS``, ``EXPORT_TOLERANCE``.

New code imports from those modules (and a test patches a name there, where it is looked up: setting one
here changes nothing that runs).
"""

from sparseconn.engine.export import EXPORT_TOLERANCE, FORMATS, check_format, check_sizes, export, parse_tolerance
from sparseconn.engine.infer import (
    CALIBRATION_FRAMES,
    DEFAULT_IN_FLIGHT,
    DEFAULT_MAX_MEMORY_MB,
    MB,
    check_engine,
    infer,
    parse_batch_size,
    parse_in_flight,
    parse_max_memory,
)

__all__ = [
    "CALIBRATION_FRAMES",
    "DEFAULT_IN_FLIGHT",
    "DEFAULT_MAX_MEMORY_MB",
    "EXPORT_TOLERANCE",
    "FORMATS",
    "MB",
    "check_engine",
    "check_format",
    "check_sizes",
    "export",
    "infer",
    "parse_batch_size",
    "parse_in_flight",
    "parse_max_memory",
    "parse_tolerance",
]
