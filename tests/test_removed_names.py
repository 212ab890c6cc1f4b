"""Public names removed as dead code fail with one line naming what to use instead."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("module, name, replacement", [
    ("sparseconn.engine.distributed", "device_for", "RunOptions.device"),
    ("sparseconn.engine.distributed", "broadcast_object", "torch.distributed.broadcast_object_list"),
    ("sparseconn.fileio", "atomic_write_bytes", "atomic_write(path, lambda fh: fh.write(data), binary=True)"),
])
def test_a_removed_name_names_its_replacement(module, name, replacement):
    mod = importlib.import_module(module)
    with pytest.raises(AttributeError) as info:
        getattr(mod, name)
    message = str(info.value)
    assert f"{module}.{name} was removed" in message and replacement in message and "\n" not in message
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        _ = mod.no_such_name
