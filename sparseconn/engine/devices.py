"""Device names: ``auto`` resolved, anything else checked (the CLI's ``--device`` and the Python API's
``device=``)."""

from __future__ import annotations

from sparseconn.errors import SparseconnError


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; ``cpu``, ``mps``, ``cuda`` and ``cuda:N`` are checked."""
    import torch  # here, so that importing the CLI does not import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SparseconnError(f"--device {device!r} asked for CUDA, but no CUDA device is available")
    if device not in ("cpu", "mps") and not device.startswith("cuda"):
        raise SparseconnError(f"--device must be auto, cpu, cuda or cuda:N, got {device!r}")
    return device
