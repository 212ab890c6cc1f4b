"""The Python API (``sparseconn/api.py``, at the package's top level): the README's block runs as written,
and each job writes the run folder the CLI would."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import sparseconn as sc
from sparseconn.errors import SparseconnError
from tests.toy_task import write_toy_config

ROOT = Path(__file__).resolve().parents[1]


def readme_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- test: python -->\n```python\n(.*?)```", text, re.DOTALL)
    assert found, "README.md has no <!-- test: python --> block"
    return found.group(1)


def test_the_readme_block_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tasks").symlink_to(ROOT / "tasks")
    exec(compile(readme_block(), "README.md", "exec"), {})
    assert re.search(r"\d+ of 7 connections kept", capsys.readouterr().out)
    assert (tmp_path / "runs" / "tiny-child" / "evaluation.json").is_file()
    assert {p.name for p in (tmp_path / "runs" / "tiny-figures").iterdir()} >= {"child.svg", "trajectories.svg"}


def test_jobs_without_out_make_new_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = sc.load_config(write_toy_config(tmp_path), ["search.epochs=1", "search.limit_train_batches=1"])
    first, second = sc.search(cfg, progress=False), sc.search(cfg, progress=False)
    assert first.path != second.path and first.path.parent == second.path.parent == Path("runs")
    assert first.path.name.startswith("toy-search-") and (second.path / "checkpoints" / "last.pt").is_file()
    assert sc.load_model(second).kind == "supernet"


def test_overrides_as_a_mapping_and_bad_input(tmp_path):
    cfg = sc.load_config(write_toy_config(tmp_path), {"search.epochs": 3, "task.size": 16})
    assert cfg.search.epochs == 3 and cfg.task.size == 16
    assert sc.load_config(cfg, {"seed": 5}).seed == 5
    with pytest.raises(SparseconnError, match="overrides must be"):
        sc.load_config(cfg, "seed=5")
    with pytest.raises(SparseconnError, match="config must be"):
        sc.load_config(42)
    with pytest.raises(SparseconnError, match="--device must be"):
        sc.search(cfg, tmp_path / "x", device="tpu")
    assert not (tmp_path / "x").exists()


def test_bad_arguments_are_one_line_errors_and_a_format_may_be_one_string(tmp_path):
    cfg = sc.load_config(write_toy_config(tmp_path), ["search.epochs=1", "search.limit_train_batches=1"])
    search = sc.search(cfg, tmp_path / "s", device="cpu", progress=False)
    with pytest.raises(SparseconnError, match=r"^which checkpoint must be best or last, got 'middle'$"):
        sc.load_model(search, "middle")  # not silently the last checkpoint
    assert sc.load_model(search, "last").kind == "supernet"
    for threshold in ("abc", float("nan"), -1.0, True):
        with pytest.raises(SparseconnError, match=r"^--threshold must be a finite number >= 0"):
            sc.prune(search, threshold, out=tmp_path / f"a-{threshold}.json")
    with pytest.raises(SparseconnError, match=r"^--checkpoint must be best or last, got 'middle'$"):
        sc.prune(search, checkpoint="middle")
    assert not list(tmp_path.glob("a-*.json")) and not (search.path / "architecture.json").exists()
    written = sc.draw(search, tmp_path / "figs", formats="png")
    assert written and {p.suffix for p in written} == {".png"}
    assert {p.suffix for p in sc.draw(search, tmp_path / "figs2", formats="png,dot")} == {".png", ".dot"}
    with pytest.raises(SparseconnError, match=r"^arch must be an Architecture or the path"):
        sc.train(cfg, 42, tmp_path / "t")
