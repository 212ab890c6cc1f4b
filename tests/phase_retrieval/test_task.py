"""The registered ``phase_retrieval`` task: config, data sets, loss, metrics, I/O, baseline, pictures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from sparseconn_tasks.phase_retrieval.losses import mixge
from sparseconn_tasks.phase_retrieval.metrics import psnr
from sparseconn_tasks.phase_retrieval.prepare import write_synthetic
from sparseconn_tasks.phase_retrieval.simulate import SimConfig
from sparseconn_tasks.phase_retrieval.task import PhaseRetrievalConfig, PhaseRetrievalTask

from sparseconn.config import load_space_config
from sparseconn.engine.config import load_run_config, validate_run_config
from sparseconn.engine.inference import predict
from sparseconn.errors import ConfigError
from sparseconn.network import build_supernet
from sparseconn.space import SearchSpace
from sparseconn.task import TASKS

ROOT = Path(__file__).resolve().parents[2]
TINY_SIM = {"size": 64, "n_cells": (1, 2), "semi_axis": (8.0, 14.0), "carrier_period": 3.0, "tilt": 0.5,
            "defocus": 0.5, "astigmatism": 0.3, "coma": 0.2}
SMALL = {"train_size": 4, "val_size": 2, "test_size": 2, "sim": TINY_SIM}


def make_task(**overrides) -> PhaseRetrievalTask:
    return PhaseRetrievalTask(PhaseRetrievalConfig.model_validate({"data": SMALL, **overrides}))


@pytest.mark.parametrize("name", ["phase_retrieval.yaml", "phase_retrieval_paper.yaml"])
def test_shipped_configs_validate(name: str) -> None:
    cfg = load_run_config(ROOT / "tasks" / name)
    task_cfg = cfg.task
    assert isinstance(task_cfg, PhaseRetrievalConfig)
    assert TASKS.get("phase_retrieval") is PhaseRetrievalTask
    regs = {r.name: r for r in cfg.search.regularizers}
    assert regs["binary_entropy"].coef == 5e-3 and regs["global_sparsity"].coef == 5e-5  # the paper's α, β
    assert cfg.prune.threshold == 1e-3


@pytest.mark.parametrize(("task", "match"), [
    ({"data": {"source": "folder"}}, r"task\.data.*needs root"),
    ({"loss": {"operator": "sobol"}}, r"task\.loss.*'sobol'.*sobel"),
    ({"data": {"sim": {"carrier_period": 1.5}}}, r"task\.data\.sim.*past Nyquist"),
    ({"dataa": {}}, r"task\.dataa"),
    ({"phase_range": -1}, r"task\.phase_range"),
])
def test_bad_task_config_names_the_key(task: dict, match: str) -> None:
    space = load_space_config(ROOT / "tasks" / "phase_retrieval.yaml").model_dump(mode="json")
    data = {"task": {"name": "phase_retrieval", **task}, "space": space}
    with pytest.raises(ConfigError, match=match):
        validate_run_config(data, "cfg.yaml")


def test_synthetic_splits_are_deterministic_and_test_set_ignores_run_seed() -> None:
    task = make_task()
    a, b = task.datasets(0), task.datasets(1)
    assert len(a["train"]) == 4 and len(a["val"]) == 2 and len(a["test"]) == 2
    item = a["train"][0]
    assert item["input"].shape == (1, 64, 64) and item["target"].shape == (1, 64, 64)
    assert 0.0 <= float(item["target"].min()) and float(item["target"].max()) <= 1.0
    assert not torch.equal(a["train"][0]["input"], b["train"][0]["input"])  # training follows the run seed
    assert torch.equal(a["test"][1]["input"], b["test"][1]["input"])  # the test set does not
    assert not torch.equal(a["val"][0]["input"], a["test"][0]["input"])
    assert a["train"][0] is a["train"][0]  # cached: made once


def test_folder_source_reads_the_layout(tmp_path: Path) -> None:
    write_synthetic(tmp_path, 10, SimConfig(**TINY_SIM), seed=3)
    task = make_task(data={"source": "folder", "root": str(tmp_path), "crop": 32})
    assert task.phase_range == 12.0  # from meta.json
    ds = task.datasets(0)
    assert [len(ds[s]) for s in ("train", "val", "test")] == [8, 1, 1]
    assert ds["train"][0]["input"].shape == (1, 32, 32)  # random training crop
    assert ds["test"][0]["input"].shape == (1, 64, 64)  # full-size evaluation


def test_loss_and_metrics() -> None:
    task = make_task(loss={"lam": 0.3, "operator": "scharr"})
    g = torch.Generator().manual_seed(0)
    out, target = torch.rand(2, 1, 16, 16, generator=g), torch.rand(2, 1, 16, 16, generator=g)
    batch = {"target": target}
    assert torch.allclose(task.loss(out, batch), mixge(out, target, lam=0.3, operator="scharr"))
    m = task.metrics(out, batch)
    assert set(m) == set(task.metric_names)
    assert m["psnr"] == pytest.approx(float(psnr(out, target)), rel=1e-6)
    per_pixel = ((out - target) ** 2).mean(dim=(1, 2, 3)).sqrt() * 12.0
    assert m["rmse_rad"] == pytest.approx(float(per_pixel.mean()), rel=1e-5)
    assert task.metrics(target, batch)["rmse_rad"] == 0.0


def test_infer_io_writes_radians(tmp_path: Path) -> None:
    task = make_task(phase_range=10.0)
    holo = (np.arange(12 * 7, dtype=np.uint16).reshape(12, 7) * 700)
    tifffile.imwrite(tmp_path / "h.tif", holo)
    x = task.read_input(tmp_path / "h.tif")
    assert x.shape == (1, 12, 7) and x.dtype == np.float32
    np.testing.assert_allclose(x[0], holo / 65535.0, rtol=1e-6)
    path = task.write_output(np.full((1, 12, 7), 0.25, np.float32), tmp_path / "out" / "h.png")
    assert path.suffix == ".tif"
    phase = tifffile.imread(path)
    assert phase.dtype == np.float32 and phase.shape == (12, 7)
    np.testing.assert_allclose(phase, 2.5)


def test_classical_baseline_recovers_the_test_phase() -> None:
    task = make_task()
    item = task.datasets(0)["test"][0]
    baselines = task.baselines()
    assert list(baselines) == ["FT + unwrap (classical)", "FT + unwrap + background (classical)", "zero phase"]
    plain, with_bg = baselines["FT + unwrap (classical)"], baselines["FT + unwrap + background (classical)"]
    assert with_bg.needs == ("background",) and "background" in item
    target = item["target"].numpy()
    for out in (plain(item["input"].numpy()), with_bg(item["input"].numpy(), background=item["background"].numpy())):
        assert out.shape == (1, 64, 64)
        rmse = float(np.sqrt(np.mean((out - target) ** 2))) * task.phase_range
        assert rmse < 0.3, rmse
    assert not baselines["zero phase"](item["input"].numpy()).any()
    assert make_task(baseline={"classical": False, "zero": False}).baselines() == {}


def test_example_input_and_panels_at_odd_sizes() -> None:
    task = make_task()
    x = task.example_input((250, 333))
    assert x.shape == (1, 250, 333) and np.isfinite(x).all() and x.std() > 0.01
    item = task.datasets(0)["test"][0]
    batch = {k: (v[None] if torch.is_tensor(v) else [v]) for k, v in item.items()}
    fig = task.panels(batch, {"NAS-PRNet": item["target"].numpy() * 0.9}, {"NAS-PRNet": "PSNR 30"})
    assert len(fig.axes) >= 4


def test_super_prnet_evaluates_odd_sizes_at_the_input_size() -> None:
    net = build_supernet(SearchSpace(load_space_config(ROOT / "tasks" / "phase_retrieval.yaml"))).eval()
    x = torch.from_numpy(make_task().example_input((250, 333)))[None]  # (1, 1, 250, 333)
    y = predict(net, x)
    assert y.shape == (1, 1, 250, 333)
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0  # ReLU6 / 6 head
