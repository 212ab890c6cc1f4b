"""A user's fusion with parameters and edge op (tests/user_plugins.py) through the whole CLI: search, prune,
``train`` with ``train.inherit``, export to TorchScript and ONNX, with the results checked against the
library: the inherited child is the supernet restricted to its kept connections (eval mode), and each
exported file computes what the eager model computes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from sparseconn.architecture import Architecture
from sparseconn.engine.runs import load_model
from sparseconn.network import build_child
from tests.clitools import cli, ok, one_line_error
from tests.toy_task import TOY_YAML
from tests.user_plugins import DepthwiseSeparable, GateSum

USER_YAML = (TOY_YAML
             .replace("plugins: [tests.toy_task]", "plugins: [tests.toy_task, tests.user_plugins]")
             .replace("space:\n", "space:\n  edges: {op: dwsep}\n")
             .replace("decoder: {depth: {rule: constant, value: 8}}",
                      "decoder: {depth: {rule: constant, value: 8}, fusion: gate_sum}")
             .replace("train: {epochs: 2, batch_size: 4}", "train: {epochs: 2, batch_size: 4, inherit: true}"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Search (one tiny epoch), prune at the median weight (so that some connections go), train the child
    from the supernet's weights (train.inherit in the config)."""
    base = tmp_path_factory.mktemp("user_plugins")
    config = base / "user.yaml"
    config.write_text(USER_YAML)
    search = base / "R"
    ok("search", config, "--fast-dev-run", "--out", search, "--device", "cpu", "--quiet")
    weights = json.loads((search / "summary.json").read_text())["final_connections"]
    threshold = float(np.median(list(weights.values())))
    ok("prune", search, "--threshold", threshold)
    child = base / "T"
    ok("train", config, "--arch", search / "architecture.json", "--out", child, "--fast-dev-run", "--device", "cpu",
       "--quiet")
    return {"base": base, "search": search, "child": child}


def test_the_plugins_are_built_and_searched(runs):
    supernet = load_model(runs["search"]).net
    assert supernet.edges and all(isinstance(e, DepthwiseSeparable) and e.bn is not None
                                  for e in supernet.edges.values())
    assert all(isinstance(f, GateSum) for f in supernet.fusions.values())
    gates = torch.cat([f.gate.flatten() for f in supernet.fusions.values()])
    assert torch.count_nonzero(gates) > 0  # the search trained the fusion's own parameters


def test_the_inherited_child_is_the_supernet_restricted_to_its_kept_connections(runs):
    arch = Architecture.load(runs["search"] / "architecture.json")
    assert 0 < len(arch.connections) < len(arch.candidates)
    supernet = load_model(runs["search"]).net.eval()
    child = build_child(arch, inherit=supernet).eval()
    assert all(e.bn is None and e.pw.bias is not None for e in child.edges.values())
    kept = set(arch.connections)
    supernet.connections.set_({k: w for k, w in supernet.connections.snapshot().items() if k in kept} |
                              {k: 0.0 for k in supernet.keys if k not in kept})
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(child(x), supernet(x), rtol=1e-5, atol=1e-6)


def test_train_inherit_trains_a_child_of_the_plugins(runs):
    model = load_model(runs["child"])
    assert model.kind == "child" and model.checkpoint["edge_bias"] is True
    assert all(isinstance(e, DepthwiseSeparable) for e in model.net.edges.values())
    summary = json.loads((runs["child"] / "train_summary.json").read_text())
    assert np.isfinite(summary["best"]["value"])


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_matches_the_eager_child(runs, fmt):
    target = runs["base"] / "export" / ("model.ts.pt" if fmt == "torchscript" else "model.onnx")
    ok("export", runs["child"], "--format", fmt, "--out", target, "--size", "32", "32")
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = load_model(runs["child"]).net.eval()(x).numpy()
    if fmt == "torchscript":
        with torch.no_grad():
            got = torch.jit.load(str(target))(x).numpy()
    else:
        onnx.checker.check_model(onnx.load(str(target)))
        session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
        (got,) = session.run(None, {"input": x.numpy()})
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_a_plugin_off_the_contract_is_one_line_on_the_cli(tmp_path, monkeypatch):
    """An old-style fusion (a plain nn.Module) is refused when its module registers it."""
    (tmp_path / "old_style_fusion.py").write_text(
        "import torch\n"
        "from torch import nn\n"
        "from sparseconn.ops import register_fusion\n"
        "@register_fusion('old_max')\n"
        "class OldMax(nn.Module):\n"
        "    def __init__(self, n, c):\n"
        "        super().__init__()\n"
        "    def forward(self, xs, w=None):\n"
        "        return torch.stack(xs).amax(0)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = tmp_path / "old.yaml"
    config.write_text(TOY_YAML.replace("plugins: [tests.toy_task]", "plugins: [tests.toy_task, old_style_fusion]"))
    result = cli("search", config, "--fast-dev-run", "--out", tmp_path / "R", "--device", "cpu", "--quiet")
    one_line_error(result, "fusion 'old_max'", "OldMax", "sparseconn.ops.Fusion")
    assert not (tmp_path / "R").exists()


def test_train_inherit_names_a_fusion_that_cannot_inherit(tmp_path, monkeypatch):
    """A fusion with parameters but no inherit() searches fine; train.inherit then stops with one line naming it."""
    (tmp_path / "no_inherit_fusion.py").write_text(
        "import torch\n"
        "from torch import nn\n"
        "from sparseconn.ops import FUSIONS, WeightedSum, register_fusion\n"
        "class Scaled(WeightedSum):\n"
        "    def __init__(self, n, c):\n"
        "        super().__init__(n, c)\n"
        "        self.scale = nn.Parameter(torch.ones(c))\n"
        "    def fuse(self, xs):\n"
        "        return super().fuse(xs) * self.scale.view(1, -1, 1, 1)\n"
        "if 'scaled_no_inherit' not in FUSIONS:\n"
        "    register_fusion('scaled_no_inherit')(Scaled)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = tmp_path / "scaled.yaml"
    config.write_text(USER_YAML.replace("tests.user_plugins]", "tests.user_plugins, no_inherit_fusion]")
                      .replace("fusion: gate_sum", "fusion: scaled_no_inherit"))
    ok("search", config, "--fast-dev-run", "--out", tmp_path / "R", "--device", "cpu", "--quiet")
    ok("prune", tmp_path / "R")
    result = cli("train", config, "--arch", tmp_path / "R" / "architecture.json", "--out", tmp_path / "T",
                 "--fast-dev-run", "--device", "cpu", "--quiet")
    one_line_error(result, "fusion 'scaled_no_inherit' (Scaled)", "'scale'", "inherit(other, kept)")
    assert not (tmp_path / "T").exists()
