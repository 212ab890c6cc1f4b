"""User-facing errors.

Every error a user can cause by bad input (a config, a file, a name) is a :class:`SparseconnError`.
The CLI prints its message as one line and exits with code 2; library callers catch it like any
``ValueError``.
"""

from __future__ import annotations


class SparseconnError(ValueError):
    """Bad input: the message names the bad value and what was expected."""


class ConfigError(SparseconnError):
    """A configuration value is missing, unknown or of the wrong type."""


class SpaceError(SparseconnError):
    """A search-space spec cannot be built (channels, strides, cycles, unreachable stages)."""


class ArchitectureError(SparseconnError):
    """An architecture file is malformed or does not match the network it is applied to."""


class GraphError(SpaceError, ArchitectureError):
    """A network graph is malformed: not a graph, an unknown node kind, a cycle, a stage cut off.

    Both a :class:`SpaceError` (building a space) and an :class:`ArchitectureError` (loading or drawing
    an architecture), so code that catches either keeps catching it."""


class CheckpointError(SparseconnError):
    """A checkpoint is missing, truncated or belongs to another architecture."""


class DataError(SparseconnError):
    """An input file or data set is missing, empty or malformed."""
