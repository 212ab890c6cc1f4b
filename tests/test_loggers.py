"""Epoch loggers (the run config's ``log``): metrics.jsonl always, metrics.csv and TensorBoard event files on
request, each resumable without a duplicate epoch; the optional tensorboard extra is checked at config load."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
import yaml

from sparseconn.engine.config import load_run_config, validate_run_config
from sparseconn.engine.jobs import RunOptions, search
from sparseconn.engine.loggers import EpochEntry, TensorBoardLogger, make_loggers
from sparseconn.errors import ConfigError, SparseconnError
from tests.toy_task import write_toy_config


@pytest.fixture
def toy(tmp_path) -> Path:
    return write_toy_config(tmp_path)


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_log_key_defaults_and_checks(toy) -> None:
    assert load_run_config(toy).log == ["jsonl"]
    assert load_run_config(toy, ["log=[csv]"]).log == ["jsonl", "csv"]  # jsonl is always written
    assert load_run_config(toy, ["log=[csv, jsonl, csv]"]).log == ["jsonl", "csv"]
    with pytest.raises(ConfigError, match="log.*unknown logger 'wandb'; expected any of jsonl, csv, tensorboard"):
        load_run_config(toy, ["log=[csv, wandb]"])
    with pytest.raises(ConfigError, match="log.*expected a list of logger names.*got 'csv'"):
        load_run_config(toy, ["log=csv"])


def test_missing_tensorboard_extra_is_one_line_at_config_load(toy, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ConfigError) as err:
        load_run_config(toy, ["log=[tensorboard]"])
    msg = str(err.value)
    assert "\n" not in msg and str(toy) in msg and "pip install 'sparseconn[tensorboard]'" in msg
    # A config stored in a checkpoint rebuilds a model (which logs nothing): it loads without the extra.
    data = yaml.safe_load(toy.read_text())
    assert validate_run_config({**data, "log": ["tensorboard"]}, "stored", warn=False).log == ["jsonl", "tensorboard"]
    # A resumed run whose machine lacks it stops at the start with the same line.
    with pytest.raises(SparseconnError, match=r"pip install 'sparseconn\[tensorboard\]'"):
        make_loggers(["tensorboard"], toy.parent, "search")


def test_csv_is_written_and_resumes_without_duplicates(toy, tmp_path) -> None:
    cfg = load_run_config(toy, ["search.epochs=3", "log=[csv]"])
    run = tmp_path / "run"

    def stop_after_first(epoch: int, record: dict) -> None:
        if epoch == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        search(cfg, run, RunOptions(progress=False, callbacks=(stop_after_first,)))
    columns, rows = read_csv(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["0"] and columns[:2] == ["epoch", "phase"]
    # killed after logging epoch 1 but before its checkpoint: the resume logs epoch 1 once
    with open(run / "metrics.csv", "a", encoding="utf-8") as fh:
        fh.write("1,search" + "," * (len(columns) - 2) + "\n")
    search(cfg, run, RunOptions(progress=False, resume=True))
    columns, rows = read_csv(run / "metrics.csv")
    records = read_jsonl(run / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == ["0", "1", "2"] and len(records) == 3
    assert columns == list(dict.fromkeys(k for r in records for k in r))  # the union, in first-seen order
    for row, rec in zip(rows, records, strict=True):
        for key, value in rec.items():
            assert row[key] == str(value), key
        assert float(row["train_loss"]) == rec["train_loss"]  # full precision
    assert not (run / "tensorboard").exists()


def test_csv_keeps_an_earlier_phase_and_grows_its_columns(tmp_path) -> None:
    first = make_loggers(["csv"], tmp_path, "search")
    first[1].log(EpochEntry(0, "search", {"epoch": 0, "phase": "search", "train_loss": 1.5, "reg": 0.1}, {}))
    second = make_loggers(["csv"], tmp_path, "train")
    second[1].log(EpochEntry(0, "train", {"epoch": 0, "phase": "train", "train_loss": 0.5, "val_iou": 0.7,
                                          "live_connections": None}, {}))
    columns, rows = read_csv(tmp_path / "metrics.csv")
    assert columns == ["epoch", "phase", "train_loss", "reg", "val_iou", "live_connections"]
    assert rows == [
        {"epoch": "0", "phase": "search", "train_loss": "1.5", "reg": "0.1", "val_iou": "", "live_connections": ""},
        {"epoch": "0", "phase": "train", "train_loss": "0.5", "reg": "", "val_iou": "0.7", "live_connections": ""},
    ]
    # resuming the train phase at epoch 0 drops its rows only
    make_loggers(["csv"], tmp_path, "train", resumed_at=0)
    assert [r["phase"] for r in read_csv(tmp_path / "metrics.csv")[1]] == ["search"]


def test_unreadable_csv_is_one_line(tmp_path) -> None:
    (tmp_path / "metrics.csv").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(SparseconnError, match="metrics.csv cannot be read as CSV") as err:
        make_loggers(["csv"], tmp_path, "search")
    assert "\n" not in str(err.value)


class FakeWriter:
    """Records what a SummaryWriter is asked to write."""

    made: list[FakeWriter] = []

    def __init__(self, log_dir: str, purge_step: int | None = None) -> None:
        self.log_dir, self.purge_step = log_dir, purge_step
        self.scalars: list[tuple[str, float, int]] = []
        self.histograms: list[tuple[str, list[float], int]] = []
        self.closed = False
        FakeWriter.made.append(self)

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.scalars.append((tag, value, step))

    def add_histogram(self, tag: str, values, step: int) -> None:
        self.histograms.append((tag, values.tolist(), step))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def test_tensorboard_writer_calls(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("sparseconn.engine.loggers.summary_writer_class", lambda: FakeWriter)
    FakeWriter.made = []
    logger = TensorBoardLogger(tmp_path, "search", resumed_at=3)
    record = {"epoch": 3, "phase": "search", "train_loss": 0.5, "train_binary_entropy": 0.1, "lr": 0.01,
              "time": 2.0, "val_mse": 0.2, "live_connections": 4, "val_nan": float("nan")}
    logger.log(EpochEntry(3, "search", record, {"encoder": 0.001, "decoder": 0.01, "connections": 0.02},
                          {"E1->D1": 0.9, "G->D1": 0.1}))
    logger.close()
    (writer,) = FakeWriter.made
    assert writer.log_dir == str(tmp_path / "tensorboard" / "search") and writer.purge_step == 3
    assert sorted(writer.scalars) == sorted([
        ("train/loss", 0.5, 3), ("train/binary_entropy", 0.1, 3), ("epoch/lr", 0.01, 3), ("epoch/time", 2.0, 3),
        ("val/mse", 0.2, 3), ("epoch/live_connections", 4.0, 3),
        ("lr/encoder", 0.001, 3), ("lr/decoder", 0.01, 3), ("lr/connections", 0.02, 3),
        ("connections/E1->D1", 0.9, 3), ("connections/G->D1", 0.1, 3),
    ])
    assert writer.histograms == [("connections", pytest.approx([0.9, 0.1]), 3)] and writer.closed


def test_tensorboard_event_files_of_a_resumed_search(toy, tmp_path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = load_run_config(toy, ["search.epochs=3", "log=[tensorboard]"])
    run = tmp_path / "run"

    ckpts = run / "checkpoints"

    def stop_after_second(epoch: int, record: dict) -> None:
        if epoch == 0:
            (ckpts / "epoch0.pt").write_bytes((ckpts / "last.pt").read_bytes())
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        search(cfg, run, RunOptions(progress=False, callbacks=(stop_after_second,)))
    # as if killed after logging epoch 1 but before its checkpoint: the resume runs epoch 1 again
    (ckpts / "epoch0.pt").replace(ckpts / "last.pt")
    search(cfg, run, RunOptions(progress=False, resume=True))
    acc = EventAccumulator(str(run / "tensorboard" / "search"), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"train/loss", "train/loss_t", "train/binary_entropy", "val/mse", "epoch/live_connections",
            "lr/encoder", "lr/decoder", "lr/connections", "connections/E1->D1"} <= set(tags["scalars"])
    assert len([t for t in tags["scalars"] if t.startswith("connections/")]) == 7
    assert tags["histograms"] == ["connections"]
    records = read_jsonl(run / "metrics.jsonl")
    steps = [e.step for e in acc.Scalars("train/loss")]
    assert steps == [r["epoch"] for r in records] == [0, 1, 2]
    assert [e.value for e in acc.Scalars("train/loss")] == pytest.approx([r["train_loss"] for r in records])
    assert [e.step for e in acc.Histograms("connections")] == [0, 1, 2]
