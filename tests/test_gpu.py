"""CUDA paths: a search + retraining step under AMP, bf16 inference, CUDA checkpoints read on the CPU.

Deselected by default (marker ``gpu``); run with ``pytest -m gpu`` on a machine with a CUDA device.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from sparseconn.cli import app
from sparseconn.config import load_space_config
from sparseconn.engine.inference import predict
from sparseconn.engine.runs import load_model
from sparseconn.network import build_supernet
from sparseconn.space import SearchSpace

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
CONFIG = Path(__file__).resolve().parents[1] / "tasks" / "phase_retrieval.yaml"


def test_pipeline_on_cuda_with_amp(tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["pipeline", str(CONFIG), "--fast-dev-run", "--device", "cuda", "--out", str(out),
                                 "--quiet"])
    assert r.exit_code == 0, r.output
    ev = json.loads((out / "evaluation.json").read_text())
    assert ev["device"].startswith("cuda")
    nets = [row for row in ev["rows"] if row["params"]]
    assert len(nets) == 2 and all(row["latency_ms"] > 0 for row in nets)
    records = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(rec["train_loss"])) for rec in records)
    lm = load_model(out)  # written on CUDA, read on the CPU
    assert next(lm.net.parameters()).device.type == "cpu"


def test_bf16_inference_matches_fp32() -> None:
    torch.manual_seed(0)
    net = build_supernet(SearchSpace(load_space_config(CONFIG))).cuda().eval()
    x = torch.rand(2, 1, 250, 333, device="cuda")
    y32 = predict(net, x)
    y16 = predict(net, x, amp=torch.bfloat16)
    assert y16.shape == y32.shape == (2, 1, 250, 333) and y16.dtype == torch.float32
    assert (y16 - y32).abs().max().item() < 0.05  # outputs are in [0, 1]
