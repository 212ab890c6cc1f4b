from __future__ import annotations

import json

import pytest
import torch

from sparseconn.engine.config import load_run_config
from sparseconn.engine.jobs import RunOptions, prune, search, train
from sparseconn.engine.loading import load_model
from tests.toy_task import write_toy_config


@pytest.fixture
def toy(tmp_path):
    return write_toy_config(tmp_path)


def _weights(run):
    return load_model(run, "last").checkpoint["connections"]


def test_search_writes_the_run_folder(toy, tmp_path):
    cfg = load_run_config(toy)
    run = tmp_path / "run"
    summary = search(cfg, run, RunOptions(progress=False))
    assert summary["best"]["epoch"] is not None
    for f in ("config.yaml", "metrics.jsonl", "connections.jsonl", "summary.json", "checkpoints/last.pt",
              "checkpoints/best.pt"):
        assert (run / f).is_file(), f
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [0, 1]
    assert {"train_loss", "train_loss_t", "train_binary_entropy", "val_mse", "live_connections", "lr",
            "time"} <= set(lines[0])
    conns = [json.loads(x) for x in (run / "connections.jsonl").read_text().splitlines()]
    assert len(conns[-1]["weights"]) == 7
    arch = prune(run)
    assert (run / "architecture.json").is_file() and arch.connections


def test_interrupted_and_resumed_search_matches_uninterrupted(toy, tmp_path):
    cfg = load_run_config(toy, ["search.epochs=3"])
    full = tmp_path / "full"
    search(cfg, full, RunOptions(progress=False))

    def stop_after_first(epoch, record):
        if epoch == 0:
            raise KeyboardInterrupt

    part = tmp_path / "part"
    with pytest.raises(KeyboardInterrupt):
        search(cfg, part, RunOptions(progress=False, callbacks=(stop_after_first,)))
    assert len((part / "metrics.jsonl").read_text().splitlines()) == 1
    # a run killed after logging epoch 1 but before its checkpoint: the resume re-runs epoch 1 once
    for log in ("metrics.jsonl", "connections.jsonl"):
        with open(part / log, "a") as fh:
            fh.write(json.dumps({"epoch": 1, "phase": "search", "stale": True}) + "\n")
    search(cfg, part, RunOptions(progress=False, resume=True))
    for log in ("metrics.jsonl", "connections.jsonl"):
        records = [json.loads(x) for x in (part / log).read_text().splitlines()]
        assert [r["epoch"] for r in records] == [0, 1, 2] and not any("stale" in r for r in records), log
    a, b = _weights(full), _weights(part)
    assert a.keys() == b.keys()
    assert all(a[k] == b[k] for k in a), {k: (a[k], b[k]) for k in a if a[k] != b[k]}
    sa = load_model(full, "last").net.state_dict()
    sb = load_model(part, "last").net.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_retrain_child_from_scratch_and_inherited(toy, tmp_path):
    cfg = load_run_config(toy)
    run = tmp_path / "s"
    search(cfg, run, RunOptions(progress=False))
    arch = prune(run)
    res = train(cfg, arch, tmp_path / "child", RunOptions(progress=False))
    assert res["connections"] == len(arch.connections)
    lm = load_model(tmp_path / "child")
    assert lm.kind == "child" and lm.net.connections is None
    train(cfg, arch, tmp_path / "inh", RunOptions(progress=False), inherit_from=run / "checkpoints/best.pt")
    assert load_model(tmp_path / "inh").checkpoint["edge_bias"] is True


def test_the_old_runs_module_still_offers_every_moved_name():
    """``sparseconn.engine.runs`` was split into jobs, rundir and loading; old imports get the same objects."""
    import sparseconn.engine.runs as runs
    from sparseconn.engine import jobs, loading, rundir

    homes = {name: module for module in (jobs, loading, rundir) for name in runs.__all__ if hasattr(module, name)}
    assert set(homes) == set(runs.__all__)
    for name, module in homes.items():
        assert getattr(runs, name) is getattr(module, name), name
