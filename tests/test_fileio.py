"""Reading versioned files back (sparseconn.fileio): one-line errors naming the file, shared by
architecture.json, checkpoints and a phase data folder's meta.json."""

from __future__ import annotations

import json

import pytest
import torch
from sparseconn_tasks.phase_retrieval.data import read_meta

from sparseconn.engine.checkpoint import FORMAT, VERSION, load_checkpoint
from sparseconn.errors import CheckpointError, DataError, SparseconnError
from sparseconn.fileio import check_format_version, read_json_object


@pytest.mark.parametrize(("text", "message"), [
    ('{"a": 1', r"^\S*f\.json is not valid JSON: Expecting"),
    ("[1, 2]", r"^\S*f\.json: expected a JSON object, got list$"),
])
def test_read_json_object_names_the_file(tmp_path, text, message):
    path = tmp_path / "f.json"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        read_json_object(path, DataError)
    path.write_text('{"a": 1}')
    assert read_json_object(path) == {"a": 1}
    (tmp_path / "folder").mkdir()
    with pytest.raises(SparseconnError, match=r"folder cannot be read: Is a directory$"):
        read_json_object(tmp_path / "folder")


@pytest.mark.parametrize(("version", "message"), [
    (None, r"^x\.pt: thing version must be an integer, got None$"),
    (True, r"^x\.pt: thing version must be an integer, got True$"),
    ("1", r"^x\.pt: thing version must be an integer, got '1'$"),
    (3, r"^x\.pt has thing version 3, newer than this sparseconn reads \(2\); upgrade sparseconn$"),
])
def test_check_format_version(version, message):
    with pytest.raises(CheckpointError, match=message):
        check_format_version(version, 2, "thing version", "x.pt", CheckpointError)
    assert check_format_version(2, 2, "thing version", "x.pt") == 2


@pytest.mark.parametrize(("version", "message"), [
    ("2", ": checkpoint version must be an integer, got '2'"),
    (VERSION + 1, f" has checkpoint version {VERSION + 1}, newer than this sparseconn reads ({VERSION}); "
                  "upgrade sparseconn"),
])
def test_a_checkpoint_of_a_bad_version_is_refused(tmp_path, version, message):
    path = tmp_path / "c.pt"
    torch.save({"format": FORMAT, "version": version, "model": {}}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(info.value) == f"{path}{message}"


def test_a_phase_data_folders_meta_json(tmp_path):
    assert read_meta(tmp_path) == {}  # absent: no settings
    (tmp_path / "meta.json").write_text(json.dumps([12.0]))
    with pytest.raises(DataError, match=r"meta\.json: expected a JSON object, got list$"):
        read_meta(tmp_path)
    (tmp_path / "meta.json").write_text("{phase_range: 12}")
    with pytest.raises(DataError, match=r"meta\.json is not valid JSON"):
        read_meta(tmp_path)
