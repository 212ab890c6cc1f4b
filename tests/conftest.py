"""Shared fixtures: a tiny space (2 encoder stages, ground, 2 decoder stages, 8 channels, 32x32)."""

from __future__ import annotations

import os

import pytest
import torch

from sparseconn.config import SpaceConfig
from sparseconn.network import GraphNet, build_child, build_supernet
from sparseconn.pruning import derive
from sparseconn.registry import import_modules
from sparseconn.space import SearchSpace

# `make test` runs two pytest-xdist workers on 2 cores: one thread each, or four threads would share two cores.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


def tiny_config(plugins: list[str] | None = None, **overrides) -> SpaceConfig:
    """The tiny space with ``section__field=value`` overrides; ``plugins`` are imported (a run-level
    setting, not part of the space)."""
    import_modules(plugins or [])
    data = {
        "in_channels": 1,
        "encoder": {"name": "tiny", "params": {"channels": [8, 8], "strides": [2, 4]}},
        "ground": [{"name": "G", "source": -1, "size": 1}],
        "decoder": {"depth": {"rule": "constant", "value": 8}},
        "edges": {"rule": "dense"},
    }
    for key, value in overrides.items():
        section, _, field = key.partition("__")
        if field:
            data.setdefault(section, {})[field] = value
        else:
            data[section] = value
    return SpaceConfig.model_validate(data)


@pytest.fixture
def tiny_cfg() -> SpaceConfig:
    return tiny_config()


def randomize_norms(module: torch.nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial statistics and affine parameters (for parity tests)."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 2 - 1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)


KEEP = frozenset({"E1->D1", "D2->D1", "E2->D2", "G->D2"})
"""Connections of the tiny space that the parity tests keep."""


def inherited_pair(cfg: SpaceConfig, keep: frozenset[str] | set[str] = KEEP, weight: float = 1.0,
                   norm_seed: int = 0) -> tuple[GraphNet, GraphNet]:
    """A supernet (seeded, random norm statistics) gated to ``weight`` on ``keep`` and 0 elsewhere, and the
    child of those connections with inherited weights; both in eval mode, so they must compute the same."""
    space = SearchSpace(cfg)
    torch.manual_seed(0)
    sup = build_supernet(space)
    randomize_norms(sup, seed=norm_seed)
    w = {k: (weight if k in keep else 0.0) for k in space.candidates}
    sup.connections.set_(w)
    sup.eval()
    return sup, build_child(derive(space.graph, cfg, {k: float(v > 0) for k, v in w.items()}), inherit=sup).eval()
