"""The phase task's baselines through the engine: the shipped U-Net and SparseMask configs train with
--fast-dev-run, the classical pipeline as a parameter-free model, `evaluate.baselines` lists, and a
pipeline whose report has the U-Net, the SparseMask child and the classical pipeline as rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from typer.testing import CliRunner

from sparseconn.cli import app
from sparseconn.engine.baselines import task_baselines
from sparseconn.engine.config import load_run_config
from sparseconn.engine.inference import predict
from sparseconn.engine.loading import load_model, make_task
from sparseconn.errors import ConfigError, SparseconnError
from tests.phase_retrieval.test_cli import SIM64

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "tasks" / "phase_retrieval.yaml"
UNET = ROOT / "tasks" / "phase_retrieval_unet.yaml"
SPARSEMASK = ROOT / "tasks" / "phase_retrieval_sparsemask.yaml"
FAST = ["--fast-dev-run", "--device", "cpu", "--quiet", *SIM64]
CLASSICAL = ["--set", "model.name=classical", "--set", "model.params={}"]
runner = CliRunner()


def invoke(*args: object):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


@pytest.mark.parametrize("config", [UNET, SPARSEMASK])
def test_shipped_baseline_configs_use_the_demos_data_and_input(config):
    cfg = load_run_config(config)
    demo = load_run_config(DEMO)
    assert cfg.task == demo.task
    # the same evaluation, and the same task baselines; the demo's random control is a searched run's alone
    assert cfg.evaluate.model_copy(update={"baselines": []}) == demo.evaluate.model_copy(update={"baselines": []})
    task = make_task(demo)
    assert list(task_baselines(task, cfg.evaluate.baselines)) == list(task_baselines(task, demo.evaluate.baselines))
    assert (cfg.space.in_channels, cfg.space.input, cfg.space.head) == (1, demo.space.input, demo.space.head)
    assert cfg.model is not None and not cfg.train.inherit
    if config == UNET:
        assert cfg.model.params == {"width": 70.5}


@pytest.mark.parametrize(("config", "extra", "name", "connections"), [
    (UNET, ["--set", "model.params.width=8"], "U-Net", None),
    (SPARSEMASK, [], "SparseMask", 15),
])
def test_shipped_baseline_configs_train_with_fast_dev_run(tmp_path, config, extra, name, connections):
    run = tmp_path / "R"
    assert "training finished" in invoke("train", config, "--out", run, *FAST, *extra).output
    lm = load_model(run)
    assert lm.kind == "model" and lm.label(make_task(lm.cfg)) == name
    assert lm.net.num_connections == connections and (run / "architecture.json").is_file() == (connections == 15)
    x = torch.rand(1, 1, 50, 70)
    assert predict(lm.net, x).shape == (1, 1, 50, 70)


@pytest.mark.slow
def test_unet_at_table_i_width_fast_dev_run(tmp_path):
    """The README's smoke command on the shipped U-Net config as it is (37.7M parameters, 128x128)."""
    run = tmp_path / "U"
    invoke("train", UNET, "--fast-dev-run", "--out", run, "--device", "cpu", "--quiet")
    assert sum(p.numel() for p in load_model(run).net.parameters()) == pytest.approx(37.7e6, abs=0.2e6)


@pytest.fixture(scope="module")
def classical_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("classical") / "C"
    out = invoke("train", UNET, "--out", run, *FAST, *CLASSICAL).output
    assert "training finished (0 epochs)" in out
    return run


def cost_cells(table: str, model: str, bar: str, headers: tuple[str, ...]) -> list[str]:
    """The cells under ``headers`` in ``model``'s row of a printed (``│``) or Markdown (``|``) table."""
    lines = table.splitlines()
    header = next(line for line in lines if f"{bar} model " in line.replace("┃", "│"))
    names = [c.strip() for c in header.replace("┃", "│").split(bar)]
    row = next(line for line in lines if line.split(bar)[1:2] and line.split(bar)[1].strip() == model)
    cells = [c.strip() for c in row.split(bar)]
    return [cells[names.index(h)] for h in headers]


def test_classical_model_run_evaluates_and_infers(classical_run, tmp_path):
    """Zero epochs, both checkpoints written; its row equals the task's classical baseline row (same units)."""
    assert {p.name for p in (classical_run / "checkpoints").iterdir()} == {"best.pt", "last.pt"}
    lm = load_model(classical_run)
    assert lm.kind == "model" and dict(lm.net.named_parameters()) == {}
    printed = invoke("evaluate", classical_run, "--device", "cpu", "--size", "64", "64").output
    rows = {r["model"]: r for r in json.loads((classical_run / "evaluation.json").read_text())["rows"]}
    mine, task_row = rows["FT + unwrap (classical model)"], rows["FT + unwrap (classical)"]
    assert mine["psnr"] == pytest.approx(task_row["psnr"]) and mine["ssim"] == pytest.approx(task_row["ssim"])
    assert mine["params"] == 0 and mine["macs"] is None and mine["latency_ms"] > 0
    # Nothing learned, MACs not counted: "–" in the tables (as for a value not measured), not "0.00M".
    for name in ("FT + unwrap (classical model)", "FT + unwrap (classical)"):
        for table, bar in ((printed, "│"), ((classical_run / "report.md").read_text(), "|")):  # the same headers
            assert cost_cells(table, name, bar, ("params (M)", "MACs (G)")) == ["–", "–"], table
    holo = make_task(lm.cfg).example_input((64, 64))
    np.save(tmp_path / "h.npy", holo[0])
    invoke("infer", classical_run, tmp_path / "h.npy", "--out", tmp_path / "pred", "--device", "cpu")
    phase = tifffile.imread(tmp_path / "pred" / "h.tif")
    assert phase.shape == (64, 64) and 0 <= phase.min() and phase.max() <= lm.cfg.task.resolved_phase_range()
    # It runs in NumPy: a torch engine is a one-line error, not a torch.compile internal.
    r = runner.invoke(app, ["infer", str(classical_run), str(tmp_path / "h.npy"), "--out", str(tmp_path / "pred2"),
                            "--device", "cpu", "--engine", "compiled"])
    assert r.exit_code == 2 and r.output.strip().splitlines() == [
        "error: engine 'compiled' needs a model that runs in torch; ClassicalModel runs outside it (NumPy): use "
        "engine auto or reference"], r.output


def test_profile_of_the_classical_model_shows_no_parameter_count(tmp_path):
    """A model with nothing learned reads "–", not "0.000 M" (a number that looks measured)."""
    import yaml

    data = yaml.safe_load(UNET.read_text())
    data["model"] = {"name": "classical", "params": {}}
    (tmp_path / "classical.yaml").write_text(yaml.safe_dump(data))
    out = invoke("profile", tmp_path / "classical.yaml", "--size", "64", "64").output
    cells = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in out.splitlines()
             if line.count("│") == 3}
    assert cells["parameters"] == "– (nothing learned)" and cells["MACs"] == "not counted (NumPy)", out
    assert json.loads(invoke("profile", tmp_path / "classical.yaml", "--size", "64", "64", "--json").output)[
        "params"] == 0


def test_classical_model_refuses_export(classical_run, tmp_path):
    result = runner.invoke(app, ["export", str(classical_run), "--format", "torchscript", "--out",
                                 str(tmp_path / "c.pt"), "--size", "64", "64"])
    assert result.exit_code == 2 and "cannot be traced" in result.output and not (tmp_path / "c.pt").exists()


def test_task_baselines_by_name_and_alias():
    cfg = load_run_config(DEMO)
    task = make_task(cfg)
    every = task.baselines()
    assert list(task_baselines(task, True)) == list(every) and task_baselines(task, False) == {}
    assert list(task_baselines(task, ["zero", "FT + unwrap (classical)"])) == ["zero phase", "FT + unwrap (classical)"]
    with pytest.raises(ConfigError, match=r"unknown task baseline 'classic'; available: .*'classical'"):
        task_baselines(task, ["classic"])
    with pytest.raises(ConfigError, match="listed twice"):
        task_baselines(task, ["classical", "FT + unwrap (classical)"])
    with pytest.raises(SparseconnError, match="evaluate.baselines: unknown task baseline 'classic'"):
        load_run_config(DEMO, ["evaluate.baselines=[classic]"])


def test_pipeline_evaluates_model_baselines_as_rows(tmp_path):
    """The demo's pipeline with the U-Net, the SparseMask child and the classical pipeline listed: the models
    train in RUN/baselines/ and are rows (with params, MACs, connections, latency) in both tables and the
    report; the zero-phase floor, not listed, is absent."""
    run = tmp_path / "P"
    entries = ("[classical, {model: {name: unet, params: {width: 8}}}, "
               "{model: {name: sparsemask_child}, name: SparseMask child}]")
    invoke("pipeline", DEMO, "--out", run, *FAST, "--set", "evaluate.latency_size=[64,64]",
           "--set", f"evaluate.baselines={entries}")
    assert (run / "baselines" / "unet" / "checkpoints" / "best.pt").is_file()
    assert (run / "baselines" / "sparsemask-child" / "architecture.json").is_file()
    ev = json.loads((run / "evaluation.json").read_text())
    expected = ["super-PRNet", "NAS-PRNet", "U-Net", "SparseMask child", "FT + unwrap (classical)"]
    assert [r["model"] for r in ev["rows"]] == expected
    assert [r["model"] for r in ev["sets"]["cross-domain"]["rows"]] == expected
    rows = {r["model"]: r for r in ev["rows"]}
    assert rows["SparseMask child"]["connections"] == 15 and rows["U-Net"]["connections"] is None
    for name in ("U-Net", "SparseMask child"):
        assert rows[name]["params"] > 0 and rows[name]["macs"] > 0 and rows[name]["latency_ms"] > 0
        assert np.isfinite(rows[name]["psnr"])
    report = (run / "report.md").read_text()
    assert all(f"| {name} |" in report for name in expected) and "zero phase" not in report
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary["baselines"]) == {"unet", "sparsemask-child"}
