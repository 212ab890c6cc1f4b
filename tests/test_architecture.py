from __future__ import annotations

import dataclasses
import json

import pytest
from pydantic import ValidationError

from sparseconn.architecture import FORMAT_VERSION, Architecture
from sparseconn.config import format_validation_error
from sparseconn.errors import ArchitectureError
from sparseconn.pruning import derive
from sparseconn.schema import StrictModel
from sparseconn.space import SearchSpace


@pytest.fixture
def arch(tiny_cfg):
    space = SearchSpace(tiny_cfg)
    w = {k: 0.7 for k in space.candidates}
    w["G->D1"] = 0.0
    return derive(space.graph, tiny_cfg, w)


def test_json_round_trip(arch, tmp_path):
    path = arch.save(tmp_path / "architecture.json")
    back = Architecture.load(path)
    assert back == arch
    assert set(back.graph().edges) == set(arch.graph().edges)
    assert not list(tmp_path.glob(".*tmp*"))  # the atomic write left no temporary file


def _write(tmp_path, data):
    p = tmp_path / "a.json"
    p.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return p


def test_malformed_files_name_the_field(arch, tmp_path):
    good = arch.model_dump(mode="json")
    bad = json.loads(json.dumps(good))
    del bad["edges"][1]["src"]
    with pytest.raises(ArchitectureError, match=r"a.json: edges.1.src: Field required"):
        Architecture.load(_write(tmp_path, bad))
    bad = json.loads(json.dumps(good))
    bad["nodes"][0]["channels"] = "many"
    with pytest.raises(ArchitectureError, match=r"nodes.0.channels"):
        Architecture.load(_write(tmp_path, bad))
    bad = json.loads(json.dumps(good))
    bad["edges"][0]["dst"] = "D9"
    with pytest.raises(ArchitectureError, match="node 'D9' is not in nodes"):
        Architecture.load(_write(tmp_path, bad))
    bad = json.loads(json.dumps(good))
    bad["space"]["edges"]["kernal"] = 3
    with pytest.raises(ArchitectureError, match=r"space.edges.kernal: unknown key 'kernal' \(did you mean 'kernel'"):
        Architecture.load(_write(tmp_path, bad))
    with pytest.raises(ArchitectureError, match="not valid JSON"):
        Architecture.load(_write(tmp_path, "{nodes: ["))
    with pytest.raises(ArchitectureError, match="does not exist"):
        Architecture.load(tmp_path / "missing.json")


@pytest.mark.parametrize(("key", "message"), [
    ("foo", r"nodes\.0\.foo: unknown key 'foo' \(valid keys: kind, channels, stride, size, feature, order, name\)$"),
    ("chanels", r"nodes\.0\.chanels: unknown key 'chanels' \(did you mean 'channels'\?\)$"),
])
def test_an_unknown_node_key_is_named_with_the_valid_ones(arch, tmp_path, key, message):
    """A node entry is a (pydantic) dataclass, not a model: its unknown keys read like a model's."""
    bad = arch.model_dump(mode="json")
    bad["nodes"][0][key] = 1
    with pytest.raises(ArchitectureError, match=r"^\S*a\.json: " + message):
        Architecture.load(_write(tmp_path, bad))


@dataclasses.dataclass
class _Point:
    alpha: int
    beta: int = 0


class _Points(StrictModel):
    points: list[_Point] | None = None


def test_unknown_keys_of_a_plain_dataclass_are_named_too():
    with pytest.raises(ValidationError) as info:
        _Points.model_validate({"points": [{"alpha": 1, "gamma": 2}]})
    message = format_validation_error(info.value, "p.yaml", _Points)
    assert message == "p.yaml: points.0.gamma: unknown key 'gamma' (valid keys: alpha, beta)"


def test_newer_format_version_is_refused(arch, tmp_path):
    data = arch.model_dump(mode="json")
    data["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(ArchitectureError, match="newer than this sparseconn reads"):
        Architecture.load(_write(tmp_path, data))
