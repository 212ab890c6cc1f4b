"""``sparseconn.__version__`` is pyproject.toml's version, installed or not."""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import pytest

import sparseconn

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]


def pyproject_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]


def test_the_version_is_pyprojects():
    assert sparseconn.__version__ == pyproject_version() == importlib.metadata.version("sparseconn")


def test_an_uninstalled_tree_reads_its_pyproject(monkeypatch):
    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert sparseconn._version() == pyproject_version()
