from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from sparseconn.cli import app
from sparseconn.pruning import derive
from sparseconn.space import SearchSpace
from tests.conftest import tiny_config

runner = CliRunner()


def _yaml(tmp_path, text: str):
    p = tmp_path / "space.yaml"
    p.write_text(text)
    return p


TINY = """
space:
  encoder: {name: tiny, params: {channels: [8, 8], strides: [2, 4]}}
  ground: [{name: G, source: -1, size: 1}]
  decoder: {depth: {rule: constant, value: 8}}
"""


def test_profile_json_on_config_and_architecture(tmp_path):
    res = runner.invoke(app, ["profile", str(_yaml(tmp_path, TINY)), "--size", "32", "32", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["model"] == "supernet" and out["connections"] == 7 and out["params"] > 0 and out["macs"] > 0
    cfg = tiny_config()
    space = SearchSpace(cfg)
    arch = derive(space.graph, cfg, {k: float(k in {"E1->D1", "G->D1"}) for k in space.candidates})
    path = arch.save(tmp_path / "architecture.json")
    res = runner.invoke(app, ["profile", str(path), "--size", "32", "32", "--json", "--latency", "--runs", "2"])
    out = json.loads(res.stdout)
    assert out["model"] == "child" and out["connections"] == 2 and out["latency_ms"] > 0
    res = runner.invoke(app, ["profile", str(path), "--size", "32", "32"])
    assert res.exit_code == 0 and "connections" in res.stdout


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (TINY.replace("constant", "constnt"), "decoder.depth.rule: Input should be"),
        (TINY.replace("name: tiny", "name: mobilenet"), "unknown encoder 'mobilenet'"),
        (TINY + "  edges: {fusion: concat}\n", "space.edges.fusion: unknown key 'fusion'"),
        (TINY.replace("source: -1", "source: 4"), "G: ground source feature 4 does not exist"),
        (TINY.replace("strides: [2, 4]", "strides: [2, 3]"), "stride"),
        (TINY + "  edges: {rule: dens}\n", "unknown edge rule 'dens'"),
    ],
)
def test_profile_bad_input_is_one_line_exit_2(tmp_path, text, message):
    res = runner.invoke(app, ["profile", str(_yaml(tmp_path, text)), "--size", "32", "32"])
    assert res.exit_code == 2
    assert message in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output


def test_profile_malformed_architecture(tmp_path):
    p = tmp_path / "architecture.json"
    p.write_text(json.dumps({"format_version": 1, "nodes": [], "edges": [{"dst": "D1"}]}))
    res = runner.invoke(app, ["profile", str(p)])
    assert res.exit_code == 2 and "architecture.json: space: Field required" in res.stderr


def test_profile_a_fixed_model_config(tmp_path):
    """A run config that sets `model:` profiles that model (here the U-Net at width 64: 31.0M parameters)."""
    from tests.toy_task import TOY_YAML

    path = tmp_path / "unet.yaml"
    path.write_text(TOY_YAML + "model: {name: unet, params: {width: 64}}\n")
    res = runner.invoke(app, ["profile", str(path), "--size", "32", "32", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["model"] == "unet" and out["connections"] is None and out["macs"] > 0
    assert out["params"] == pytest.approx(31.0e6, abs=0.1e6)
    path.write_text(TOY_YAML + "model: {name: unte}\n")
    res = runner.invoke(app, ["profile", str(path)])
    assert res.exit_code == 2 and "unknown model 'unte'" in res.stderr and len(res.stderr.strip().splitlines()) == 1
