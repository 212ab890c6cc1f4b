"""Calling the CLI in tests: ``cli(*args)`` (any result) and ``ok(*args)`` (exit code 0 or a clear failure)."""

from __future__ import annotations

from typer.testing import CliRunner

from sparseconn.cli import app

RUNNER = CliRunner()


def cli(*args: object):
    return RUNNER.invoke(app, [str(a) for a in args])


def ok(*args: object):
    result = cli(*args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result
