"""The search space: encoder stages, ground nodes, decoder stages and their candidate connections.

``SearchSpace(cfg)`` turns a :class:`~sparseconn.config.SpaceConfig` into a checked
``networkx.DiGraph`` (see :mod:`sparseconn.graph` for its attributes) before any tensor exists.

Example::

    space = SearchSpace(load_space_config("tasks/phase_retrieval.yaml"))
    len(space.candidates)  # 100: the paper's super-PRNet
"""

from __future__ import annotations

from collections.abc import Callable

import networkx as nx

from sparseconn.config import SpaceConfig
from sparseconn.edge_rules import EDGE_RULES, EdgeRule
from sparseconn.encoders import encoder_feature_info
from sparseconn.errors import SpaceError
from sparseconn.graph import NodeInfo, candidate_edges, decoder_nodes, edge_macs, make_graph, nodes_of, split_key
from sparseconn.heads import head_channels
from sparseconn.inputs import input_channels

HEAD = "H"


def build_nodes(cfg: SpaceConfig) -> dict[str, NodeInfo]:
    """Encoder, ground, decoder and head nodes with channels and strides, from the config and what the named
    plug-ins declare (the encoder's ``feature_info``, the input op's ``channels``, the head's
    ``output_channels``); no module is built."""
    b = cfg.index_base
    enc_in = input_channels(cfg.input.name, cfg.in_channels, cfg.input.params)
    info = encoder_feature_info(cfg.encoder.name, enc_in, **cfg.encoder.params)
    n_feat = len(info)
    for i in range(1, n_feat):
        if info[i].stride < info[i - 1].stride:
            raise SpaceError(f"encoder {cfg.encoder.name!r} feature {i} has stride {info[i].stride}, finer "
                             f"than feature {i - 1} ({info[i - 1].stride}); features must go fine to coarse")
    features = cfg.encoder.features if cfg.encoder.features is not None else list(range(n_feat))
    nodes: dict[str, NodeInfo] = {}

    def add(name: str, node: NodeInfo) -> None:
        if name in nodes:
            raise SpaceError(f"node name {name!r} is used twice")
        nodes[name] = node

    enc_names = []
    for pos, f in enumerate(features):
        name = f"E{b + pos}"
        if not -n_feat <= f < n_feat:
            raise SpaceError(f"{name}: encoder feature {f} does not exist; {cfg.encoder.name!r} has "
                             f"features 0..{n_feat - 1}")
        f %= n_feat
        add(name, NodeInfo("encoder", info[f].channels, info[f].stride, feature=f, order=pos))
        enc_names.append(name)
    for j, gc in enumerate(cfg.ground):
        if not -n_feat <= gc.source < n_feat:
            raise SpaceError(f"{gc.name}: ground source feature {gc.source} does not exist; "
                             f"{cfg.encoder.name!r} has features 0..{n_feat - 1}")
        src = gc.source % n_feat
        add(gc.name, NodeInfo("ground", info[src].channels, None, size=gc.size, feature=src, order=j))

    positions = cfg.decoder.stages if cfg.decoder.stages is not None else list(range(len(enc_names)))
    for p in positions:
        if not 0 <= p < len(enc_names):
            raise SpaceError(f"D{b + p}: decoder stage aligned with encoder node position {p}, but there are "
                             f"only {len(enc_names)} encoder nodes")
    # Deeper = coarser stride, then later feature; level 1 = the finest stage (the paper's D_1).
    depth = {p: (nodes[enc_names[p]].stride, nodes[enc_names[p]].feature) for p in positions}
    by_fineness = sorted(positions, key=lambda p: depth[p])
    by_processing = sorted(positions, key=lambda p: depth[p], reverse=True)
    if cfg.decoder.depth.rule == "list" and len(cfg.decoder.depth.values or []) < len(positions):
        raise SpaceError(f"decoder.depth.values has {len(cfg.decoder.depth.values or [])} entries for "
                         f"{len(positions)} decoder stages")
    for p in positions:
        name = f"D{b + p}"
        channels = cfg.decoder.depth.channels(by_fineness.index(p) + 1)
        if channels < 1:
            raise SpaceError(f"{name}: depth rule {cfg.decoder.depth.rule!r} gives {channels} channels")
        e = nodes[enc_names[p]]
        add(name, NodeInfo("decoder", channels, e.stride, feature=e.feature, order=by_processing.index(p)))
    if cfg.head is not None:
        add(HEAD, NodeInfo("head", head_channels(cfg.head.name, cfg.head.params), None, order=0))
    return nodes


class SearchSpace:
    """A checked candidate graph built from a config (and optionally a user edge-rule callable)."""

    def __init__(self, cfg: SpaceConfig, edge_rule: EdgeRule | Callable | None = None) -> None:
        self.cfg = cfg
        nodes = build_nodes(cfg)
        rule = edge_rule if edge_rule is not None else EDGE_RULES.get(cfg.edges.rule)
        self.rule_name = getattr(rule, "__name__", str(rule)) if edge_rule is not None else cfg.edges.rule
        pairs = list(rule(nodes))
        output = cfg.decoder.output or self._last_stage(nodes)
        self.graph: nx.DiGraph = make_graph(nodes, pairs, output, HEAD if cfg.head is not None else None)
        self.graph.graph["edge_rule"] = self.rule_name

    @staticmethod
    def _last_stage(nodes: dict[str, NodeInfo]) -> str:
        dec = [n for n, i in nodes.items() if i.kind == "decoder"]
        if not dec:
            raise SpaceError("the space has no decoder stages")
        return max(dec, key=lambda n: nodes[n].order)

    @property
    def candidates(self) -> list[str]:
        """Candidate connection names, e.g. ``"E3->D1"``, in a fixed order."""
        return candidate_edges(self.graph)

    @property
    def output(self) -> str:
        return self.graph.graph["output"]

    @property
    def encoder_nodes(self) -> list[str]:
        return nodes_of(self.graph, "encoder")

    @property
    def ground_nodes(self) -> list[str]:
        return nodes_of(self.graph, "ground")

    @property
    def decoder_nodes(self) -> list[str]:
        return decoder_nodes(self.graph)

    def edge_macs(self, size: tuple[int, int]) -> dict[str, int]:
        """Multiply-accumulates of each candidate's conv at an input of ``size`` (H, W)."""
        return edge_macs(self.graph, size, self.cfg.edges.kernel, self.cfg.edges.resize)

    def stage_groups(self) -> list[int]:
        """For each candidate (in :attr:`candidates` order), the index of its destination stage."""
        pos = {n: i for i, n in enumerate(self.decoder_nodes)}
        return [pos[split_key(k)[1]] for k in self.candidates]

    def __repr__(self) -> str:
        return (f"SearchSpace({len(self.encoder_nodes)} encoder, {len(self.ground_nodes)} ground, "
                f"{len(self.decoder_nodes)} decoder nodes, {len(self.candidates)} candidates, "
                f"rule={self.rule_name!r})")
