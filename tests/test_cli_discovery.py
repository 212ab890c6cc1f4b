"""Finding things from the command line: ``sparseconn list`` (registered names with their origin),
``--version``, bundled configs by name and ``--print-config``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

import sparseconn
from sparseconn.catalogue import description
from sparseconn.engine.config import bundled_configs
from sparseconn.ops import FUSIONS
from tests.clitools import cli, ok, one_line_error
from tests.toy_task import TOY_YAML

PLUGIN = '''
"""A fusion from a user's own module."""
import torch

from sparseconn.ops import Fusion, register_fusion


@register_fusion("demo_max")
class DemoMax(Fusion):
    """Element-wise maximum of the inputs.

    More words that the listing leaves out."""

    def fuse(self, xs):
        return torch.stack(list(xs)).amax(0)
'''


@pytest.fixture
def plugin_module(tmp_path, monkeypatch):
    """``listing_demo_plugin`` importable from ``tmp_path``, forgotten again afterwards."""
    (tmp_path / "listing_demo_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "listing_demo_plugin"
    FUSIONS.unregister("demo_max")
    sys.modules.pop("listing_demo_plugin", None)


def rows(result, kind: str) -> dict[str, dict[str, str]]:
    return {r["name"]: r for r in json.loads(result.output)[kind]}


def test_list_shows_built_in_and_installed_plugin_names():
    found = json.loads(ok("list", "--json").output)
    assert set(found) >= {"encoders", "edge-rules", "fusions", "edge-ops", "stage-ops", "weights", "regularizers",
                          "heads", "tasks", "models", "input-ops"}
    fusions = {r["name"]: r for r in found["fusions"]}
    assert fusions["weighted_sum"]["origin"] == "built in"
    assert fusions["weighted_sum"]["description"].startswith("Eq. (1)")
    tasks = {r["name"]: r for r in found["tasks"]}
    assert tasks["phase_retrieval"]["origin"] == "sparseconn_tasks.phase_retrieval"
    assert tasks["segmentation"]["origin"] == "sparseconn_tasks.segmentation"
    assert {r["name"] for r in found["weights"]} >= {"clamp", "sigmoid"}
    table = ok("list", "tasks").output
    assert "phase_retrieval" in table and "sparseconn_tasks.segmentation" in table and "weighted_sum" not in table


def test_a_plugin_module_is_listed_with_its_origin(plugin_module):
    assert "demo_max" not in FUSIONS
    row = rows(ok("list", "fusions", "--plugin", plugin_module, "--json"), "fusions")["demo_max"]
    assert row == {"name": "demo_max", "description": "Element-wise maximum of the inputs.",
                   "origin": f"config plug-in {plugin_module}", "module": plugin_module}
    assert "demo_max" in ok("list", "fusions", "--plugin", plugin_module).output


MARKUP_PLUGIN = '''
from sparseconn.ops import Fusion, register_fusion


@register_fusion("demo_brackets")
class DemoBrackets(Fusion):
    """Sum of [x], xs[k-1] and [b]y[/b]."""

    def fuse(self, xs):
        return sum(xs)
'''


def test_list_shows_brackets_in_descriptions_verbatim(tmp_path, monkeypatch):
    """Square brackets in a docstring are text, not rich markup."""
    (tmp_path / "listing_markup_plugin.py").write_text(MARKUP_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        table = ok("list", "fusions", "--plugin", "listing_markup_plugin").output
        line = next(line for line in table.splitlines() if "demo_brackets" in line)
        assert "│ Sum of [x], xs[k-1] and [b]y[/b]. " in line, table
    finally:
        FUSIONS.unregister("demo_brackets")
        sys.modules.pop("listing_markup_plugin", None)


def test_a_description_is_the_first_line_carried_to_its_sentence_end():
    def cut():
        """The first line breaks mid-sentence (e.g. here, at Eq. (1) and Fig. 2) and goes
        on. A second sentence.

        A second paragraph."""

    def whole():
        """One line: w = sigmoid(raw). Never 0 or 1.

        More."""

    def run_on():
        """A paragraph with no full stop
        at all"""

    assert description(cut) == "The first line breaks mid-sentence (e.g. here, at Eq. (1) and Fig. 2) and goes on."
    assert description(whole) == "One line: w = sigmoid(raw). Never 0 or 1."
    assert description(run_on) == "A paragraph with no full stop at all"
    assert description(lambda: None) == ""


def test_every_listed_description_is_its_docstrings_text():
    """No built-in row loses text to rich: each one's words appear in the table in order."""
    found = json.loads(ok("list", "--json").output)
    table = " ".join(ok("list").output.replace("│", " ").split())
    for kind, listed in found.items():
        for row in listed:
            assert all(word in table for word in row["description"].split()), (kind, row["name"])


def test_every_built_in_name_has_a_description():
    """A researcher choosing a regularizer or resize policy reads what it does in ``list``: no built-in row
    is "–" (the task packages' names included)."""
    found = json.loads(ok("list", "--json").output)
    bare = [(kind, row["name"]) for kind, rows in found.items() for row in rows
            if row["module"].startswith(("sparseconn.", "sparseconn_tasks.")) and not row["description"]]
    assert bare == []


def test_a_configs_plugins_are_listed(plugin_module, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(TOY_YAML.replace("plugins: [tests.toy_task]", f"plugins: [tests.toy_task, {plugin_module}]"))
    found = json.loads(ok("list", "--config", config, "--json").output)
    assert {r["name"]: r["origin"] for r in found["fusions"]}["demo_max"] == f"config plug-in {plugin_module}"
    assert {r["name"]: r["origin"] for r in found["tasks"]}["toy"] == "config plug-in tests.toy_task"


def test_list_refuses_bad_input(tmp_path):
    one_line_error(cli("list", "fusion"), "'fusion'", "fusions", "edge-ops", "input-ops")
    one_line_error(cli("list", "--plugin", "no_such_module_here"), "no_such_module_here")
    one_line_error(cli("list", "--config", tmp_path / "missing.yaml"), "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("plugins: listing_demo_plugin\n")
    one_line_error(cli("list", "--config", bad), "plugins", "listing_demo_plugin")


def test_version():
    assert ok("--version").output == f"sparseconn {sparseconn.__version__}\n"


def test_bundled_configs_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert {"phase_retrieval", "segmentation", "phase_retrieval_unet"} <= set(bundled_configs())
    printed = yaml.safe_load(ok("search", "phase_retrieval", "--print-config").output)
    assert printed["task"]["name"] == "phase_retrieval"
    printed = yaml.safe_load(ok("train", "segmentation", "--print-config").output)
    assert printed["task"]["name"] == "segmentation"
    message = one_line_error(cli("search", "phase_retrieveal"), "'phase_retrieveal'", "phase_retrieval",
                             "segmentation")
    assert "bundled" in message
    one_line_error(cli("pipeline", "nothing/here.yaml"), "nothing/here.yaml")  # a path: the file's own error
    # a file of that name in the working directory wins
    Path("phase_retrieval").write_text(TOY_YAML)
    assert yaml.safe_load(ok("search", "phase_retrieval", "--print-config").output)["task"]["name"] == "toy"
    Path("phase_retrieval").unlink()
    # draw writes beside the source: for a bundled config, into the working directory
    written = ok("draw", "segmentation", "--formats", "dot").output.split()
    assert written and all(Path(p).resolve().is_relative_to(tmp_path) for p in written)
    assert not list(tmp_path.glob("runs"))


def test_print_config_shows_the_resolved_config_and_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "toy.yaml"
    config.write_text(TOY_YAML)
    out = ok("search", config, "--print-config", "--fast-dev-run", "--set", "train.epochs=5", "--seed", "7").output
    printed = yaml.safe_load(out)
    assert printed["seed"] == 7
    assert printed["search"]["epochs"] == 1 and printed["search"]["batch_size"] == 2  # --fast-dev-run
    assert printed["train"]["epochs"] == 5  # --set wins over --fast-dev-run
    assert printed["task"]["train_size"] == 8  # the toy task's own fast-dev-run value
    plain = yaml.safe_load(ok("pipeline", config, "--print-config").output)
    assert plain["search"]["epochs"] == 2 and plain["task"]["train_size"] == 16
    assert yaml.safe_load(ok("train", config, "--print-config", "--out", tmp_path / "T").output) == plain
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy.yaml"]
    one_line_error(cli("search", config, "--print-config", "--set", "search.epochs=-1"), "search.epochs")
