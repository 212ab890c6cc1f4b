"""Run folders written by an older sparseconn keep working.

``tests/fixtures/run_36d2709`` was written by commit 36d2709, before the structural clean-up (issue 11),
with ``tests/fixtures/run_36d2709/tiny.yaml``: a search run of a tiny phase-retrieval space (sideband
input, a two-stage encoder, two decoder stages, seven candidates), its ``architecture.json`` (five of
seven kept at threshold 0.5), a child retrained from the supernet's weights, one simulated hologram
and that child's prediction for it (``pred_before.tif``). Its config still carries ``checkpointing``
and ``plugins`` in the space section, where that version kept them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from sparseconn.architecture import Architecture
from sparseconn.engine.loading import load_model
from tests.clitools import ok

OLD = Path(__file__).parent / "fixtures" / "run_36d2709"


@pytest.fixture
def old(tmp_path: Path) -> Path:
    """A copy of the fixture (tests must not write into the repository)."""
    return Path(shutil.copytree(OLD, tmp_path / "old"))


def test_the_old_child_predicts_what_it_predicted(old: Path, tmp_path: Path) -> None:
    ok("infer", old / "child", old / "hologram.tif", "--out", tmp_path / "pred", "--engine", "reference")
    out = next((tmp_path / "pred").iterdir())
    before, after = tifffile.imread(old / "pred_before.tif"), tifffile.imread(out)
    assert before.shape == after.shape == (64, 64)
    # Within the fast path's fp32 parity bound (1e-4 of the output's scale): since ee94c16 the sideband
    # layer's eager transforms differ from the old ones by float32 rounding, which this child carries to
    # 1.6e-5 on 13 of 4096 pixels (the rest within 1e-5).
    np.testing.assert_allclose(after, before, atol=1e-4)
    assert np.mean(np.abs(after - before) > 1e-5) < 0.01


def test_the_old_checkpoints_load_as_models(old: Path) -> None:
    child = load_model(old / "child")
    assert child.kind == "child"
    supernet = load_model(old / "search")
    assert supernet.kind == "supernet"
    x = torch.from_numpy(tifffile.imread(old / "hologram.tif"))[None, None]
    with torch.no_grad():
        assert child.net(x).shape == supernet.net(x).shape == (1, 1, 64, 64)


def test_the_old_search_prunes_to_the_same_architecture(old: Path, tmp_path: Path) -> None:
    out = tmp_path / "architecture.json"
    ok("prune", old / "search" / "checkpoints" / "best.pt", "--out", out)
    again, before = Architecture.load(out), Architecture.load(old / "search" / "architecture.json")
    assert sorted(again.connections) == sorted(before.connections)
    assert len(again.connections) == 5


def test_the_old_architecture_trains_and_evaluates(old: Path, tmp_path: Path) -> None:
    arch = old / "search" / "architecture.json"
    with pytest.warns(FutureWarning, match="space.checkpointing is a run-level setting"):  # moved in 0.2
        ok("train", old / "tiny.yaml", "--arch", arch, "--out", tmp_path / "again", "--fast-dev-run", "--quiet")
    ok("evaluate", old / "child", "--no-latency")
    evaluation = json.loads((old / "child" / "evaluation.json").read_text())
    child = evaluation["rows"][0]
    assert child["connections"] == 5 and child["psnr"] > 20


def test_the_command_warns_in_one_line_that_a_key_moved(old: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "sparseconn", "train", str(old / "tiny.yaml"), "--print-config"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [f"warning: {old / 'tiny.yaml'}: space.checkpointing is a run-level "
                                        "setting since sparseconn 0.2: write it as checkpointing at the top of "
                                        "the config"]
    assert done.stdout.startswith("plugins: []\ncheckpointing: false\n")
