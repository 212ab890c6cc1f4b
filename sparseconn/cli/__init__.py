"""The ``sparseconn`` command: a thin typer layer over importable library functions.

Every command validates its arguments, calls one library function and prints. Bad input is a
:class:`~sparseconn.errors.SparseconnError`, shown as one line on stderr with exit code 2.
Command modules register themselves on ``app`` when imported here; installed plugins (tasks) may add
their own command groups (e.g. ``data``) through ``sparseconn.registry.CLI_EXTENSIONS``.
"""

from __future__ import annotations

from sparseconn.cli import deploy, profile, run
from sparseconn.cli.common import app
from sparseconn.registry import CLI_EXTENSIONS, load_plugins

__all__ = ["app", "deploy", "main", "profile", "run"]

load_plugins()
for _name in CLI_EXTENSIONS.names():  # tasks add their command groups, e.g. `sparseconn data`
    CLI_EXTENSIONS.get(_name)(app)


def main() -> None:
    """Console-script entry point."""
    app()
