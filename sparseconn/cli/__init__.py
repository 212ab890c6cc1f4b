"""The ``sparseconn`` command: a thin typer layer over importable library functions.

Every command validates its arguments, calls one library function and prints. Bad input is a
:class:`~sparseconn.errors.SparseconnError`, shown as one line on stderr with exit code 2.
Command modules register themselves on ``app`` when imported here, each named after its commands:
:mod:`~sparseconn.cli.run` (search, prune, train, evaluate, pipeline), :mod:`~sparseconn.cli.infer_export`
(infer, export), :mod:`~sparseconn.cli.draw`, :mod:`~sparseconn.cli.profile` and :mod:`~sparseconn.cli.listing`
(list). Installed plugins
(tasks) may add their own command groups (e.g. ``data``) through ``sparseconn.registry.CLI_EXTENSIONS``.
"""

from __future__ import annotations

import warnings
from typing import Any

from sparseconn.cli import draw, infer_export, listing, profile, run
from sparseconn.cli.common import app
from sparseconn.registry import CLI_EXTENSIONS, load_plugins

__all__ = ["app", "draw", "infer_export", "listing", "main", "profile", "run"]

load_plugins()
for _name in CLI_EXTENSIONS.names():  # tasks add their command groups, e.g. `sparseconn data`
    CLI_EXTENSIONS.get(_name)(app)


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      line: str | None = None) -> str:
    return f"warning: {message}\n"


def main() -> None:
    """Console-script entry point. Warnings (e.g. a config key that moved) print as one line each."""
    warnings.formatwarning = _one_line_warning
    app()


def __getattr__(name: str) -> Any:
    if name == "deploy":  # the module that defined infer, export and draw before they got their own
        raise AttributeError("sparseconn.cli.deploy was split: the infer and export commands are in "
                             "sparseconn.cli.infer_export, draw in sparseconn.cli.draw")
    raise AttributeError(f"module 'sparseconn.cli' has no attribute {name!r}")
