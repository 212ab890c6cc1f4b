"""Checkpoints: written atomically, read with ``weights_only=True`` (tensors and plain data only).

A checkpoint holds everything needed to rebuild and resume its model without other files: the run
config, the architecture (for a child), model and optimiser states, scheduler, RNG states, epoch,
best metric and a fingerprint of the model's parameter names and shapes.
"""

from __future__ import annotations

import hashlib
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sparseconn.errors import CheckpointError
from sparseconn.fileio import atomic_path, check_format_version

FORMAT = "sparseconn-checkpoint"
VERSION = 1


def fingerprint(model: nn.Module) -> str:
    """Hash of the state-dict keys and shapes: equal iff the architectures match."""
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(f"{k}:{tuple(v.shape)};".encode())
    return h.hexdigest()[:16]


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names, dtypes, shapes and bytes: catches silent corruption of the
    weights (torch's zip container does not check the tensor data it reads)."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
        "python": _py_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _py_state() -> list[Any]:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (tensors and plain data) atomically."""
    data = {"format": FORMAT, "version": VERSION, **payload}
    if isinstance(payload.get("model"), dict):
        data["model_digest"] = state_digest(payload["model"])
    with atomic_path(path) as tmp:
        torch.save(data, tmp)
    return Path(path)


def _reason(exc: Exception) -> str:
    """One short line out of torch.load's multi-paragraph errors (the unpickler's own complaint if any)."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:  # the useful part follows a paragraph about weights_only
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0][:160] if lines else type(exc).__name__


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint safely; one-line :class:`CheckpointError` for missing, truncated or foreign files.

    ``weights_only=True``: a file holding pickled objects other than tensors and plain data is refused,
    never unpickled.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {str(p)!r} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": the error below says it all
            data = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # by format: RuntimeError, UnpicklingError, EOFError, KeyError, BadZipFile, ...
        raise CheckpointError(f"{p} is truncated or not a sparseconn checkpoint ({_reason(exc)})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not a sparseconn checkpoint (no '{FORMAT}' header)")
    check_format_version(data.get("version"), VERSION, "checkpoint version", p, CheckpointError)
    model = data.get("model")
    if not isinstance(model, dict) or not all(isinstance(v, torch.Tensor) for v in model.values()):
        raise CheckpointError(f"{p} is damaged: it holds no model state")
    digest = data.get("model_digest")
    if digest is not None and digest != state_digest(model):
        raise CheckpointError(f"{p} is damaged: its model weights do not match their SHA-256 checksum")
    return data


def upgraded_state(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A copy of ``state`` with what an older sparseconn did not store filled in by the modules that know it:
    each submodule of ``model`` with an ``upgrade_state(state, prefix)`` method may add its missing entries
    (the phase task's sideband op: an uncalibrated ``reference``, for checkpoints from before it had one)."""
    state = dict(state)
    for name, module in model.named_modules():
        upgrade = getattr(module, "upgrade_state", None)
        if callable(upgrade):
            upgrade(state, f"{name}." if name else "")
    return state


def load_model_state(model: nn.Module, ckpt: dict[str, Any], source: str | Path) -> None:
    """Load the model state (:func:`upgraded_state`), refusing a checkpoint of another architecture (other
    names or shapes) with a clear message."""
    state = upgraded_state(model, ckpt["model"])
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    shape = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or extra or shape:
        detail = (f"missing {missing[0]!r}" if missing else f"unexpected {extra[0]!r}" if extra
                  else f"shape of {shape[0]!r} differs")
        raise CheckpointError(f"checkpoint {source} was saved from another architecture ({detail})")
    model.load_state_dict(state)
