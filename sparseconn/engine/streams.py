"""A :class:`~sparseconn.network.GraphNet` run as the graph it is: connections beside the encoder.

One small frame leaves most of a large GPU idle: the demo child at 1024², batch 1, runs ~190 kernels a
frame on an H200, most of them too small to fill it, one after another. But the network is a graph: a
connection from a shallow feature (E1 → D1) need not wait for the deep encoder, and the connections into
one decoder stage do not wait for each other. :class:`Scheduled` runs the encoder step by step
(:meth:`~sparseconn.encoders.base.Encoder.steps`) and the decoder stages on the caller's stream, and starts
each connection, on a side stream of its own, as soon as its source feature and its destination's size
exist; a stage waits only for its own inputs. Captured in a CUDA graph (the fast path captures one per
input shape), the streams become parallel branches of one graph: the side streams cost nothing per frame.
Measured on an H200 (demo child, 1024², batch 1): the eager engine 2.108 against 2.226 ms a frame; compiled
part by part 1.327 against 1.229 ms for the network compiled whole on one stream (fusions across parts are
lost, and the branches hardly overlapped), so the fast path uses it for ``eager`` only
(:func:`sparseconn.engine.fastpath.use_streams`).

The order is the same on every device; :class:`Serial` runs it without streams (the CPU, and the tests
that check the order against :meth:`GraphNet.forward`). Each part (the input op, each encoder step, each
connection, each stage with its fusion, each ground pool, the head) can be compiled on its own:
``Scheduled(net, compile=torch.compile)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from torch import nn

from sparseconn.graph import edge_key
from sparseconn.inputs import crop_output, finished_output, padded_input
from sparseconn.network import GraphNet
from sparseconn.ops import ground_pool

MAX_SIDE_STREAMS = 16
"""Side streams of one :class:`Streams` (the connections take them in turn; CUDA graphs make each a branch)."""


class Launcher(Protocol):
    """Where :class:`Scheduled` runs a connection: ``mark()`` a point on the caller's stream (after a feature
    is made), ``side(fn, args, after)`` run ``fn(*args)`` once that point is passed, ``join(y, done)`` make
    a side result safe to use on the caller's stream."""

    def mark(self) -> Any: ...

    def side(self, fn: Callable[..., torch.Tensor], args: Sequence[Any], after: Any) -> tuple[torch.Tensor, Any]: ...

    def join(self, y: torch.Tensor, done: Any) -> torch.Tensor: ...


class Serial:
    """Runs every connection at once, on the caller's stream, in the order :class:`Scheduled` issues them."""

    def mark(self) -> None:
        return None

    def side(self, fn: Callable[..., torch.Tensor], args: Sequence[Any], after: None) -> tuple[torch.Tensor, None]:
        return fn(*args), None

    def join(self, y: torch.Tensor, done: None) -> torch.Tensor:
        return y


class Streams:
    """Runs each connection on one of ``n`` CUDA side streams (in turn), ordered by CUDA events.

    A tensor made on one stream and read on another is recorded on the reader's stream, so the caching
    allocator does not hand its memory to a later kernel before the reader is done (while a CUDA graph is
    being captured it keeps such blocks out of reuse until the capture ends)."""

    def __init__(self, device: torch.device | str, n: int = MAX_SIDE_STREAMS) -> None:
        self.device = torch.device(device)
        self.streams = [torch.cuda.Stream(device=self.device) for _ in range(n)]
        self.turn = itertools.cycle(self.streams)

    def mark(self) -> torch.cuda.Event:
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(self.device))
        return event

    def side(self, fn: Callable[..., torch.Tensor], args: Sequence[Any],
             after: torch.cuda.Event) -> tuple[torch.Tensor, torch.cuda.Event]:
        stream = next(self.turn)
        stream.wait_event(after)
        with torch.cuda.stream(stream):
            y = fn(*args)
            done = torch.cuda.Event()
            done.record(stream)
        for a in args:
            if isinstance(a, torch.Tensor):
                a.record_stream(stream)
        return y, done

    def join(self, y: torch.Tensor, done: torch.cuda.Event) -> torch.Tensor:
        caller = torch.cuda.current_stream(self.device)
        caller.wait_event(done)
        y.record_stream(caller)
        return y


class _Stage(nn.Module):
    """One decoder stage: its fusion, then its stage op (one part to compile)."""

    def __init__(self, fusion: nn.Module, stage: nn.Module) -> None:
        super().__init__()
        self.fusion, self.stage = fusion, stage

    def forward(self, xs: list[torch.Tensor], w: torch.Tensor | None = None) -> torch.Tensor:
        return self.stage(self.fusion(xs, w))


class _Ground(nn.Module):
    """One ground node's pool (one part to compile)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ground_pool(x, self.size)


class _Whole(nn.Module):
    """An encoder without :meth:`~sparseconn.encoders.base.Encoder.steps`, run whole (one part)."""

    def __init__(self, encoder: nn.Module, upto: int) -> None:
        super().__init__()
        self.encoder, self.upto = encoder, upto

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.encoder(x, upto=self.upto)


def _same(module: nn.Module) -> nn.Module:
    return module


class Scheduled(nn.Module):
    """``net``'s forward pass, with each connection started as early as the graph allows (see the module
    docstring). Computes what ``net(x)`` computes; ``net``'s modules are shared, not copied.

    Args:
        net: the network (a searched child, or a supernet in eval mode).
        launcher: :class:`Serial` (default) or :class:`Streams`.
        compile: applied to each part once (e.g. ``torch.compile``); default: the parts as they are.
    """

    def __init__(self, net: GraphNet, launcher: Launcher | None = None,
                 compile: Callable[[nn.Module], Callable[..., Any]] = _same) -> None:
        super().__init__()
        self.net = net
        self.launcher = launcher if launcher is not None else Serial()
        steps = net.encoder.steps(net.upto)
        self.input_op = compile(net.input_op)
        self.steps = [compile(s) for s in steps] if steps is not None else None
        self.whole = compile(_Whole(net.encoder, net.upto)) if steps is None else None
        self.edges = {k: compile(e) for k, e in net.edges.items()}
        self.parts = {d: compile(_Stage(net.fusions[d], net.stages[d])) for d in net.stage_order}
        self.grounds = {g: compile(_Ground(size)) for g, (_, size) in net.ground_source.items()}
        self.head = compile(net.head) if net.head is not None else None
        self.names: dict[int, list[str]] = {}  # encoder feature -> the encoder and ground nodes made from it
        for n, f in [*net.node_feature.items(), *((g, f) for g, (f, _) in net.ground_source.items())]:
            self.names.setdefault(f, []).append(n)
        self.sources = {s for d in net.stage_order for s in net.inputs[d]}

    @property
    def parts_count(self) -> int:
        """How many parts there are (each compiled on its own with ``compile=torch.compile``)."""
        steps = len(self.steps) if self.steps is not None else 1
        return 1 + steps + len(self.edges) + len(self.parts) + len(self.grounds) + (self.head is not None)

    def _features(self, x: torch.Tensor):
        """The encoder's features, one at a time where it offers :meth:`steps`."""
        if self.steps is None:
            yield from self.whole(x)
            return
        for step in self.steps:
            x = step(x)
            yield x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net, run = self.net, self.launcher
        wvec = net.connections.vector() if net.connections is not None else None
        env: dict[str, torch.Tensor] = {}
        marks: dict[str, Any] = {}
        sizes: dict[int, torch.Size] = {}
        waiting = [(s, d) for d in net.stage_order for s in net.inputs[d]]
        started: dict[tuple[str, str], tuple[torch.Tensor, Any]] = {}

        def made(name: str, y: torch.Tensor) -> None:
            env[name] = y
            if name in self.sources:
                marks[name] = run.mark()

        def start_ready() -> None:
            for s, d in [e for e in waiting if e[0] in env and net.stage_feature[e[1]] in sizes]:
                waiting.remove((s, d))
                size = sizes[net.stage_feature[d]]
                started[s, d] = run.side(self.edges[edge_key(s, d)], (env[s], size), marks[s])

        z, size = padded_input(self.input_op, x, net.stride)  # as GraphNet.forward
        for k, feat in enumerate(self._features(z)):
            sizes[k] = feat.shape[-2:]
            for n in self.names.get(k, ()):
                made(n, self.grounds[n](feat) if n in self.grounds else feat)
            start_ready()
        for d in net.stage_order:
            ins = [run.join(*started.pop((s, d))) for s in net.inputs[d]]
            w = wvec[getattr(net, f"_idx_{d}")] if wvec is not None else None
            made(d, self.parts[d](ins, w))
            start_ready()
        y = env[net.output]
        if self.head is None:
            return crop_output(y, size, z.shape[-2:])
        return finished_output(net.input_op, self.head(y, tuple(z.shape[-2:])), z, size, net.training)
