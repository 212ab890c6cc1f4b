"""Fixed models (``sparseconn.models``): the U-Net's size, any-size inference, SparseMask's published child,
the config's ``model`` and ``evaluate.baselines``, and a fixed model through train / evaluate / infer /
export on the toy task. The phase task's baselines (U-Net and SparseMask YAMLs, the classical model, a
pipeline with model rows) are in ``tests/phase_retrieval/test_models.py``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sparseconn.config import HeadConfig, InputConfig, SpaceConfig, load_space_config
from sparseconn.engine.config import ModelBaseline, RunBaseline, RunConfig, load_run_config
from sparseconn.engine.inference import max_stride, predict
from sparseconn.engine.loading import load_model
from sparseconn.errors import ConfigError, SparseconnError
from sparseconn.inputs import Standardise
from sparseconn.models import (
    MODELS,
    SPARSEMASK_CHILD,
    UNET_WIDTH_TABLE_I,
    build_model,
    check_model_params,
    sparsemask_space,
)
from sparseconn.profiling import count_params
from tests.clitools import cli, ok, one_line_error
from tests.toy_task import TOY_YAML

ROOT = Path(__file__).resolve().parents[1]
TOY_HEAD = HeadConfig(name="toy_head")
UNET_TOY_YAML = TOY_YAML + "model: {name: unet, params: {width: 4}}\n"


# -- the U-Net ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("width", "millions", "tolerance"), [(64, 31.0, 0.1), (UNET_WIDTH_TABLE_I, 37.7, 0.2)])
def test_unet_parameters(width, millions, tolerance):
    """Ronneberger's width 64: 31.0M (docs/reference.md §5); the documented width: Table I's 37.7M (1 in, 1 out)."""
    net = build_model("unet", {"width": width}, SpaceConfig(in_channels=1, head=None))
    assert abs(count_params(net) / 1e6 - millions) <= tolerance, count_params(net)
    assert net.stride == 16 and net.num_connections is None


def test_unet_takes_the_runs_input_op_and_head():
    space = SpaceConfig(in_channels=2, input=InputConfig(name="standardise"), head=TOY_HEAD)
    net = build_model("unet", {"width": 4}, space)
    assert isinstance(net.input_op, Standardise) and net.down[0][0].in_channels == 2
    with torch.no_grad():
        y = net.eval()(torch.rand(1, 2, 32, 32))
    assert y.shape == (1, 1, 32, 32) and 0 <= float(y.min()) and float(y.max()) <= 1  # the toy head's sigmoid


def test_unet_builds_its_head_through_the_head_contract():
    """Bad head params are the contract's one-line error, not a TypeError from the head's constructor."""
    space = SpaceConfig(in_channels=1, head=HeadConfig(name="toy_head", params={"classes": 3}))
    with pytest.raises(ConfigError, match=r"^head 'toy_head' has no parameter 'classes'; valid: out_channels$"):
        build_model("unet", {"width": 4}, space)
    space = SpaceConfig(in_channels=1, head=HeadConfig(name="toy_head", params={"out_channels": 2}))
    assert build_model("unet", {"width": 4}, space).head.out_channels == 2


@pytest.mark.parametrize("size", [(37, 45), (17, 64), (33, 31)])
@pytest.mark.parametrize("name", ["unet", "sparsemask_child"])
def test_output_size_equals_input_size_through_predict(name, size):
    params = {"width": 4} if name == "unet" else {"width": 0.35}
    net = build_model(name, params, SpaceConfig(in_channels=1, head=TOY_HEAD)).eval()
    assert max_stride(net) == net.stride == (16 if name == "unet" else 32)
    x = torch.rand(2, 1, *size)
    y = predict(net, x)
    assert y.shape == (2, 1, *size) and torch.isfinite(y).all()


def test_unet_runs_sizes_that_are_not_multiples_of_its_stride():
    """Padded after each up-sampling, so the module itself keeps any size (predict pads anyway)."""
    net = build_model("unet", {"width": 4}, SpaceConfig(in_channels=1, head=None)).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 1, 37, 45)).shape == (1, 1, 37, 45)


# -- SparseMask's published child -----------------------------------------------------------------------

def test_sparsemask_child_has_the_15_published_connections():
    net = build_model("sparsemask_child", {}, SpaceConfig(in_channels=1, head=TOY_HEAD))
    assert net.num_connections == 15 == len(net.architecture.connections)
    assert {d: tuple(net.inputs[d]) for d in net.stage_order} == {d: tuple(s) for d, s in SPARSEMASK_CHILD.items()}
    assert net.stage_order == ["D1", "D2", "D3", "D8"] and net.output == "D8"
    assert len(net.architecture.candidates) == 90  # pruned from SparseMask's 90 candidates
    assert net.display_name == "SparseMask" and net.stride == 32


def test_sparsemask_space_is_the_segmentation_yaml_space_with_the_runs_input_and_head():
    seg = load_space_config(ROOT / "tasks" / "segmentation.yaml")
    run = SpaceConfig(in_channels=1, input=InputConfig(name="standardise"), head=TOY_HEAD)
    ours = sparsemask_space(run)
    mine = {"in_channels", "input", "head"}
    assert ours.model_dump(exclude=mine) == seg.model_dump(exclude=mine)
    assert (ours.in_channels, ours.input, ours.head) == (1, run.input, TOY_HEAD)
    net = build_model("sparsemask_child", {}, run)
    assert isinstance(net.input_op, Standardise) and net.encoder.in_channels == 1


# -- registry and config ---------------------------------------------------------------------------------

def test_unknown_model_name_and_parameter():
    assert {"unet", "sparsemask_child", "architecture"} <= set(MODELS.names())
    with pytest.raises(SparseconnError, match=r"unknown model 'unte' \(did you mean 'unet'\?\); available: .*unet"):
        build_model("unte", {}, SpaceConfig())
    with pytest.raises(ConfigError, match="model 'unet' has no parameter 'widht'; valid: width"):
        build_model("unet", {"widht": 8}, SpaceConfig())
    with pytest.raises(ConfigError, match="width must be a number"):
        build_model("unet", {"width": -3}, SpaceConfig())
    with pytest.raises(ConfigError, match="model 'architecture' needs parameter 'path'"):
        build_model("architecture", {}, SpaceConfig())
    with pytest.raises(SparseconnError, match="nope.json"):
        build_model("architecture", {"path": "nope.json"}, SpaceConfig())


def test_a_models_task_is_given_by_the_run_not_by_its_params():
    @MODELS.register("task_model")
    def task_model(space: SpaceConfig, task=None, depth: int = 1) -> torch.nn.Module:
        raise AssertionError("not built")

    try:
        with pytest.raises(ConfigError, match=r"^model 'task_model' has no parameter 'task'; valid: depth$"):
            check_model_params("task_model", {"task": "toy"})
        check_model_params("task_model", {"depth": 2})
    finally:
        MODELS.unregister("task_model")


def test_config_model_and_baseline_entries_validate_and_dump(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(UNET_TOY_YAML)
    cfg = load_run_config(path, ["evaluate.baselines=[{model: {name: unet}, name: Big U}, {run: runs/x}]"])
    assert cfg.model is not None and cfg.model.name == "unet" and cfg.model.params == {"width": 4}
    big, run = cfg.evaluate.baselines
    assert isinstance(big, ModelBaseline) and big.name == "Big U" and isinstance(run, RunBaseline)
    assert RunConfig.model_validate(json.loads(json.dumps(cfg.model_dump(mode="json")))) == cfg  # checkpoint trip
    for bad, names in [("[{modle: 1}]", ("entry 0", "modle", "expected a task baseline name")),
                       ("[{model: {name: unet}, run: x}]", ("entry 0",)),
                       ("[{model: {name: unet, widht: 1}}]", ("entry 0", "widht")),
                       ("[{model: {name: unte}}]", ("evaluate.baselines.0.model", "unte", "available")),
                       ("[3]", ("entry 0", "3"))]:
        with pytest.raises(ConfigError) as info:
            load_run_config(path, [f"evaluate.baselines={bad}"])
        assert all(str(n) in str(info.value) for n in names), (bad, str(info.value))
        assert len(str(info.value).splitlines()) == 1
    with pytest.raises(ConfigError, match="model: unknown model 'unte'"):
        load_run_config(path, ["model.name=unte"])


# -- a fixed model through the engine (toy task) --------------------------------------------------------

@pytest.fixture(scope="module")
def unet_run(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("models")
    (base / "unet.yaml").write_text(UNET_TOY_YAML)
    run = base / "U"
    result = ok("train", base / "unet.yaml", "--fast-dev-run", "--out", run, "--device", "cpu", "--quiet")
    assert "training finished" in result.output
    return run


def test_train_writes_a_model_checkpoint_that_rebuilds(unet_run):
    lm = load_model(unet_run)
    ckpt = lm.checkpoint
    assert lm.kind == ckpt["kind"] == "model" and ckpt["model_config"] == {"name": "unet", "params": {"width": 4}}
    assert ckpt["display_name"] == "U-Net" and lm.net.channels == [4, 8, 16, 32, 64]
    assert (unet_run / "checkpoints" / "last.pt").is_file() and (unet_run / "train_summary.json").is_file()
    assert not (unet_run / "architecture.json").exists()


def test_evaluate_infer_export_a_model_run(unet_run, tmp_path):
    ok("evaluate", unet_run, "--device", "cpu", "--size", "32", "32")
    (row,) = json.loads((unet_run / "evaluation.json").read_text())["rows"]
    assert row["model"] == "U-Net" and row["connections"] is None and row["macs"] > 0 and row["latency_ms"] > 0
    net = load_model(unet_run).net
    assert row["params"] == count_params(net)
    x = np.random.default_rng(0).random((37, 45), dtype=np.float32)
    np.save(tmp_path / "odd.npy", x)
    ok("infer", unet_run, tmp_path / "odd.npy", "--out", tmp_path / "pred", "--device", "cpu")
    pred = np.load(tmp_path / "pred" / "odd.npy")
    expected = predict(net, torch.from_numpy(x)[None, None])[0].numpy()
    assert pred.shape == (1, 37, 45)
    np.testing.assert_allclose(pred, expected, rtol=1e-5, atol=1e-6)
    target = tmp_path / "u.ts.pt"
    ok("export", unet_run, "--format", "torchscript", "--out", target, "--size", "48", "48")
    x48 = torch.rand(1, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(target))(x48), net(x48), rtol=1e-5, atol=1e-6)


def test_a_trained_run_is_a_baseline_row(unet_run, tmp_path):
    """``{run: PATH}``: another trained run scored beside this run's model; a name collision gets the folder."""
    cfg = tmp_path / "other.yaml"
    cfg.write_text(TOY_YAML + "model: {name: unet, params: {width: 2}}\n"
                   f"evaluate: {{latency_size: [32, 32], latency_runs: 1, baselines: [{{run: {unet_run}}}]}}\n")
    other = tmp_path / "O"
    ok("train", cfg, "--fast-dev-run", "--out", other, "--device", "cpu", "--quiet")
    ok("evaluate", other, "--device", "cpu", "--no-latency")
    rows = json.loads((other / "evaluation.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["U-Net", f"U-Net ({unet_run.name})"]
    assert rows[1]["params"] == count_params(load_model(unet_run).net)


def test_bad_model_options_are_one_line_errors(unet_run, tmp_path):
    cfg = tmp_path / "unet.yaml"
    cfg.write_text(UNET_TOY_YAML)
    never = tmp_path / "never"
    one_line_error(cli("train", cfg, "--set", "model.name=unte", "--out", never, "--device", "cpu"),
                   "unte", "unet", "sparsemask_child", "architecture")
    one_line_error(cli("train", cfg, "--arch", unet_run / "architecture.json", "--out", never), "--arch", "unet")
    one_line_error(cli("train", cfg, "--set", "model=null", "--out", never), "--arch", "model:")
    one_line_error(cli("search", cfg, "--out", never, "--device", "cpu"), "model", "unet", "sparseconn train")
    one_line_error(cli("pipeline", cfg, "--out", never, "--device", "cpu"), "model", "unet")
    one_line_error(cli("train", cfg, "--set", "train.inherit=true", "--out", never, "--device", "cpu"),
                   "train.inherit")
    assert not never.exists()


def test_architecture_model_rebuilds_from_its_checkpoint_alone(tmp_path):
    """`architecture`: any architecture.json as a fixed model; the checkpoint keeps the architecture, so the
    run still loads after the source file is gone."""
    from sparseconn.pruning import derive
    from sparseconn.space import SearchSpace
    from tests.conftest import tiny_config

    space_cfg = tiny_config(head={"name": "toy_head"}, plugins=["tests.toy_task"])
    space = SearchSpace(space_cfg)
    source = derive(space.graph, space_cfg, {k: float(k in {"E1->D1", "G->D1", "E2->D2", "D2->D1"})
                                            for k in space.candidates}).save(tmp_path / "src" / "architecture.json")
    cfg = tmp_path / "arch.yaml"
    cfg.write_text(TOY_YAML + f"model: {{name: architecture, params: {{path: {source}}}}}\n")
    run = tmp_path / "A"
    ok("train", cfg, "--fast-dev-run", "--out", run, "--device", "cpu", "--quiet")
    source.unlink()
    lm = load_model(run)
    assert lm.kind == "model" and lm.net.num_connections == 4 and lm.checkpoint["display_name"] == "child (src)"
    assert (run / "architecture.json").is_file()
