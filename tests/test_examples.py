"""Every example runs with the command written in its header (``--fast-dev-run`` sized), from the
repository root as a user would run it, with its run folders in a temporary directory."""

from __future__ import annotations

import ast
import json
import shlex
from pathlib import Path

import pytest

from tests.clitools import ok

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def header_commands(path: Path) -> list[list[str]]:
    """The ``sparseconn ...`` command lines in a module's docstring or a YAML file's comment header."""
    if path.suffix == ".py":
        text = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    else:
        text = "\n".join(line.lstrip("# ") for line in path.read_text(encoding="utf-8").splitlines()
                         if line.startswith("#"))
    return [shlex.split(line.strip())[1:] for line in text.splitlines() if line.strip().startswith("sparseconn ")]


def run_in(tmp_path: Path, args: list[str]) -> None:
    """Run one header command with every ``--out`` and run folder under ``tmp_path``."""
    moved = [str(tmp_path / a) if a.startswith("runs/") else a for a in args]
    ok(*moved)


@pytest.fixture
def at_root(monkeypatch) -> Path:
    monkeypatch.chdir(ROOT)
    return ROOT


def test_custom_space_searches_prunes_and_retrains_with_its_plugins(at_root, tmp_path):
    commands = header_commands(EXAMPLES / "custom_space.py")
    assert commands[0][:2] == ["search", "examples/custom_space.yaml"] and "--fast-dev-run" in commands[0]
    run_in(tmp_path, commands[0])
    run = tmp_path / "runs" / "custom"
    ok("prune", run, "--threshold", "0.5")
    ok("train", "examples/custom_space.yaml", "--arch", run / "architecture.json", "--fast-dev-run",
       "--out", tmp_path / "child", "--quiet")
    from sparseconn.engine.loading import load_model

    child = load_model(tmp_path / "child")
    assert type(child.net.encoder).__name__ == "ResNetSmall"
    assert {type(f).__name__ for f in child.net.fusions.values()} == {"AttentionGate"}
    assert child.net.num_connections < 17  # pruned from the ladder's 17 candidates


def test_denoise_task_runs_its_pipeline_and_infers_a_folder(at_root, tmp_path):
    import numpy as np

    commands = header_commands(EXAMPLES / "denoise_task.py")
    assert commands[0][:2] == ["pipeline", "examples/denoise_task.yaml"] and "--fast-dev-run" in commands[0]
    run_in(tmp_path, commands[0])
    run = tmp_path / "runs" / "denoise"
    rows = {r["model"]: r for r in json.loads((run / "evaluation.json").read_text())["rows"]}
    assert "Gaussian blur (σ = 1 px)" in rows and all(np.isfinite(r["psnr"]) for r in rows.values())
    noisy = tmp_path / "noisy"
    noisy.mkdir()
    for i in range(2):
        np.save(noisy / f"n{i}.npy", np.random.default_rng(i).random((48, 40), dtype=np.float32))
    ok("infer", run, noisy, "--out", tmp_path / "clean")
    out = np.load(tmp_path / "clean" / "n1.npy")
    assert out.shape == (1, 48, 40) and 0 <= out.min() and out.max() <= 1


def test_own_holograms_makes_truth_trains_and_infers_a_folder(tmp_path):
    import subprocess
    import sys

    import tifffile

    text = ast.get_docstring(ast.parse((EXAMPLES / "own_holograms.py").read_text(encoding="utf-8"))) or ""
    line = next(x.strip() for x in text.splitlines() if x.strip().startswith("python examples/own_holograms.py"))
    args = [str(tmp_path / a) if a.startswith("runs/") else a for a in shlex.split(line)[1:]]
    assert "--fast-dev-run" in args and "--demo" in args
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "$ sparseconn data truth" in done.stdout and "$ sparseconn infer" in done.stdout
    raw = sorted((tmp_path / "runs" / "own" / "raw" / "interferograms").iterdir())
    phases = sorted((tmp_path / "runs" / "own" / "phases").iterdir())
    assert [p.stem for p in phases] == [p.stem for p in raw] and len(raw) == 12
    assert tifffile.imread(phases[0]).shape == tifffile.imread(raw[0]).shape == (64, 64)


def test_python_api_example_runs_without_the_cli(tmp_path, capsys):
    import runpy

    text = ast.get_docstring(ast.parse((EXAMPLES / "python_api.py").read_text(encoding="utf-8"))) or ""
    line = next(x.strip() for x in text.splitlines() if x.strip().startswith("python examples/python_api.py"))
    args = [str(tmp_path / a) if a.startswith("runs/") else a for a in shlex.split(line)[2:]]
    assert "--fast-dev-run" in args
    module = runpy.run_path(str(EXAMPLES / "python_api.py"), run_name="example")
    module["main"](args)
    out = capsys.readouterr().out
    assert "epoch 0: val PSNR" in out and "of 7" in out and "FT + unwrap (classical)" in out
    assert (tmp_path / "runs" / "api" / "child" / "evaluation.json").is_file()


def test_exposure_check_runs_on_a_trained_phase_model(tmp_path):
    """Its header command takes a trained run: the fixture's tiny child (tests/fixtures/run_36d2709)."""
    import subprocess
    import sys

    from tests.test_old_runs import OLD

    text = ast.get_docstring(ast.parse((EXAMPLES / "exposure_check.py").read_text(encoding="utf-8"))) or ""
    assert "python examples/exposure_check.py runs/" in text
    done = subprocess.run([sys.executable, "examples/exposure_check.py", str(OLD / "child"), "-n", "2"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = dict(line.split(" RMSE ") for line in done.stdout.strip().splitlines())
    assert set(map(str.strip, rows)) == {"gain x0.3", "gain x3", "offset +0.2", "8-bit", "12-bit", "16-bit"}
    assert all(0 <= float(v.split()[0]) < 12 for v in rows.values())


def test_sparseconn_list_shows_the_example_plugins(at_root):
    out = ok("list", "--config", "examples/custom_space.yaml").output
    for kind, name in (("encoder", "resnet_small"), ("fusion", "attention_gate"), ("edge rule", "ladder")):
        line = next((x for x in out.splitlines() if name in x), "")
        assert "config plug-in examples.custom_space" in line, (kind, name, out)
