"""The network built from a graph: the supernet (gated, Eq. 1) and the child (plain, Eq. 4).

Both are one class, :class:`GraphNet`, so a child is exactly the supernet restricted to its kept
connections, minus the connection weights and per-edge BN.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING

import networkx as nx
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from sparseconn.config import SpaceConfig
from sparseconn.connections import ConnectionWeights
from sparseconn.contracts import PluginError
from sparseconn.encoders import build_encoder, skip_pretrained
from sparseconn.errors import ArchitectureError
from sparseconn.graph import candidate_edges, decoder_nodes, edge_key, nodes_of, split_key
from sparseconn.heads import build_head
from sparseconn.inputs import build_input_op, crop_output, finished_output, padded_input
from sparseconn.ops import (
    EDGE_ORDERS,
    RESIZE_POLICIES,
    EdgeOpSpec,
    build_edge_op,
    build_fusion,
    build_stage_op,
    ground_pool,
)
from sparseconn.registry import import_modules

if TYPE_CHECKING:
    from sparseconn.architecture import Architecture
    from sparseconn.space import SearchSpace


class GraphNet(nn.Module):
    """Encoder -> ground pools -> decoder stages (in graph order) -> optional head.

    Each connection is an edge op (:class:`~sparseconn.ops.EdgeOp`, built from an
    :class:`~sparseconn.ops.EdgeOpSpec`), each decoder stage a fusion of its inputs
    (:class:`~sparseconn.ops.Fusion`) followed by a stage op (:class:`~sparseconn.ops.StageOp`), and the
    output stage feeds the head (:class:`~sparseconn.heads.Head`), all chosen by name in ``cfg``.

    Args:
        cfg: the space config (encoder, ops, head).
        graph: the candidate graph (supernet) or the pruned graph (child).
        gated: supernet mode: one learnable weight per candidate and per-edge norm (``edges.norm``).
        edge_bias: build edges with ``EdgeOpSpec.bias`` (a child that inherits folded weights needs it).
    """

    def __init__(self, cfg: SpaceConfig, graph: nx.DiGraph, *, gated: bool, edge_bias: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.graph = graph
        self.gated = gated
        self.checkpointing = False
        """Gradient checkpointing of each decoder stage while training (the run's ``checkpointing``)."""
        self.output = graph.graph["output"]
        self.input_op = build_input_op(cfg.input.name, cfg.in_channels, cfg.input.params)
        self.encoder = build_encoder(cfg.encoder.name, self.input_op.out_channels, **cfg.encoder.params)
        have = self.encoder.out_channels
        for n in nodes_of(graph, "encoder") + nodes_of(graph, "ground"):
            a = graph.nodes[n]
            got = have[a["feature"]] if a["feature"] < len(have) else "no such feature"
            if got != a["channels"]:
                raise ArchitectureError(f"node {n} expects {a['channels']} channels from encoder feature "
                                        f"{a['feature']}, but {cfg.encoder.name!r} gives {got}")
        self.node_feature = {n: graph.nodes[n]["feature"] for n in nodes_of(graph, "encoder")}
        self.ground_source = {n: (graph.nodes[n]["feature"], graph.nodes[n]["size"]) for n in nodes_of(graph, "ground")}
        self.stage_order = decoder_nodes(graph)
        self.stage_feature = {d: graph.nodes[d]["feature"] for d in self.stage_order}
        used = list(self.node_feature.values()) + [f for f, _ in self.ground_source.values()]
        self.upto = max(used + list(self.stage_feature.values()))  # the encoder stops after this feature

        self.keys = candidate_edges(graph)
        index = {k: i for i, k in enumerate(self.keys)}
        policy = RESIZE_POLICIES.get(cfg.edges.resize)
        self.edges, self.fusions, self.stages = nn.ModuleDict(), nn.ModuleDict(), nn.ModuleDict()
        self.inputs: dict[str, list[str]] = {}
        ends = [split_key(k) for k in self.keys]
        for d in self.stage_order:
            c_out = graph.nodes[d]["channels"]
            srcs = [s for s, t in ends if t == d]
            self.inputs[d] = srcs
            for s in srcs:
                order = policy(graph.nodes[s]["stride"], graph.nodes[d]["stride"])
                if order not in EDGE_ORDERS:
                    raise PluginError(f"resize policy {cfg.edges.resize!r} gave {order!r} for {edge_key(s, d)}; "
                                      f"expected one of {', '.join(map(repr, EDGE_ORDERS))}")
                spec = EdgeOpSpec(graph.nodes[s]["channels"], c_out, order, config=cfg.edges,
                                  norm=gated and cfg.edges.norm, bias=edge_bias, key=edge_key(s, d))
                self.edges[spec.key] = build_edge_op(cfg.edges.op, spec)
            self.fusions[d] = build_fusion(cfg.decoder.fusion, len(srcs), c_out)
            self.stages[d] = build_stage_op(cfg.decoder.stage_op, c_out, kernel=cfg.decoder.stage_kernel)
            # Positions of this stage's weights in the connection vector.
            self.register_buffer(f"_idx_{d}", torch.tensor([index[edge_key(s, d)] for s in srcs]),
                                 persistent=False)
        self.head = None
        if cfg.head is not None:
            self.head = build_head(cfg.head.name, graph.nodes[self.output]["channels"], cfg.head.params)
        self.connections = ConnectionWeights(self.keys, cfg.connections) if gated else None
        self._stride = max((a["stride"] for _, a in graph.nodes(data=True) if a.get("stride")), default=1)

    # -- parameter groups (DARTS' arch_parameters / weight split) ----------------------------------
    def connection_parameters(self) -> list[nn.Parameter]:
        return list(self.connections.parameters()) if self.connections is not None else []

    def weight_parameters(self) -> list[nn.Parameter]:
        conn = {id(p) for p in self.connection_parameters()}
        return [p for p in self.parameters() if id(p) not in conn]

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())

    def decoder_parameters(self) -> list[nn.Parameter]:
        enc = {id(p) for p in self.encoder_parameters()}
        return [p for p in self.weight_parameters() if id(p) not in enc]

    @torch.no_grad()
    def constrain_(self) -> None:
        """Project connection weights back to their feasible set; call after each optimiser step."""
        if self.connections is not None:
            self.connections.project_()

    # -- forward -------------------------------------------------------------------------------
    def _stage(self, d: str, size: torch.Size, w: torch.Tensor | None, *xs: torch.Tensor) -> torch.Tensor:
        ins = [self.edges[edge_key(s, d)](x, size) for s, x in zip(self.inputs[d], xs, strict=True)]
        return self.stages[d](self.fusions[d](ins, w))  # (B, C_d, *size)

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """All node features by name, for an input (B, C_in, H, W) of any size (the input op's output is
        padded to multiples of :attr:`stride`, so features are those of the padded size)."""
        return self._features(padded_input(self.input_op, x, self._stride)[0])

    def _features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """All node features by name, from the encoder's input (B, C, H, W), H and W multiples of the stride."""
        feats = self.encoder(x, upto=self.upto)  # fine to coarse
        env = {n: feats[f] for n, f in self.node_feature.items()}
        for g, (f, size) in self.ground_source.items():
            env[g] = ground_pool(feats[f], size)  # (B, C, size, size)
        wvec = self.connections.vector() if self.connections is not None else None
        use_ckpt = self.checkpointing and self.training and torch.is_grad_enabled()
        for d in self.stage_order:
            size = feats[self.stage_feature[d]].shape[-2:]
            w = wvec[getattr(self, f"_idx_{d}")] if wvec is not None else None
            xs = [env[s] for s in self.inputs[d]]
            if use_ckpt:
                env[d] = checkpoint(self._stage, d, size, w, *xs, use_reentrant=False)
            else:
                env[d] = self._stage(d, size, w, *xs)
        return env

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z, size = padded_input(self.input_op, x, self._stride)  # (B, C, H', W'), multiples of the stride
        y = self._features(z)[self.output]
        if self.head is None:
            return crop_output(y, size, z.shape[-2:])
        return finished_output(self.input_op, self.head(y, tuple(z.shape[-2:])), z, size, self.training)

    @property
    def num_connections(self) -> int:
        return len(self.keys)

    any_size = True
    """Runs on inputs of any size: the input op's output is padded to multiples of :attr:`stride` and the
    output cropped back (:func:`~sparseconn.inputs.padded_input`), so callers pass raw inputs unpadded."""

    @property
    def stride(self) -> int:
        """The coarsest stride among the graph's nodes: the encoder's input is padded to multiples of it."""
        return self._stride


def build_supernet(space: SearchSpace) -> GraphNet:
    """The supernet of a search space: every candidate connection, gated by a weight in [0, 1]."""
    return GraphNet(space.cfg, space.graph, gated=True)


def build_child(arch: Architecture, inherit: GraphNet | None = None) -> GraphNet:
    """The child network of an architecture (Eq. 4), from the architecture alone.

    With ``inherit`` (the supernet it was pruned from), the child starts from the supernet's
    weights: per-edge BN and connection weight are folded into each kept conv, so in eval mode the
    child computes what the supernet computes with its pruned connections set to zero. The
    architecture's plug-in modules are imported first. An inheriting child's encoder takes the supernet's
    weights, so its ``pretrained`` weights are not read.
    """
    import_modules(arch.plugins)
    with skip_pretrained() if inherit is not None else nullcontext():
        child = GraphNet(arch.space, arch.graph(), gated=False, edge_bias=inherit is not None)
    if inherit is not None:
        inherit_weights(child, inherit)
    return child


@torch.no_grad()
def inherit_weights(child: GraphNet, supernet: GraphNet) -> None:
    """Copy encoder, stage, fusion and head weights and fold the kept edges (see :func:`build_child`).

    Calls each fusion's :meth:`~sparseconn.ops.Fusion.inherit` with the positions of the kept inputs and
    each kept edge's :meth:`~sparseconn.ops.EdgeOp.fold_from` with its connection weight.
    """
    if supernet.connections is None:
        raise ArchitectureError("weights can only be inherited from a supernet (a gated GraphNet)")
    missing = [k for k in child.keys if k not in supernet.edges]
    if missing:
        raise ArchitectureError(f"connection {missing[0]} of the child does not exist in the supernet")
    child.encoder.load_state_dict(supernet.encoder.state_dict())
    weights = supernet.connections.snapshot()
    for d in child.stage_order:
        child.stages[d].load_state_dict(supernet.stages[d].state_dict())
        kept = [supernet.inputs[d].index(s) for s in child.inputs[d]]
        child.fusions[d].inherit(supernet.fusions[d], kept)
        for s in child.inputs[d]:
            k = edge_key(s, d)
            child.edges[k].fold_from(supernet.edges[k], weights[k])
    if child.head is not None and supernet.head is not None:
        child.head.load_state_dict(supernet.head.state_dict())
