"""The fast inference path: one model, prepared for a device and checked against eager fp32 before use.

``optimize(net, device=..., engine=...)`` returns a :class:`FastModel`, a callable on padded batches
(B, C, H, W) that ``infer``, ``evaluate``'s latency column and the benchmarks all use. Engines:

- ``reference``: the model as trained, NCHW fp32 (what the parity check compares against).
- ``eager``: a copy with every BatchNorm folded into the conv before it, channels-last memory, bf16
  autocast where the hardware has it (CUDA; CPUs with AVX-512 BF16 or AMX) and, on CUDA, a CUDA graph
  per input shape (the small child is launch-bound on a GPU).
- ``compiled``: ``eager``'s model through ``torch.compile`` (inductor, with weight freezing on CPU);
  it pays for many frames: the first call compiles for tens of seconds on a 2-core CPU.
- ``onnxruntime``: the folded model exported to ONNX and run by onnxruntime (CPU, or CUDA when its
  provider is installed).
- ``auto``: ``eager``, or ``compiled`` when ``frames`` is large enough to repay the compile time.

:class:`InFlight` (and :meth:`FastModel.map`) keep several batches running at once on CUDA, each on a
stream of its own with its own CUDA graphs: ``infer`` runs 4 there by default.

Every engine but ``reference`` is run once on the example batch and compared with the reference
output: fp32 paths must agree within ``FP32_TOL`` (of the output's scale), bf16 within ``BF16_TOL``.
``auto`` falls back to ``reference`` (with the reason in :attr:`FastModel.description`) when a path
fails its check; a named engine that fails raises :class:`~sparseconn.errors.SparseconnError`.

On Linux with glibc the CPU paths also keep freed memory in the process heap
(:func:`tune_cpu_allocator`): without it every large activation is handed back to the OS when freed
and page-faulted in again on the next call, which costs more than the convolutions in a network's
first high-resolution layers.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import functools
import importlib.util
import os
import platform
import tempfile
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from sparseconn.engine.inference import input_multiple, max_stride
from sparseconn.errors import SparseconnError

ENGINES = ("auto", "reference", "eager", "compiled", "onnxruntime")
FP32_TOL = 1e-4
"""Largest |fast − reference| of an fp32 path, relative to max(1, max |reference|)."""
BF16_TOL = 3e-2
"""The same for bf16 paths (8 mantissa bits: about 0.4% per op, accumulated over the network)."""
COMPILE_MIN_FRAMES = {"cpu": 2000, "cuda": 200}
"""``auto`` compiles when at least this many frames will run (compiling takes ~30-60 s on 2 CPU cores
and saves ~10-20% a frame; on CUDA it takes ~1 min and saves ~25%)."""


# --- model transforms -------------------------------------------------------------------------------

@torch.no_grad()
def fold_batchnorm(net: nn.Module) -> tuple[nn.Module, int]:
    """An eval-mode copy of ``net`` with each BatchNorm folded into the conv before it, and the count.

    Folds ``Conv2d → BatchNorm2d`` pairs that follow each other in an ``nn.Sequential`` (encoders,
    stage ops, U-Net blocks) and calls ``fold_norm_()`` on modules that own a BN elsewhere: every edge op
    has it (:meth:`sparseconn.ops.EdgeOp.fold_norm_`, e.g. a supernet edge whose BN follows a resize), and
    any other module may define it (it returns True when it folded something). Exact up to float
    rounding: in eval mode BN is a per-channel affine map.
    """
    net = copy.deepcopy(net).eval()
    folded = 0
    for module in list(net.modules()):
        if isinstance(module, nn.Sequential):
            items = list(module)
            for i in range(len(items) - 1):
                conv, bn = items[i], items[i + 1]
                if (isinstance(conv, nn.Conv2d) and type(bn) is nn.BatchNorm2d and bn.track_running_stats
                        and bn.num_features == conv.out_channels):
                    module[i] = fuse_conv_bn_eval(conv, bn)
                    module[i + 1] = nn.Identity()
                    folded += 1
        fold = getattr(module, "fold_norm_", None)
        if callable(fold) and fold():
            folded += 1
    return net, folded


def count_batchnorm(net: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


@functools.cache
def tune_cpu_allocator() -> bool:
    """Keep freed memory in the heap (glibc ``mallopt``: no mmap for large blocks, no trimming).

    Large tensors are otherwise mapped fresh on every call and each page faulted in on first touch;
    for a 1024² input the first layers' 100 MB activations then cost 2-3× their convolutions. The
    price: the process keeps its peak memory until it exits. Once per process; False where the C
    library is not glibc (the path is then only slower, never wrong).
    """
    if platform.system() != "Linux" or os.environ.get("SPARSECONN_NO_MALLOPT"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4
        return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))
    except (OSError, AttributeError):
        return False


def cpu_has_fast_bf16() -> bool:
    """Native bf16 on this CPU (AVX-512 BF16 or AMX): read from /proc/cpuinfo where there is one."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def bf16_available(device: str) -> bool:
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return cpu_has_fast_bf16()


_HOST_OPS = {
    "aten._local_scalar_dense": "a tensor's value read on the host (.item(), float(), bool())",
    "aten._linalg_check_errors": "linear algebra that checks its result for errors on the host",
    "aten.nonzero": "nonzero (its size depends on the data)",
    "aten.masked_select": "masked_select (its size depends on the data)",
    "aten._unique2": "unique (its size depends on the data)",
}
"""The ops that make a forward wait for the device, with what each stands for: a CUDA graph cannot hold them
(its capture fails). Copies from the host, which it cannot hold either, are found apart (see
:func:`host_round_trips`)."""
_FROM_HOST = "a copy from the host (a tensor made from Python or NumPy values, or moved to the device)"


def host_round_trips(net: nn.Module, shape: tuple[int, ...]) -> list[str]:
    """What in ``net``'s forward (eval mode) on an input of ``shape`` a CUDA graph cannot hold, as "what
    (count)": copies from the host and the ops of :data:`_HOST_OPS`; empty when a graph can hold it.

    Traced on the ``meta`` device, so it runs on any machine and does no arithmetic: the model's code takes
    its non-CPU branches there, those of a CUDA run, and every tensor that starts on the CPU mid-forward
    (``torch.tensor`` of Python values, ``torch.from_numpy``) is one the device would have to copy from
    the host. A forward that cannot run on ``meta`` because it reads a value is reported as such."""
    from torch.overrides import TorchFunctionMode
    from torch.utils._python_dispatch import TorchDispatchMode

    found: dict[str, int] = {}

    def note(what: str) -> None:
        found[what] = found.get(what, 0) + 1

    def on_host(x: object) -> bool:
        return isinstance(x, torch.Tensor) and x.device.type == "cpu"

    class _Factories(TorchFunctionMode):  # torch.tensor(values, device=...) dispatches no op on meta
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func in (torch.tensor, torch.as_tensor) and args and (on_host(args[0])
                                                                     or not isinstance(args[0], torch.Tensor)):
                note(_FROM_HOST)
            return func(*args, **(kwargs or {}))

    class _Ops(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = str(func.overloadpacket)
            if name in _HOST_OPS:
                note(_HOST_OPS[name])
            out = func(*args, **(kwargs or {}))
            if name in ("aten._to_copy", "aten.copy_") and any(on_host(a) for a in args) and not on_host(out):
                note(_FROM_HOST)
            return out

    model = copy.deepcopy(net).eval().to("meta")
    try:
        with torch.no_grad(), _Factories(), _Ops():  # (inference mode hides the linalg checks from _Ops)
            model(torch.empty(shape, device="meta"))
    except (RuntimeError, NotImplementedError) as exc:
        if "meta" not in str(exc):
            raise
        return [f"a value read on the host ({str(exc).splitlines()[0][:80]})"]
    return [f"{what} ({count})" for what, count in found.items()]


class _CudaGraphed:
    """Replay one captured CUDA graph per input shape (the network's kernels launch as one).

    Each wrapper captures on a stream of its own. ``torch.cuda.graph`` otherwise captures every graph on one
    shared stream, and PyTorch keeps cuBLAS's workspace per stream: the graphs of frames in flight
    (:class:`InFlight`, one wrapper per lane) would share one workspace while they run at once. (The suspected
    cause of NaN from the compiled demo child's four lanes on an H200, whose matrix products grew with the
    detrend fit and the congruent finish; not yet confirmed on a device: ``tests/test_gpu.py`` checks it.)"""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.fn = fn
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}
        self.capture_stream: torch.cuda.Stream | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        key = (tuple(x.shape), x.dtype, x.device)
        if key not in self.graphs:
            static_x = x.clone()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):  # warm-up outside the graph: cuDNN picks its algorithms
                    self.fn(static_x)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            if self.capture_stream is None:
                self.capture_stream = torch.cuda.Stream(device=x.device)
            with torch.cuda.graph(graph, stream=self.capture_stream):
                static_y = self.fn(static_x)
            self.graphs[key] = (graph, static_x, static_y)
        graph, static_x, static_y = self.graphs[key]
        static_x.copy_(x)
        graph.replay()
        return static_y.clone()


class _OnnxRuntime:
    """The folded model exported to ONNX once per input shape and run by onnxruntime."""

    def __init__(self, net: nn.Module, device: str, threads: int) -> None:
        if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnxscript") is None:
            raise SparseconnError("engine 'onnxruntime' needs the onnxruntime, onnx and onnxscript packages: "
                                  "pip install 'sparseconn[export]' onnxruntime")
        self.net, self.device, self.threads = net, device, threads
        self.sessions: dict[tuple, object] = {}
        self.dir = tempfile.TemporaryDirectory(prefix="sparseconn-ort-")

    def _session(self, x: torch.Tensor):
        import onnxruntime as ort

        key = tuple(x.shape)
        if key not in self.sessions:
            path = Path(self.dir.name) / f"model-{'x'.join(map(str, key))}.onnx"
            with warnings.catch_warnings(), contextlib.redirect_stdout(None):
                warnings.simplefilter("ignore")
                torch.onnx.export(self.net.cpu(), (x.cpu().float(),), str(path), input_names=["input"],
                                  output_names=["output"], dynamo=True, external_data=False, verbose=False)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self.threads
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            providers = ["CPUExecutionProvider"]
            if self.device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
            self.sessions[key] = ort.InferenceSession(str(path), opts, providers=providers)
        return self.sessions[key]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = self._session(x).run(None, {"input": x.detach().float().cpu().contiguous().numpy()})[0]
        return torch.from_numpy(y).to(x.device)


# --- the fast model ---------------------------------------------------------------------------------

@dataclass
class FastModel:
    """A prepared model: call it on batches (B, C, H, W) padded to multiples of ``stride`` (1 for a model that
    runs at any size: :func:`~sparseconn.engine.inference.input_multiple`)."""

    fn: Callable[[torch.Tensor], torch.Tensor]
    engine: str
    device: str
    stride: int
    steps: list[str] = field(default_factory=list)
    """What was done to the model, in order (for the description)."""
    parity: float | None = None
    """max |this − reference| on the example batch, in output units (None for ``reference``)."""
    dtype: torch.dtype | None = None
    """Autocast dtype (None: fp32)."""
    channels_last: bool = False
    fallback: str | None = None
    """Why ``auto`` fell back to the reference path, if it did."""

    lanes: dict[int, list[tuple[torch.cuda.Stream, Callable[[torch.Tensor], torch.Tensor]]]] = field(
        default_factory=dict, init=False, repr=False, compare=False)
    """CUDA streams and their callables for :meth:`map`, per number in flight (made on first use)."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(self.fn, x)

    @torch.inference_mode()
    def _run(self, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        ctx = (torch.autocast(device_type=torch.device(self.device).type, dtype=self.dtype)
               if self.dtype is not None else contextlib.nullcontext())
        with ctx:
            y = fn(x)
        return y.float().contiguous()

    def map(self, batches: Iterable[torch.Tensor], in_flight: int = 1) -> Iterator[torch.Tensor]:
        """The outputs of ``batches``, in order, with up to ``in_flight`` of them running at once
        (:class:`InFlight`; on the CPU they run one after another). A generator: on CUDA it reads up to
        ``in_flight`` batches ahead of the output it returns."""
        pipe = InFlight(self, in_flight)
        for x in batches:
            y = pipe.put(x)
            if y is not None:
                yield y
        yield from pipe.drain()

    def _cuda_lanes(self, k: int) -> list[tuple[torch.cuda.Stream, Callable[[torch.Tensor], torch.Tensor]]]:
        if k not in self.lanes:
            # One graph wrapper per lane around the shared (compiled) model: a captured graph's output
            # buffer is overwritten by its next replay, so lanes must not share graphs.
            inner = self.fn.fn if isinstance(self.fn, _CudaGraphed) else None
            self.lanes[k] = [(torch.cuda.Stream(device=self.device), _CudaGraphed(inner) if inner else self.fn)
                             for _ in range(k)]
        return self.lanes[k]

    @property
    def description(self) -> str:
        """One line: the engine, what it does, and how far it is from the reference."""
        parts = ", ".join(self.steps)
        text = f"{self.engine} ({parts})" if parts else self.engine
        if self.parity is not None:
            text += f"; max |Δ| vs eager fp32 {self.parity:.1e}"
        if self.fallback:
            text += f" [{self.fallback}]"
        return text


class InFlight:
    """Batches of one :class:`FastModel` running at once: :meth:`put` starts one and, once ``in_flight``
    are running, returns the oldest one's output; :meth:`drain` returns the rest, in order.

    On CUDA each of ``in_flight`` lanes runs on a stream of its own with its own CUDA graphs: a camera's
    frames are independent, and one small batch at a time leaves most of a large GPU idle between its
    kernels (on an H200 the demo child at 1024², batch 1, compiled: 792-811 frames/s one frame at a time,
    991-1059 with four in flight). Elsewhere, or with ``in_flight=1``, :meth:`put` runs the batch and
    returns its output at once. Inputs may be on the host or the device; outputs are on the device,
    float32 as from a call, and ready for use on the stream that was current when this was made."""

    def __init__(self, fast: FastModel, in_flight: int = 1) -> None:
        k = check_in_flight(in_flight)
        self.fast = fast
        self.cuda = k > 1 and torch.device(fast.device).type == "cuda"
        self.lanes = fast._cuda_lanes(k) if self.cuda else []
        self.caller = torch.cuda.current_stream(fast.device) if self.cuda else None
        self.done = [torch.cuda.Event() for _ in self.lanes]  # one per lane, reused (its batch is out first)
        self.pending: deque[tuple[torch.cuda.Event, torch.Tensor, torch.Tensor]] = deque()
        self.started = 0

    def put(self, x: torch.Tensor) -> torch.Tensor | None:
        """Start ``x``; the output of the batch started ``in_flight`` puts ago (None while fewer are running)."""
        if not self.cuda:
            return self.fast(x)
        oldest = self._hand_over() if len(self.pending) == len(self.lanes) else None
        lane = self.started % len(self.lanes)
        (stream, fn), done = self.lanes[lane], self.done[lane]
        self.started += 1
        x = x.to(self.fast.device, non_blocking=True)
        stream.wait_stream(self.caller)  # x was written on the caller's stream
        with torch.cuda.stream(stream):
            y = self.fast._run(fn, x)
            done.record(stream)
        self.pending.append((done, y, x))  # x is held until the caller's stream has waited for the lane
        return oldest

    def drain(self) -> Iterator[torch.Tensor]:
        """The outputs of the batches still running, in order."""
        while self.pending:
            yield self._hand_over()

    def _hand_over(self) -> torch.Tensor:
        """The oldest output, made safe to use on the caller's stream (ordered after its lane's work, and its
        memory kept from the lane's allocator until the caller's stream is done with it)."""
        done, y, _ = self.pending.popleft()  # the input's memory goes back to the caller's stream after this wait
        self.caller.wait_event(done)
        y.record_stream(self.caller)
        return y


def check_in_flight(in_flight: object, option: str = "in_flight") -> int:
    """``in_flight`` as a whole number of batches >= 1; else a one-line error naming ``option``."""
    if isinstance(in_flight, bool) or not isinstance(in_flight, int) or in_flight < 1:
        raise SparseconnError(f"{option} must be a whole number of batches >= 1, got {in_flight!r}")
    return in_flight


def _reference(net: nn.Module, device: str, stride: int) -> FastModel:
    return FastModel(net, "reference", device, stride, steps=["fp32", "NCHW"])


def _build(net: nn.Module, engine: str, device: str, stride: int, bf16: bool | None,
           streamed: bool = False, shape: tuple[int, ...] | None = None) -> FastModel:
    """The model for one engine (not yet checked); ``streamed``: see :func:`use_streams`; ``shape``: the
    example's, for the check that a CUDA graph can hold the forward (:func:`host_round_trips`)."""
    cuda = device.startswith("cuda")
    use_bf16 = bf16_available(device) if bf16 is None else bf16
    if not cuda:
        tune_cpu_allocator()
    model, n = fold_batchnorm(net)
    left = count_batchnorm(model)
    steps = [f"BN folded ({n})" + (f", {left} left" if left else "")]
    if engine == "onnxruntime":
        threads = torch.get_num_threads()
        return FastModel(_OnnxRuntime(model, device, threads), engine, device, stride,
                         steps=[*steps, "onnxruntime " + ("CUDA" if cuda else "CPU")])
    model = model.to(device=device, memory_format=torch.channels_last)
    steps.append("channels-last")
    dtype = torch.bfloat16 if use_bf16 else None
    if dtype is not None:
        steps.append(f"bf16 (weights of {cast_weights(model, dtype)} layers cast once)")
    fn: Callable[[torch.Tensor], torch.Tensor] = model
    if streamed:
        from sparseconn.engine.streams import MAX_SIDE_STREAMS, Scheduled, Streams

        launcher = Streams(device, min(MAX_SIDE_STREAMS, len(model.edges)))
        if engine == "compiled":  # each part compiled on its own (the input op too: see below)
            scheduled = Scheduled(model, launcher, compile=torch.compile)
            fn = _Frozen(scheduled, parts=scheduled.parts_count)
            steps.append("torch.compile per part (frozen weights)")
        else:
            scheduled = Scheduled(model, launcher)
            fn = scheduled
        steps.append(f"{len(scheduled.edges)} connections on {len(launcher.streams)} side streams")
    elif engine == "compiled":
        # Freezing turns weights into constants: inductor folds them and pre-packs them for oneDNN.
        # On CUDA the input ops compile too (their real arithmetic fuses; the FFTs stay cuFFT calls).
        # Static shapes: a new size compiles anew. Dynamo's default turns a code object that recompiles for
        # another size dynamic, and a frozen oneDNN convolution compiled with symbolic sizes fails its own
        # stride check (torch 2.13): a second network compiled in the process (GraphNet.forward again), or a
        # second frame size, then failed with "expected size 8==8, stride 1==256".
        eager_parts = [] if cuda else _keep_eager(model)
        fn = _Frozen(torch.compile(model, dynamic=False))
        steps.append("torch.compile (frozen weights" + (f"; {'; '.join(eager_parts)})" if eager_parts else ")"))
    trips: list[str] = []
    # An op with no meta kernel: the check cannot say, so capture as before it existed (a capture that
    # fails still fails a named engine, and auto falls back).
    with contextlib.suppress(RuntimeError, NotImplementedError):
        trips = host_round_trips(net, shape) if cuda and shape is not None else []
    if cuda and not trips:
        fn = _CudaGraphed(fn)
        steps.append("CUDA graph per shape")
    elif trips:
        steps.append(f"no CUDA graph: the forward has {'; '.join(trips)}")
    return FastModel(fn, engine, device, stride, steps=steps, dtype=dtype, channels_last=True)


_AUTOCAST_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
                      nn.Linear)


@torch.no_grad()
def cast_weights(model: nn.Module, dtype: torch.dtype) -> int:
    """Cast the weights and biases of every conv and linear layer of ``model`` to ``dtype``, in place; the count.

    Autocast casts exactly these to bf16 on every call (one copy kernel per tensor: 150 of the demo child's
    560 kernels a frame on CUDA); cast once, autocast finds them in its dtype and copies nothing. The
    numbers are those of autocast's casts. The model must then run under autocast."""
    n = 0
    for module in model.modules():
        if isinstance(module, _AUTOCAST_WEIGHTED):
            module.to(dtype)
            n += 1
    return n


class _Frozen:
    """A ``torch.compile``d model called with inductor's weight freezing on.

    Freezing turns the weights into constants, so inductor folds them, pre-packs them for oneDNN and fuses
    each convolution with the activation after it. Passed as ``torch.compile(options={"freezing": True})``
    it is silently not applied (torch 2.13: the weights stayed graph inputs, every ReLU6 ran as its own
    kernel); the setting has to be in force while the first call compiles, and every later call that
    recompiles, so it is patched in around each call."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], parts: int = 0) -> None:
        self.fn = fn
        # Parts compiled apart that share code (19 connections of one edge op): dynamo's limit of compiles per
        # function (8) is raised to this while they compile, else the rest would silently run eagerly.
        self.parts = parts

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch._dynamo.config as dynamo_config
        import torch._inductor.config as inductor_config

        limit = "recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit"
        raised = (dynamo_config.patch(**{limit: max(getattr(dynamo_config, limit), self.parts)}) if self.parts
                  else contextlib.nullcontext())
        with inductor_config.patch(freezing=True), raised:
            return self.fn(x)


def use_streams(net: nn.Module, device: str, side_streams: bool | None = None, engine: str = "eager") -> bool:
    """Whether the fast path runs ``net``'s connections on side streams (:mod:`sparseconn.engine.streams`).

    None: for the ``eager`` engine on CUDA, for a :class:`~sparseconn.network.GraphNet` with connections
    (on an H200, the demo child at 1024², batch 1: 2.108 against 2.226 ms a frame). Not by default for
    ``compiled``: its parts then compile one by one and lose the fusions across them (1.327 against 1.229
    ms, whole). ``side_streams=True`` off CUDA, or for a model without connections, is a one-line error."""
    from sparseconn.network import GraphNet

    able = isinstance(net, GraphNet) and len(net.edges) > 0
    if side_streams and not device.startswith("cuda"):
        raise SparseconnError(f"side_streams=True needs a CUDA device, got {device!r}")
    if side_streams and not able:
        raise SparseconnError(f"side_streams=True needs a GraphNet with connections, got {type(net).__name__}")
    wanted = engine == "eager" if side_streams is None else side_streams
    return bool(device.startswith("cuda") and able and wanted)


def _keep_eager(model: nn.Module) -> list[str]:
    """Mark the submodules that declare ``compilable = False`` (input ops) to run eagerly inside a model
    compiled for the CPU, and let each compile the parts of it that pay (``compile_parts``); a few words
    on each ("SidebandInput eager, its plane arithmetic compiled")."""
    notes = []
    for module in model.modules():
        if module is not model and getattr(type(module), "compilable", True) is False:
            module.forward = torch.compiler.disable(module.forward)
            compile_parts = getattr(module, "compile_parts", None)
            compiled = compile_parts() if compile_parts is not None else None
            notes.append(f"{type(module).__name__} eager" + (f", {compiled}" if compiled else ""))
    return notes


def _scale(y: torch.Tensor) -> float:
    return max(1.0, float(y.abs().max()))


PRECISIONS = ("auto", "fp32", "bf16")
"""``auto``: bf16 where the hardware has it natively (CUDA; CPUs with AVX-512 BF16 or AMX), else fp32."""


def parse_precision(precision: str, option: str = "precision") -> bool | None:
    """``precision`` as :func:`optimize`'s ``bf16`` (None for ``auto``); else a one-line error naming ``option``."""
    if precision not in PRECISIONS:
        raise SparseconnError(f"{option} must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return {"auto": None, "fp32": False, "bf16": True}[precision]


def check_bf16(bf16: bool | None, engine: str, device: str, option: str = "bf16 was asked for") -> None:
    """A one-line error, starting with ``option``, where bf16 is asked for but cannot run: an fp32-only
    engine (``reference``, ``onnxruntime``) or a device without native bf16."""
    if bf16 and engine in ("reference", "onnxruntime"):
        raise SparseconnError(f"{option}, but engine {engine!r} runs in fp32 only")
    if bf16 and not bf16_available(device):
        raise SparseconnError(f"{option}, but {device} has no native bf16 (CUDA, or a CPU with AVX-512 BF16 "
                              "or AMX)")


def check_engine(engine: str, option: str = "engine") -> str:
    """``engine`` if it is one of :data:`ENGINES`; else a one-line error naming ``option`` (e.g. ``--engine``)."""
    if engine not in ENGINES:
        raise SparseconnError(f"{option} must be one of {', '.join(ENGINES)}, got {engine!r}")
    return engine


def choose_engine(engine: str, device: str, frames: int | None) -> str:
    """The engine ``auto`` stands for: ``compiled`` when ``frames`` repay the compile time, else ``eager``."""
    if engine != "auto":
        return engine
    kind = "cuda" if device.startswith("cuda") else "cpu"
    return "compiled" if frames is not None and frames >= COMPILE_MIN_FRAMES[kind] else "eager"


def optimize(net: nn.Module, *, device: str = "cpu", engine: str = "auto", example: torch.Tensor | None = None,
             frames: int | None = None, bf16: bool | None = None, check: bool = True,
             side_streams: bool | None = None) -> FastModel:
    """``net`` prepared for fast inference on ``device``, checked against eager fp32 on ``example``.

    Args:
        net: the model (it is not modified; the fast paths work on a copy).
        device: ``cpu`` or ``cuda[:N]``.
        engine: one of :data:`ENGINES`.
        example: one input batch (B, C, H, W), padded as the model needs (:func:`input_multiple`); default:
            one random frame of 4 strides squared.
        frames: how many frames will run (``auto`` compiles only when that repays the compile time).
        bf16: force bf16 on (error where the hardware has no native bf16, or for ``reference`` and
            ``onnxruntime``) or off; None: where native (:func:`parse_precision` reads ``--precision``).
        check: run the parity check (off only for callers that check themselves).
        side_streams: run a GraphNet's connections on CUDA side streams beside its encoder and decoder
            (:mod:`sparseconn.engine.streams`); None: for ``eager`` on CUDA (see :func:`use_streams`).
    """
    check_engine(engine)
    if getattr(net, "traceable", True) is False:  # its forward runs in NumPy: nothing to fold, compile or export
        if engine not in ("auto", "reference"):
            raise SparseconnError(f"engine {engine!r} needs a model that runs in torch; "
                                  f"{type(net).__name__} runs outside it (NumPy): use engine auto or reference")
        check_bf16(bf16, "reference", device)
        return _reference(net.eval(), device, input_multiple(net))
    chosen = choose_engine(engine, device, frames)
    streamed = use_streams(net, device, side_streams, chosen)  # a bad request fails here, not as a fallback
    check_bf16(bf16, engine, device)
    net = net.to(device).eval()
    stride = input_multiple(net)
    if example is None:
        in_channels = getattr(getattr(net, "cfg", None), "in_channels", 1)
        side = 4 * max_stride(net)
        example = torch.randn(1, in_channels, side, side)
    example = example.to(device).float()
    if engine == "reference":
        return _reference(net, device, stride)
    try:
        fast = _build(net, chosen, device, stride, bf16, streamed, tuple(example.shape))
        if check:
            with torch.inference_mode():
                ref = net(example).float()
            got = fast(example)
            if got.shape != ref.shape:
                raise SparseconnError(f"engine {chosen!r} gives shape {tuple(got.shape)}, eager {tuple(ref.shape)}")
            fast.parity = float((got - ref).abs().max())
            tol = (BF16_TOL if fast.dtype is not None else FP32_TOL) * _scale(ref)
            if not fast.parity <= tol:  # also catches NaN
                raise SparseconnError(f"engine {chosen!r} differs from eager fp32 by {fast.parity:.2e} "
                                      f"(tolerance {tol:.1e})")
        return fast
    except Exception as exc:  # a fast path that cannot be built or checked: auto falls back, a named one fails
        if engine != "auto":
            if isinstance(exc, SparseconnError):
                raise
            raise SparseconnError(f"engine {chosen!r} failed on {device}: {str(exc).splitlines()[0]}") from exc
        fast = _reference(net, device, stride)
        fast.fallback = f"{chosen} failed: {str(exc).splitlines()[0][:120]}"
        return fast
