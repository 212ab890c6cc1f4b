"""The shipped segmentation config from the command line: the fast-dev pipeline, then infer at an odd size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from sparseconn.cli import app

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "tasks" / "segmentation.yaml"

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("seg") / "R"
    r = invoke("pipeline", CONFIG, "--fast-dev-run", "--out", run, "--device", "cpu", "--quiet")
    assert r.exit_code == 0, r.output
    return run


def test_pipeline_fast_dev_run_scores_supernet_and_child(pipeline_run: Path) -> None:
    ev = json.loads((pipeline_run / "evaluation.json").read_text())
    rows = {row["model"]: row for row in ev["rows"]}
    assert list(rows) == ["SparseMask supernet", "SparseMask child", "random child (seed 0)"]
    for row in rows.values():
        assert np.isfinite(row["miou"]) and 0.0 <= row["miou"] <= 1.0
        assert np.isfinite(row["pixel_acc"]) and 0.0 <= row["pixel_acc"] <= 1.0
    rec = json.loads((pipeline_run / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"val_miou", "val_pixel_acc"} <= set(rec)
    arch = json.loads((pipeline_run / "architecture.json").read_text())
    assert len(arch["candidates"]) == 90
    assert (pipeline_run / "figures" / "panels.png").is_file()


def test_infer_writes_a_label_png_of_the_input_size(pipeline_run: Path, tmp_path: Path) -> None:
    rgb = np.random.default_rng(2).integers(0, 255, (45, 61, 3), dtype=np.uint8)  # an odd size
    Image.fromarray(rgb).save(tmp_path / "img.png")
    r = invoke("infer", pipeline_run, tmp_path / "img.png", "--out", tmp_path / "D", "--device", "cpu")
    assert r.exit_code == 0, r.output
    with Image.open(tmp_path / "D" / "img.png") as im:
        assert im.mode == "P" and im.size == (61, 45)
        labels = np.asarray(im)
    assert labels.dtype == np.uint8 and int(labels.max()) < 6


def test_infer_on_a_folder_of_jpegs(pipeline_run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, size in enumerate([(40, 52), (33, 47)]):
        rgb = np.random.default_rng(i).integers(0, 255, (*size, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(folder / f"2007_00{i}.v2.jpg", quality=90)  # a dot inside the name
    (folder / "notes.txt").write_text("not an image")
    r = invoke("infer", pipeline_run, folder, "--out", tmp_path / "D", "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "D").iterdir()) == ["2007_000.v2.png", "2007_001.v2.png"]
    with Image.open(tmp_path / "D" / "2007_001.v2.png") as im:
        assert im.size == (47, 33)
