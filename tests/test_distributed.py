"""Two CPU processes (gloo): identical connection weights on every rank, only rank 0 writes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sparseconn.engine.distributed import DistInfo, assert_same_on_all_ranks
from sparseconn.errors import SparseconnError
from tests.toy_task import write_toy_config

ROOT = Path(__file__).resolve().parents[1]


def test_two_process_search_keeps_weights_identical(tmp_path):
    cfg = write_toy_config(tmp_path)
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "sparseconn",
           "search", str(cfg), "--out", str(out), "--device", "cpu", "--quiet", "--set", "log=[csv, tensorboard]"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, f"stdout:\n{res.stdout[-2000:]}\nstderr:\n{res.stderr[-4000:]}"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # one line an epoch: rank 1 wrote nothing
    assert len((out / "metrics.csv").read_text().splitlines()) == 1 + 2  # header and a row an epoch
    assert len(list((out / "tensorboard" / "search").iterdir())) == 1  # one event file: rank 0's
    # 16 items, batch 4, 2 ranks: 2 steps an epoch on each rank.
    assert summary["steps_per_epoch"] == 2


def _worker(rank: int, port: int, results: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    info = DistInfo(rank, 2)
    try:
        assert_same_on_all_ranks(torch.ones(3), info)
        try:
            assert_same_on_all_ranks(torch.tensor([1.0, 2.0, float(rank)]), info)
            results[rank] = "no error"
        except SparseconnError as exc:
            results[rank] = str(exc)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(120)
def test_rank_mismatch_is_detected():
    results = mp.Manager().dict()
    mp.spawn(_worker, args=(_free_port(), results), nprocs=2, join=True)
    assert all("differ between rank 0 and rank 1" in results[r] for r in (0, 1)), dict(results)


TEARDOWN_SCRIPT = """
import atexit, sys
from pathlib import Path
import torch.distributed as dist
from sparseconn.engine.distributed import init_distributed

# Registered before init_distributed registers its teardown, so it runs after it (exit handlers run LIFO).
atexit.register(lambda: Path(sys.argv[1]).write_text(f"initialized at exit: {dist.is_initialized()}"))
info = init_distributed("cpu")
assert info.enabled and dist.is_initialized()
if sys.argv[2] == "fail":
    raise RuntimeError("the run failed")
"""


@pytest.mark.timeout(180)
@pytest.mark.parametrize("end", ["ok", "fail"])
def test_the_process_group_is_destroyed_at_the_end_of_a_run(tmp_path, end):
    script = tmp_path / "run.py"
    script.write_text(TEARDOWN_SCRIPT, encoding="utf-8")
    port = _free_port()
    procs = []
    for rank in range(2):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2",
               "RANK": str(rank), "LOCAL_RANK": str(rank), "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, str(script), str(tmp_path / f"rank{rank}.txt"), end],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for rank, proc in enumerate(procs):
        _, err = proc.communicate(timeout=150)
        assert proc.returncode == (0 if end == "ok" else 1), err[-2000:]
        if end == "fail":
            assert "the run failed" in err
        assert (tmp_path / f"rank{rank}.txt").read_text() == "initialized at exit: False"
