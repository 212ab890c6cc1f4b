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


def one_line_error(result, *names: object) -> str:
    """The CLI's error contract: exit code 2 and one line ``error: ...`` that names each of ``names``."""
    assert result.exit_code == 2, (result.exit_code, result.output, repr(result.exception))
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]
