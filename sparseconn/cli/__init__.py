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

import sys
import warnings
from typing import Any

import typer

try:  # typer vendors click from 0.2x on; earlier versions use the click package
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - depends on the installed typer
    from click.exceptions import UsageError

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
    """Console-script entry point. Warnings (e.g. a config key that moved) print as one line each, and so
    does a usage error (an option that does not parse, a missing argument, an unknown option or command):
    ``error: ... (see 'sparseconn search --help')``, exit code 2, where click draws a box of five lines."""
    warnings.formatwarning = _one_line_warning
    try:
        code = app(prog_name="sparseconn", standalone_mode=False)
    except UsageError as exc:
        message = " ".join(exc.format_message().split())
        if message:  # (empty for a bare group, whose help has been printed)
            where = exc.ctx.command_path if exc.ctx is not None else "sparseconn"
            typer.echo(f"error: {message} (see '{where} --help')", err=True)
        sys.exit(2)
    except typer.Exit as exc:  # (raised where click does not catch it)
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    # Outside standalone mode click returns an Exit's code (handle_errors' one-line errors: 2); commands
    # themselves return None.
    if isinstance(code, int) and not isinstance(code, bool) and code != 0:
        sys.exit(code)


def __getattr__(name: str) -> Any:
    if name == "deploy":  # the module that defined infer, export and draw before they got their own
        raise AttributeError("sparseconn.cli.deploy was split: the infer and export commands are in "
                             "sparseconn.cli.infer_export, draw in sparseconn.cli.draw")
    raise AttributeError(f"module 'sparseconn.cli' has no attribute {name!r}")
