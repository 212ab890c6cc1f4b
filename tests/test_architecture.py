from __future__ import annotations

import json

import pytest

from sparseconn.architecture import FORMAT_VERSION, Architecture
from sparseconn.errors import ArchitectureError
from sparseconn.pruning import derive
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


def test_newer_format_version_is_refused(arch, tmp_path):
    data = arch.model_dump(mode="json")
    data["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(ArchitectureError, match="newer than this sparseconn reads"):
        Architecture.load(_write(tmp_path, data))
