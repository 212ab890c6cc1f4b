"""sparseconn: differentiable-connectivity neural architecture search for dense prediction."""

import importlib.metadata as _metadata
import re as _re
from pathlib import Path as _Path

from sparseconn.architecture import Architecture
from sparseconn.config import SpaceConfig, load_space_config
from sparseconn.errors import SparseconnError
from sparseconn.network import GraphNet, build_child, build_supernet
from sparseconn.profiling import profile
from sparseconn.pruning import derive
from sparseconn.space import SearchSpace


def _version() -> str:
    """The installed distribution's version (pyproject.toml's ``version``, the one source); in a source
    tree that is not installed, read from its pyproject.toml."""
    try:
        return _metadata.version("sparseconn")
    except _metadata.PackageNotFoundError:
        pass
    pyproject = _Path(__file__).resolve().parents[1] / "pyproject.toml"
    if not pyproject.is_file():
        return "0+unknown"
    found = _re.search(r'^version = "([^"]+)"', pyproject.read_text(encoding="utf-8"), _re.MULTILINE)
    return found.group(1) if found else "0+unknown"


__version__ = _version()

_API = ("Run", "draw", "evaluate", "infer", "load_config", "load_model", "pipeline", "prune", "search", "train")
"""The Python API (:mod:`sparseconn.api`), imported on first use: ``import sparseconn`` stays light."""


def __getattr__(name: str):
    if name in _API:
        import sparseconn.api

        return getattr(sparseconn.api, name)
    raise AttributeError(f"module 'sparseconn' has no attribute {name!r}")

__all__ = [  # the API names too, resolved on first use by __getattr__
    *_API,
    "Architecture",
    "GraphNet",
    "SearchSpace",
    "SpaceConfig",
    "SparseconnError",
    "build_child",
    "build_supernet",
    "derive",
    "load_space_config",
    "profile",
]
