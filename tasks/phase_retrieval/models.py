"""The phase task's fixed model: the classical FT + unwrapping pipeline as a network-shaped module.

Registered as ``classical`` in :data:`sparseconn.models.MODELS`, so ``sparseconn train`` (zero epochs),
``evaluate`` and ``infer`` handle it like a trained network: ``infer`` on its run folder writes the
classical phase maps as float32 TIFFs in rad. Its output has the networks' units, ``phase / phase_range``
clipped to [0, 1] (the range of the regression head's ReLU6 / 6), as the task's ``FT + unwrap
(classical)`` baseline row has.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sparseconn_tasks.phase_retrieval.classical import check_sideband, retrieve_phase
from torch import nn

from sparseconn.config import SpaceConfig
from sparseconn.errors import ConfigError, SparseconnError
from sparseconn.models import register_model
from sparseconn.task import Task


class ClassicalModel(nn.Module):
    """(B, 1, H, W) holograms -> (B, 1, H, W) ``phase / phase_range`` in [0, 1]; no parameters.

    Each hologram goes through :func:`~sparseconn_tasks.phase_retrieval.classical.retrieve_phase` (Takeda's FT
    method, polynomial aberration fit on background pixels, Herráez unwrapping) in NumPy on the CPU,
    whatever the input's device; the output is returned on the input's device.
    """

    display_name = "FT + unwrap (classical model)"
    stride = 1  # any size as it is: nothing to pad
    num_connections = None
    traceable = False  # NumPy inside: no MACs counted, no export

    def __init__(self, phase_range: float, sideband: Any = "auto", poly_order: int = 3,
                 filter_radius: float | None = None) -> None:
        super().__init__()
        if isinstance(phase_range, bool) or not isinstance(phase_range, (int, float)) or not phase_range > 0:
            raise ConfigError(f"model 'classical' phase_range must be a positive number (rad), got {phase_range!r}")
        if isinstance(poly_order, bool) or not isinstance(poly_order, int) or not 0 <= poly_order <= 6:
            raise ConfigError(f"model 'classical' poly_order must be an integer in [0, 6], got {poly_order!r}")
        if filter_radius is not None and (isinstance(filter_radius, bool) or not isinstance(filter_radius, (int, float))
                                          or not filter_radius > 0):
            raise ConfigError(f"model 'classical' filter_radius must be a positive number (cycles/px) or null, "
                              f"got {filter_radius!r}")
        try:
            self.sideband = check_sideband(sideband)
        except ValueError as exc:
            raise ConfigError(f"model 'classical': {exc}") from None
        self.phase_range = float(phase_range)
        self.poly_order = poly_order
        self.filter_radius = filter_radius

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing() or torch.compiler.is_compiling() or x.device.type == "meta":
            raise SparseconnError("model 'classical' runs NumPy on the CPU: it cannot be traced, compiled or "
                                  "exported (use `sparseconn infer` on its run folder)")
        if x.ndim != 4 or x.shape[1] != 1:
            raise SparseconnError(f"model 'classical' takes (B, 1, H, W) holograms, got shape {tuple(x.shape)}")
        holograms = x.detach().to("cpu", torch.float64).numpy()[:, 0]  # (B, H, W)
        phases = [retrieve_phase(h, filter_radius=self.filter_radius, sideband=self.sideband,
                                 poly_order=self.poly_order) for h in holograms]  # each (H, W) rad
        out = np.clip(np.stack(phases) / self.phase_range, 0.0, 1.0).astype(np.float32)[:, None]  # (B, 1, H, W)
        return torch.from_numpy(out).to(x.device)


@register_model("classical")
def classical(space: SpaceConfig, task: Task | None = None, phase_range: float | None = None,
              sideband: Any = None, poly_order: int | None = None, filter_radius: float | None = None
              ) -> ClassicalModel:
    """The classical pipeline as a model. Unset parameters come from the run's phase task: its phase range
    and its ``task.baseline`` settings (``sideband``, ``poly_order``, ``filter_radius``)."""
    from sparseconn_tasks.phase_retrieval.task import PhaseRetrievalTask

    if task is not None and not isinstance(task, PhaseRetrievalTask):
        raise ConfigError(f"model 'classical' is the phase_retrieval task's; this run's task is "
                          f"{type(task).__name__}")
    if space.in_channels != 1:
        raise ConfigError(f"model 'classical' takes one hologram channel; space.in_channels is {space.in_channels}")
    if task is None and phase_range is None:
        raise ConfigError("model 'classical' needs the run's phase task or a phase_range parameter (rad)")
    b = task.cfg.baseline if task is not None else None
    return ClassicalModel(
        phase_range=phase_range if phase_range is not None else task.phase_range,
        sideband=sideband if sideband is not None else (b.sideband if b is not None else "auto"),
        poly_order=poly_order if poly_order is not None else (b.poly_order if b is not None else 3),
        filter_radius=filter_radius if filter_radius is not None else (b.filter_radius if b is not None else None),
    )
