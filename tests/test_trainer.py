"""The trainer's phase: a str Enum whose values are the strings the logs and checkpoints have always held."""

from __future__ import annotations

import json

import pytest
from torch import nn

from sparseconn.engine.checkpoint import load_checkpoint
from sparseconn.engine.config import TrainConfig, load_run_config
from sparseconn.engine.runs import RunOptions, search
from sparseconn.engine.trainer import Phase, Trainer
from sparseconn.errors import SparseconnError
from tests.toy_task import write_toy_config


def test_phase_values_are_the_logged_strings():
    assert [p.value for p in Phase] == ["search", "train"]
    assert Phase("search") is Phase.SEARCH and Phase.TRAIN == "train"
    assert str(Phase.SEARCH) == f"{Phase.SEARCH}" == "search"
    assert json.dumps({"phase": Phase.TRAIN}) == '{"phase": "train"}'


def test_a_trainer_takes_a_plain_stage_string_and_rejects_an_unknown_one(tmp_path):
    trainer = Trainer(nn.Identity(), None, TrainConfig(), tmp_path, "train", {})
    assert trainer.stage is Phase.TRAIN
    with pytest.raises(SparseconnError, match=r"^Trainer stage 'serach' is unknown: expected one of search, train$"):
        Trainer(nn.Identity(), None, TrainConfig(), tmp_path, "serach", {})


def test_logs_and_checkpoints_hold_the_phase_as_a_plain_string(tmp_path):
    cfg = load_run_config(write_toy_config(tmp_path))
    run = tmp_path / "run"
    search(cfg, run, RunOptions(progress=False))
    for log in ("metrics.jsonl", "connections.jsonl"):
        phases = {json.loads(line)["phase"] for line in (run / log).read_text().splitlines()}
        assert phases == {"search"}, log
    stage = load_checkpoint(run / "checkpoints" / "last.pt")["stage"]
    assert type(stage) is str and stage == "search"
