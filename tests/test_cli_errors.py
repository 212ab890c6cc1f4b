"""User errors reach the terminal as their own one line, also when raised in a DataLoader worker, and so do
operating-system errors from writing the output (a read-only folder, a full disk)."""

from __future__ import annotations

import pytest
from torch.utils.data import DataLoader, Dataset
from typer.testing import CliRunner

from sparseconn.cli.common import one_line
from sparseconn.errors import DataError
from tests.clitools import one_line_error

MESSAGE = "/data/VOC2012/SegmentationClass/2007_000032.png: label value 40 is not a class (0..20) or 255"


class _BadLabels(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> None:
        raise DataError(MESSAGE)


def test_an_error_from_a_dataloader_worker_keeps_its_message():
    try:
        list(DataLoader(_BadLabels(), num_workers=1))
    except DataError as exc:
        assert str(exc).startswith("Caught DataError in DataLoader worker process 0.")  # torch's wrapper
        assert one_line(exc) == MESSAGE
    else:
        raise AssertionError("the worker's DataError was not raised")


def test_one_line_keeps_the_first_line_of_an_ordinary_message():
    assert one_line(DataError("first line\nsecond line")) == "first line"
    assert one_line(DataError("")) == "DataError"


def _failing_command(exc: OSError):
    """A one-command CLI, wrapped as every command is, whose work raises ``exc``."""
    import typer

    from sparseconn.cli.common import handle_errors

    app = typer.Typer()

    @app.command()
    @handle_errors
    def write() -> None:
        raise exc

    return app


@pytest.mark.parametrize(("exc", "line"), [
    (PermissionError(13, "Permission denied", "/data/phases/a.tif"),
     "error: cannot write '/data/phases/a.tif': Permission denied"),
    (OSError(28, "No space left on device", "/data/phases/a.tif"),
     "error: cannot write '/data/phases/a.tif': No space left on device"),
    # os.replace(temporary file, target) onto a folder: the target is the file the user named
    (IsADirectoryError(21, "Is a directory", "/data/.a.json.x1.tmp.json", None, "/data/a.json"),
     "error: cannot write '/data/a.json': Is a directory"),
    (FileNotFoundError(2, "No such file or directory", "/data/gone"), "error: '/data/gone': No such file or directory"),
])
def test_an_os_error_while_writing_is_one_line_naming_the_file(exc, line):
    result = CliRunner().invoke(_failing_command(exc), [])
    assert one_line_error(result) == line


@pytest.mark.parametrize(("args", "message"), [
    (["search", "tasks/phase_retrieval.yaml", "--seed", "abc"],
     "error: Invalid value for '--seed': Input should be a valid integer, unable to parse string as an integer "
     "(see 'sparseconn search --help')"),
    (["search"], "error: Missing argument 'config'. (see 'sparseconn search --help')"),
    (["infer", "run", "x.tif", "--out", "o", "--bogus"], "error: No such option: --bogus"),
    (["bogus"], "error: No such command 'bogus'. (see 'sparseconn --help')"),
    (["search", "nothere.yaml"], "error: config file 'nothere.yaml' does not exist"),
])
def test_usage_errors_of_the_console_command_are_one_line_with_exit_code_2(args, message):
    """Where click would draw a five-line box, ``sparseconn`` (the console script and ``python -m``) prints one
    line; its own one-line errors keep exit code 2 through it."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, "-m", "sparseconn", *args], capture_output=True, text=True, cwd=root,
                         timeout=120)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), res.stderr
    assert res.stdout == ""


def test_the_console_command_exits_0_on_version_and_help():
    import subprocess
    import sys

    for args in (["--version"], ["search", "--help"]):
        res = subprocess.run([sys.executable, "-m", "sparseconn", *args], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0 and res.stdout and not res.stderr, (args, res.stderr)
