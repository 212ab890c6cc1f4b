"""sparseconn: differentiable-connectivity neural architecture search for dense prediction."""

from sparseconn.architecture import Architecture
from sparseconn.config import SpaceConfig, load_space_config
from sparseconn.errors import SparseconnError
from sparseconn.network import GraphNet, build_child, build_supernet
from sparseconn.profiling import profile
from sparseconn.pruning import derive
from sparseconn.space import SearchSpace

__version__ = "0.1.0"

__all__ = [
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
