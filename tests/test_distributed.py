"""Two CPU processes (gloo): identical connection weights on every rank, only rank 0 writes; gradient
accumulation under DDP takes the large batch's step; sync_bn is refused off CUDA and leaves checkpoints
that load into plain BatchNorm."""

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
from torch import nn

from sparseconn.engine.checkpoint import fingerprint, load_checkpoint, load_model_state, save_checkpoint
from sparseconn.engine.config import TrainConfig, load_run_config
from sparseconn.engine.distributed import DistInfo, assert_same_on_all_ranks, cleanup, sync_batchnorm, use_sync_bn
from sparseconn.engine.trainer import Trainer
from sparseconn.errors import ConfigError, SparseconnError
from sparseconn.network import build_supernet
from sparseconn.space import SearchSpace
from sparseconn.task import TASKS
from tests.test_accumulation import SGD, SmallNet, fit_small, max_diff, toy_data
from tests.toy_task import ToyConfig, write_toy_config

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


def _worker(rank: int, store: str, results: dict) -> None:
    _join_group(rank, store)
    info = DistInfo(rank, 2)
    try:
        assert_same_on_all_ranks(torch.ones(3), info)
        try:
            assert_same_on_all_ranks(torch.tensor([1.0, 2.0, float(rank)]), info)
            results[rank] = "no error"
        except SparseconnError as exc:
            results[rank] = str(exc)
        dist.barrier()
    finally:
        cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _join_group(rank: int, store: str) -> None:
    """Rank ``rank`` of a 2-process gloo group met through a file, not a TCP port: a port found free and
    then released can be taken by another process before rank 0 binds it (a CI run failed once so).

    The workers leave the group as a command does (:func:`~sparseconn.engine.distributed.finish`): a barrier
    once their work is done, then :func:`~sparseconn.engine.distributed.cleanup`. A bare
    ``destroy_process_group`` while the other rank still talked, or with a DDP wrapper still alive, aborted
    rank 1 of the accumulation test in CI ("terminate called without an active exception", SIGABRT)."""
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)


@pytest.mark.timeout(120)
def test_rank_mismatch_is_detected(tmp_path):
    results = mp.Manager().dict()
    mp.spawn(_worker, args=(str(tmp_path / "store"), results), nprocs=2, join=True)
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


def _two_ranks(source: str, tmp_path: Path, *args: str) -> list[subprocess.Popen]:
    """``source`` run as ranks 0 and 1 of a 2-process gloo group (the env:// variables set), each with the
    path ``tmp_path/rank{N}.txt`` and ``args`` as arguments."""
    script = tmp_path / "run.py"
    script.write_text(source, encoding="utf-8")
    port = _free_port()
    procs = []
    for rank in range(2):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2",
               "RANK": str(rank), "LOCAL_RANK": str(rank), "OMP_NUM_THREADS": "1",
               "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        procs.append(subprocess.Popen([sys.executable, str(script), str(tmp_path / f"rank{rank}.txt"), *args],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


@pytest.mark.timeout(180)
@pytest.mark.parametrize("end", ["ok", "fail"])
def test_the_process_group_is_destroyed_at_the_end_of_a_run(tmp_path, end):
    procs = _two_ranks(TEARDOWN_SCRIPT, tmp_path, end)
    for rank, proc in enumerate(procs):
        _, err = proc.communicate(timeout=150)
        assert proc.returncode == (0 if end == "ok" else 1), err[-2000:]
        if end == "fail":
            assert "the run failed" in err
        assert (tmp_path / f"rank{rank}.txt").read_text() == "initialized at exit: False"


FINISH_SCRIPT = """
import sys, time
from pathlib import Path
import torch.distributed as dist
from sparseconn.cli.common import handle_errors
from sparseconn.engine.distributed import init_distributed

@handle_errors
def command():
    info = init_distributed("cpu")
    if info.rank == 0:
        time.sleep(1.0)  # rank 0 still works while rank 1 is done
    return time.time()

returned = command()
Path(sys.argv[1]).write_text(f"{returned} {time.time()} {dist.is_initialized()}")
"""


@pytest.mark.timeout(180)
def test_a_finished_command_shuts_the_group_down_in_step_on_every_rank(tmp_path):
    """After a command ends normally, each rank waits for the others before its group goes (a rank that
    tears its gloo connections down while another still runs can abort it) and the group is gone before
    the interpreter finalises."""
    procs = _two_ranks(FINISH_SCRIPT, tmp_path)
    for proc in procs:
        _, err = proc.communicate(timeout=150)
        assert proc.returncode == 0, err[-2000:]
    (returned0, _, init0), (_, finished1, init1) = (
        (tmp_path / f"rank{r}.txt").read_text().split() for r in range(2))
    assert init0 == init1 == "False"  # destroyed by the command's end, not left to the exit handlers
    assert float(finished1) >= float(returned0)  # rank 1 waited for rank 0's command to return


def _fit_accumulating(rank: int, run_dir: str) -> None:
    cfg = TrainConfig(epochs=1, batch_size=2, accumulate=2, optimizer=SGD, schedule={"name": "constant"},
                      grad_clip=None, amp="off", bn_recalibration=0, limit_val_batches=1)
    trainer = Trainer(SmallNet(), TASKS.get("toy")(ToyConfig()), cfg, Path(run_dir), "train", {},
                      dist=DistInfo(rank, 2), progress=False)
    trainer.fit(toy_data(8))


def _accumulate_worker(rank: int, store: str, run_dir: str) -> None:
    torch.set_num_threads(1)
    _join_group(rank, store)
    try:
        _fit_accumulating(rank, run_dir)  # its trainer and DDP wrapper are gone when it returns
        dist.barrier()
    finally:
        cleanup()


@pytest.mark.timeout(180)
def test_accumulation_under_ddp_takes_the_large_batch_step(tmp_path):
    """2 ranks x 2 micro-batches of 2 (DDP all-reduces on the second only) = one batch of 8."""
    mp.spawn(_accumulate_worker, args=(str(tmp_path / "store"), str(tmp_path / "ddp")), nprocs=2, join=True)
    ddp = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")["model"]
    big, _ = fit_small(tmp_path / "big", 8, 8, 1)
    assert max_diff(big, ddp) < 1e-6
    assert max_diff(big, {k: v.detach() for k, v in SmallNet().state_dict().items()}) > 1e-3


def test_sync_bn_on_a_distributed_cpu_run_is_a_one_line_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        Trainer(nn.Identity(), None, TrainConfig(sync_bn=True), tmp_path, "train", {}, dist=DistInfo(0, 2))
    assert str(info.value) == ("train.sync_bn is true but the device is 'cpu': SyncBatchNorm needs CUDA GPUs with "
                               "the NCCL backend; set train.sync_bn=false on this run")
    assert use_sync_bn(True, DistInfo(1, 4, 1), "cuda:1", "search") is True
    assert use_sync_bn(False, DistInfo(0, 2), "cpu", "search") is False


def test_sync_bn_in_a_single_process_keeps_batchnorm_with_a_warning(tmp_path):
    with pytest.warns(UserWarning, match=r"^search.sync_bn is true but this is a single process"):
        assert use_sync_bn(True, DistInfo(), "cpu", "search") is False
    with pytest.warns(UserWarning, match="train.sync_bn"):
        trainer = Trainer(nn.Identity(), None, TrainConfig(sync_bn=True), tmp_path, "train", {})
    assert trainer._sync_bn is False


def _plain_bn_count(net: nn.Module) -> tuple[int, int]:
    mods = list(net.modules())
    sync = sum(isinstance(m, nn.SyncBatchNorm) for m in mods)
    plain = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, nn.SyncBatchNorm) for m in mods)
    return plain, sync


def test_a_checkpoint_saved_with_sync_bn_loads_into_plain_batchnorm(tmp_path):
    """The supernet's BatchNorm layers as SyncBatchNorm (as under DDP with sync_bn): same state-dict keys and
    fingerprint, its checkpoint loads into a plain network, and the network gets its own layers back, trained."""
    space = SearchSpace(load_run_config(write_toy_config(tmp_path)).space)
    net = build_supernet(space)
    plain_before, _ = _plain_bn_count(net)
    keys, print_before = list(net.state_dict()), fingerprint(net)
    assert plain_before > 0
    with sync_batchnorm(net) as converted:
        assert converted == plain_before and _plain_bn_count(net) == (0, plain_before)
        assert list(net.state_dict()) == keys and fingerprint(net) == print_before
        net.train()
        net(torch.rand(4, 1, 32, 32))  # one process: SyncBatchNorm falls back to plain batch norm
        state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        save_checkpoint(tmp_path / "sync.pt", {"model": net.state_dict(), "fingerprint": fingerprint(net)})
    assert _plain_bn_count(net) == (plain_before, 0)
    assert max_diff(state, net.state_dict()) == 0  # the restored layers hold what was trained in the block
    fresh = build_supernet(space)
    assert max_diff(state, fresh.state_dict()) > 0  # the forward moved the running statistics
    load_model_state(fresh, load_checkpoint(tmp_path / "sync.pt"), tmp_path / "sync.pt")
    assert max_diff(state, fresh.state_dict()) == 0


@pytest.mark.gpu
@pytest.mark.timeout(300)
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_two_gpu_search_with_sync_bn_and_accumulation(tmp_path):
    cfg = write_toy_config(tmp_path)
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "sparseconn",
           "search", str(cfg), "--out", str(out), "--device", "cuda", "--quiet",
           "--set", "search.sync_bn=true", "--set", "search.accumulate=2"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=280, cwd=tmp_path)
    assert res.returncode == 0, f"stdout:\n{res.stdout[-2000:]}\nstderr:\n{res.stderr[-4000:]}"
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["world_size"], summary["steps_per_epoch"], summary["optimizer_steps_per_epoch"]) == (2, 2, 1)
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")
    load_model_state(build_supernet(SearchSpace(load_run_config(cfg).space)), ckpt, out / "checkpoints" / "last.pt")


def test_sync_bn_off_cuda_is_refused_before_the_run_folder_is_made(tmp_path):
    from sparseconn.engine.config import SearchConfig
    from sparseconn.engine.jobs import RunOptions, refuse_sync_bn

    opts = RunOptions(device="cpu", dist=DistInfo(0, 2))
    with pytest.raises(ConfigError, match=r"^search.sync_bn is true but the device is 'cpu'"):
        refuse_sync_bn(SearchConfig(sync_bn=True), opts, "search")
    refuse_sync_bn(SearchConfig(sync_bn=False), opts, "search")  # nothing asked, nothing refused
    refuse_sync_bn(TrainConfig(sync_bn=True), RunOptions(device="cpu"), "train")  # one process: the Trainer warns
