"""Config sections hold only their own keys: run-level ``plugins`` and ``checkpointing``, a ``search``
section and a ``train`` section with their own settings, and the task section carried typed.

Configs of an older sparseconn (``space.plugins``, ``space.checkpointing``, both sections dumped with
every key) keep loading; a key in the wrong section with a real value is a one-line error naming its place.
"""

from __future__ import annotations

import json
import warnings

import pytest
import yaml

from sparseconn.architecture import Architecture
from sparseconn.config import SpaceConfig
from sparseconn.engine.config import RunConfig, SearchConfig, TrainConfig, load_run_config, validate_run_config
from sparseconn.errors import ConfigError
from sparseconn.task import TASKS, Task, TaskConfig
from tests.clitools import cli, one_line_error
from tests.test_old_runs import OLD
from tests.toy_task import TOY_YAML, ToyConfig, write_toy_config


def toy_data() -> dict:
    return yaml.safe_load(TOY_YAML)


def test_the_task_section_is_carried_typed(tmp_path):
    cfg = load_run_config(write_toy_config(tmp_path))
    assert isinstance(cfg.task, ToyConfig) and cfg.task.name == "toy"
    again = validate_run_config(yaml.safe_load(cfg.dump()), "dumped")
    assert again == cfg and again.dump() == cfg.dump()
    assert yaml.safe_load(cfg.dump())["task"]["name"] == "toy"
    assert RunConfig.model_validate(toy_data()).task == cfg.task  # from Python, without the loader


def test_search_and_train_sections_have_their_own_keys():
    assert {"regularizers", "connection_optimizer", "cost_size"} <= set(SearchConfig.model_fields)
    assert not {"regularizers", "connection_optimizer", "cost_size"} & set(TrainConfig.model_fields)
    assert "inherit" in TrainConfig.model_fields and "inherit" not in SearchConfig.model_fields


@pytest.mark.parametrize("section, key, value, home", [
    ("train", "regularizers", [{"name": "binary_entropy", "coef": 0.1}], "search.regularizers"),
    ("train", "connection_optimizer", {"lr": 0.5}, "search.connection_optimizer"),
    ("train", "cost_size", [64, 64], "search.cost_size"),
    ("search", "inherit", True, "train.inherit"),
])
def test_a_key_of_the_other_section_names_its_place(section, key, value, home, tmp_path):
    data = toy_data()
    data[section][key] = value
    with pytest.raises(ConfigError) as exc:
        validate_run_config(data, "x.yaml")
    assert str(exc.value).count("\n") == 0 and home in str(exc.value) and f"{section}" in str(exc.value)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    one_line_error(cli("search", path, "--out", tmp_path / "never"), home)
    assert not (tmp_path / "never").exists()


def test_an_old_dump_with_every_key_in_both_sections_loads():
    """Before 0.2 one class served both sections, so a run folder's config.yaml has all keys in each."""
    data = toy_data()
    data["search"] = {**data["search"], "inherit": False}
    data["train"] = {**data["train"], "regularizers": [], "cost_size": [256, 256],
                     "connection_optimizer": {"name": "adam", "lr": 0.01, "weight_decay": 0.0, "momentum": 0.9,
                                              "encoder_lr_scale": 1.0}}
    cfg = validate_run_config(data, "old.yaml")
    assert cfg.search.regularizers[0].name == "binary_entropy" and cfg.train.inherit is False


def test_old_run_level_keys_in_space_move_with_a_warning(tmp_path):
    data = toy_data()
    plugins = data.pop("plugins")
    data["space"] = {**data["space"], "plugins": plugins, "checkpointing": True}
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.warns(FutureWarning) as record:
        cfg = load_run_config(path)
    assert [str(w.message).split(": ", 1)[1].split(" is ")[0] for w in record] == ["space.plugins",
                                                                                     "space.checkpointing"]
    assert cfg.plugins == plugins and cfg.checkpointing is True
    assert "plugins" not in yaml.safe_load(cfg.dump())["space"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a stored config (an old checkpoint) moves them silently
        assert validate_run_config(data, "stored", warn=False).checkpointing is True


def test_run_level_keys_given_twice_must_agree():
    data = toy_data()
    data["space"] = {**data["space"], "checkpointing": True}
    data["checkpointing"] = False
    with pytest.raises(ConfigError, match="space.checkpointing is True but checkpointing is False"):
        validate_run_config(data, "x.yaml", warn=False)


def test_a_space_built_in_python_with_run_level_keys_names_their_place():
    with pytest.raises(ValueError, match="plugins is a run-level setting"):
        SpaceConfig.model_validate({"plugins": ["x"]})


def test_an_old_architecture_keeps_its_plugins(tmp_path):
    old = json.loads((OLD / "child" / "architecture.json").read_text())
    assert old["space"]["plugins"] == [] and "checkpointing" in old["space"]  # as 36d2709 wrote it
    old["space"]["plugins"] = ["tests.toy_task"]
    (tmp_path / "a.json").write_text(json.dumps(old))
    arch = Architecture.load(tmp_path / "a.json")
    assert arch.plugins == ["tests.toy_task"] and "plugins" not in SpaceConfig.model_fields
    assert json.loads(arch.save(tmp_path / "b.json").read_text())["plugins"] == ["tests.toy_task"]


def test_a_task_config_that_breaks_the_contract_is_named():
    class Loose(Task):
        from pydantic import BaseModel

        class Config(BaseModel):
            size: int = 3

    TASKS.register("loose_task", Loose)
    try:
        data = {**toy_data(), "task": {"name": "loose_task"}}
        with pytest.raises(ConfigError) as exc:
            validate_run_config(data, "x.yaml")
        assert "loose_task" in str(exc.value) and "TaskConfig" in str(exc.value)
    finally:
        TASKS.unregister("loose_task")
    assert issubclass(ToyConfig, TaskConfig)


def test_the_old_import_name_of_the_bundled_tasks_names_the_new_one():
    from sparseconn.errors import SparseconnError
    from sparseconn.registry import import_modules

    with pytest.raises(SparseconnError, match="imported as 'sparseconn_tasks.no_such_task'"):
        import_modules(["tasks.no_such_task"])


def test_an_encoder_whose_outputs_break_its_declaration_fails_before_training(tmp_path):
    from torch import nn

    from sparseconn.encoders import ENCODERS, Encoder, FeatureInfo

    class Lying(Encoder):
        def __init__(self, in_channels: int = 1) -> None:
            super().__init__(type(self).feature_info(in_channels))
            self.a = nn.Conv2d(in_channels, 8, 3, stride=2, padding=1)
            self.b = nn.Conv2d(8, 8, 3, stride=2, padding=1)  # declared 16

        @classmethod
        def feature_info(cls, in_channels: int) -> list[FeatureInfo]:
            return [FeatureInfo(8, 2), FeatureInfo(16, 4)]

        def forward(self, x, upto=None):
            a = self.a(x)
            return [a, self.b(a)][: (upto + 1) if upto is not None else 2]

    ENCODERS.register("lying_encoder", Lying)
    try:
        path = tmp_path / "lying.yaml"
        path.write_text(TOY_YAML.replace("name: tiny, params: {channels: [8, 8], strides: [2, 4]}",
                                         "name: lying_encoder"))
        line = one_line_error(cli("search", path, "--out", tmp_path / "never", "--quiet"), "lying_encoder",
                              "feature 1 declares 16 channels", "gives 8 channels")
        assert "Lying" in line
        assert not (tmp_path / "never").exists()
    finally:
        ENCODERS.unregister("lying_encoder")


def test_a_plugin_module_that_does_not_exist_fails_in_one_line(tmp_path):
    path = tmp_path / "missing.yaml"
    path.write_text(TOY_YAML.replace("plugins: [tests.toy_task]", "plugins: [tests.toy_task, no_such_plugin_mod]"))
    one_line_error(cli("search", path, "--out", tmp_path / "never"), "no_such_plugin_mod")
    assert not (tmp_path / "never").exists()


def test_a_validators_own_message_reaches_the_user_without_pydantics_prefix(tmp_path):
    """A section validator's ValueError names its value itself: no "Value error," before it and no dump of the
    whole section after it; a field validator's message keeps the value it got."""
    data = yaml.safe_load(open("tasks/phase_retrieval.yaml", encoding="utf-8"))
    data["task"]["data"]["sim"]["size"] = 64
    with pytest.raises(ConfigError) as info:
        validate_run_config(data, "cfg.yaml")
    msg = str(info.value)
    assert msg.startswith("cfg.yaml: task.data.sim: carrier period 3.5 px is too close to DC for 64-px fields")
    assert "Value error" not in msg and "(got {" not in msg
    data["task"]["data"]["sim"]["size"] = 128
    data["space"]["edges"]["kernel"] = 4
    with pytest.raises(ConfigError, match=r"^cfg.yaml: space.edges.kernel: must be an odd kernel size .*\(got 4\)$"):
        validate_run_config(data, "cfg.yaml")
