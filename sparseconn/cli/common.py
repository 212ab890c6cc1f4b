"""Shared CLI plumbing: the typer app, one-line errors, device choice.

Public for plug-ins: a task's own commands (e.g. ``sparseconn data``) wrap their functions in
:func:`handle_errors` so that bad input ends as one line on stderr with exit code 2, as in the core's.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar, cast

import typer

from sparseconn.errors import SparseconnError
from sparseconn.fileio import os_error_message

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="sparseconn",
    help="Differentiable-connectivity NAS for dense prediction: search, prune, retrain, evaluate, draw.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from sparseconn import __version__

        typer.echo(f"sparseconn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="Print sparseconn's version and exit.")) -> None:
    """Differentiable-connectivity NAS for dense prediction."""


def fail(message: str) -> typer.Exit:
    """Print one line to stderr and return the exit-2 exception to raise (under torchrun only rank 0
    prints: every rank meets the same bad input)."""
    if os.environ.get("RANK", "0") == "0":
        typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def one_line(exc: BaseException) -> str:
    """The first line of an error's message; for an error re-raised from a DataLoader worker (whose message
    is torch's "Caught X in DataLoader worker process N." plus the worker's traceback), the original
    message: the traceback's last line without its ``module.Class: `` prefix."""
    text = str(exc)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    if lines[0].startswith("Caught ") and "DataLoader worker" in lines[0] and len(lines) > 1:
        last = lines[-1].strip()
        prefix = f"{type(exc).__module__}.{type(exc).__qualname__}: "
        return last[len(prefix):] if last.startswith(prefix) else last.split(": ", 1)[-1]
    return lines[0]


def _finish_distributed() -> None:
    """After a command that ran under torchrun: shut its process group down in step on every rank (only
    when the run commands loaded the distributed module; other commands never import torch for this)."""
    module = sys.modules.get("sparseconn.engine.distributed")
    if module is not None:
        module.finish()


def handle_errors(fn: F) -> F:
    """Turn user errors into one-line messages with exit code 2 (no traceback): a
    :class:`SparseconnError`, and an ``OSError`` from writing the output (naming the file and the system's
    reason), which the commands' own checks of ``--out`` did not foresee."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = fn(*args, **kwargs)
        except SparseconnError as exc:
            raise fail(one_line(exc)) from None
        except OSError as exc:  # a folder that is a file, a read-only disk: the path and the reason, one line
            raise fail(os_error_message(exc)) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None
        _finish_distributed()
        return result

    return cast(F, wrapper)  # functools.wraps keeps fn's signature, which typer reads
