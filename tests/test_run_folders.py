"""Run commands without ``--out``: a new run folder each time (never "already holds files"), none left behind
by a run that fails before writing, and ``--resume`` asking for ``--out``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from sparseconn.cli._runopts import new_run_folder
from sparseconn.engine import rundir
from sparseconn.engine.distributed import DistInfo, cleanup
from tests.clitools import cli, ok, one_line_error
from tests.test_distributed import _join_group
from tests.toy_task import write_toy_config

FOLDER = re.compile(r"toy-search-\d{8}-\d{6}(-\d+)?")


def test_the_same_search_twice_makes_two_run_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = write_toy_config(tmp_path)
    args = ("search", config, "--fast-dev-run", "--device", "cpu", "--quiet")
    first, second = ok(*args).output, ok(*args).output
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2 and all(FOLDER.fullmatch(r.name) for r in runs), runs
    for run in runs:
        assert (run / "summary.json").is_file() and (run / "checkpoints" / "last.pt").is_file()
    assert f"run folder {Path('runs') / runs[0].name}" in first + second
    assert f"run folder {Path('runs') / runs[1].name}" in first + second


def test_a_taken_name_gets_a_number(tmp_path, monkeypatch):
    monkeypatch.setattr(rundir.time, "strftime", lambda fmt: "20250102-030405")  # three runs in one second
    root = tmp_path / "runs"
    (root / "toy-search-20250102-030405-2").mkdir(parents=True)
    (root / "toy-search-20250102-030405-2" / "kept.txt").write_text("mine")
    made = [new_run_folder(tmp_path / "toy.yaml", "search", root=root) for _ in range(3)]
    assert [p.name for p in made] == ["toy-search-20250102-030405", "toy-search-20250102-030405-3",
                                      "toy-search-20250102-030405-4"]
    assert all(p.is_dir() and not any(p.iterdir()) for p in made)
    assert (root / "toy-search-20250102-030405-2" / "kept.txt").read_text() == "mine"


def _pick(rank: int, store: str, root: str, results: dict) -> None:
    _join_group(rank, store)
    try:
        results[rank] = str(new_run_folder(Path("toy.yaml"), "search", DistInfo(rank, 2), root=Path(root)))
        dist.barrier()
    finally:
        cleanup()


@pytest.mark.timeout(120)
def test_every_rank_gets_rank_0s_folder(tmp_path):
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_pick, args=(str(tmp_path / "store"), str(tmp_path / "runs"), results), nprocs=2)
        picked = dict(results)
    assert picked[0] == picked[1]
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [Path(picked[0]).name]


def test_a_failed_start_leaves_no_run_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = write_toy_config(tmp_path)
    # search refuses a config with a fixed model: after the folder was made, before anything is written
    result = cli("search", config, "--set", "model={name: unet}", "--device", "cpu", "--quiet")
    one_line_error(result, "model")
    assert not any((tmp_path / "runs").iterdir())


def test_resume_needs_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = write_toy_config(tmp_path)
    for job in ("search", "pipeline"):
        one_line_error(cli(job, config, "--resume", "--device", "cpu"), "--resume", "--out")
    assert not (tmp_path / "runs").exists()
