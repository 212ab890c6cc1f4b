"""The derived child architecture as data: JSON in, JSON out, rebuildable without the supernet.

Like DARTS' ``Genotype`` but with the topology kept: every kept node with its channels and stride,
every kept connection with its weight at pruning time, all candidate weights, and the source space
config (encoder, ops, head) and the plug-in modules that register what it names, so
``build_child(Architecture.load(path))`` needs nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import networkx as nx
from pydantic import SerializerFunctionWrapHandler, ValidationError, model_serializer, model_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from sparseconn.config import SpaceConfig, format_validation_error
from sparseconn.errors import ArchitectureError, GraphError
from sparseconn.fileio import atomic_write_json, check_format_version, read_json_object
from sparseconn.graph import NodeInfo, check_graph, edge_key
from sparseconn.schema import StrictModel

FORMAT_VERSION = 1


@pydantic_dataclass(frozen=True, kw_only=True, config=StrictModel.model_config)
class NodeSpec(NodeInfo):
    """A node of ``architecture.json``: its ``name`` and the :class:`~sparseconn.graph.NodeInfo` fields
    (the one node schema), written name first."""

    name: str

    @model_serializer(mode="wrap")
    def _name_first(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        return {"name": data.pop("name"), **data}


class EdgeSpec(StrictModel):
    src: str
    dst: str
    candidate: bool = True
    weight: float | None = None
    """Connection weight at pruning time (None for fixed edges)."""

    @property
    def key(self) -> str:
        return edge_key(self.src, self.dst)


class RandomDraw(StrictModel):
    """How a random control child was drawn (:func:`sparseconn.sampling.random_architecture`)."""

    scheme: str
    """The sampling scheme (``uniform-live-rejection``: uniform among the live children of its size)."""
    seed: int
    """The seed of ``numpy.random.default_rng``: the same seed draws the same child."""
    draws: int
    """Draws made until the first live one (rejection sampling)."""


class Architecture(StrictModel):
    format_version: int = FORMAT_VERSION
    space: SpaceConfig
    nodes: list[NodeSpec]
    edges: list[EdgeSpec]
    output: str
    threshold: float
    candidates: dict[str, float] = {}
    """Every candidate connection's weight at pruning time (kept and pruned), for drawings."""
    removed_stages: list[str] = []
    plugins: list[str] = []
    """Modules imported before the child is built (the search run's ``plugins``)."""
    random_draw: RandomDraw | None = None
    """Set for a random control child (not searched): how it was drawn. Not written when None, so a searched
    child's file is as before."""

    @model_serializer(mode="wrap")
    def _no_empty_draw(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        if data.get("random_draw", 0) is None:
            del data["random_draw"]
        return data

    @model_validator(mode="before")
    @classmethod
    def _old_space_keys(cls, data: Any) -> Any:
        """Files written before sparseconn 0.2 kept ``plugins`` and ``checkpointing`` in ``space``."""
        space = data.get("space") if isinstance(data, dict) else None
        if not isinstance(space, dict) or not ({"plugins", "checkpointing"} & set(space)):
            return data
        space = {k: v for k, v in space.items() if k not in ("plugins", "checkpointing")}
        plugins = data["space"].get("plugins") or []
        return {**data, "space": space, "plugins": [*data.get("plugins", []), *plugins]}

    @model_validator(mode="after")
    def _check_refs(self) -> Architecture:
        names = [n.name for n in self.nodes]
        if len(set(names)) != len(names):
            raise ValueError("node names must be unique")
        for i, e in enumerate(self.edges):
            for end, field in ((e.src, "src"), (e.dst, "dst")):
                if end not in names:
                    raise ValueError(f"edges.{i}.{field}: node {end!r} is not in nodes")
        if self.output not in names:
            raise ValueError(f"output {self.output!r} is not in nodes")
        return self

    def graph(self) -> nx.DiGraph:
        """The child graph, with the attributes of :mod:`sparseconn.graph`."""
        g = nx.DiGraph(output=self.output)
        for n in self.nodes:
            g.add_node(n.name, **n.attrs())
        for e in self.edges:
            g.add_edge(e.src, e.dst, candidate=e.candidate, weight=e.weight)
        try:
            check_graph(g)
        except GraphError as exc:
            raise ArchitectureError(f"architecture graph is invalid: {exc}") from None
        return g

    @property
    def connections(self) -> list[str]:
        """Kept candidate connections."""
        return [e.key for e in self.edges if e.candidate]

    def weights(self) -> dict[str, float]:
        return {e.key: (1.0 if e.weight is None else e.weight) for e in self.edges if e.candidate}

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, self.model_dump(mode="json"))

    @classmethod
    def load(cls, path: str | Path) -> Architecture:
        p = Path(path)
        if not p.is_file():
            raise ArchitectureError(f"architecture file {str(p)!r} does not exist")
        data = read_json_object(p, ArchitectureError)
        check_format_version(data.get("format_version"), FORMAT_VERSION, "format version", p, ArchitectureError)
        try:
            arch = cls.model_validate(data)
        except ValidationError as exc:
            raise ArchitectureError(format_validation_error(exc, str(p), cls)) from None
        arch.graph()  # structural check with a clear message
        return arch
