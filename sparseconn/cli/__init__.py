"""The ``sparseconn`` command: a thin typer layer over importable library functions.

Every command validates its arguments, calls one library function and prints. Bad input is a
:class:`~sparseconn.errors.SparseconnError`, shown as one line on stderr with exit code 2.
Command modules register themselves on ``app`` when imported here.
"""

from __future__ import annotations

from sparseconn.cli import profile
from sparseconn.cli._common import app

__all__ = ["app", "main", "profile"]


def main() -> None:
    """Console-script entry point."""
    app()
