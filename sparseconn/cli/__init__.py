"""The ``sparseconn`` command: a thin typer layer over importable library functions.

Every command validates its arguments, calls one library function and prints. Bad input is a
:class:`~sparseconn.errors.SparseconnError`, shown as one line on stderr with exit code 2.
Command modules register themselves on ``app`` when imported here; installed plugins (tasks) may add
their own commands (e.g. ``data``) through :func:`sparseconn.cli._common.app`.
"""

from __future__ import annotations

from sparseconn.cli import deploy, profile, run
from sparseconn.cli._common import app
from sparseconn.registry import load_plugins

__all__ = ["app", "deploy", "main", "profile", "run"]

load_plugins()  # tasks add their commands (e.g. `sparseconn data`) on import


def main() -> None:
    """Console-script entry point."""
    app()
