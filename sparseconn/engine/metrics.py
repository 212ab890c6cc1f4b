"""Summing a task's metric statistics over batches and DDP ranks (see ``Task.metric_sums``)."""

from __future__ import annotations

from typing import Any

import torch

from sparseconn.engine.distributed import DistInfo, all_reduce_sum
from sparseconn.task import COUNT, Task


class MetricAccumulator:
    """``add`` every batch; ``result`` sums over ranks and reduces to the split's metrics.

    ``extra`` values (e.g. the loss) are averaged over samples beside the task's own statistics.
    """

    def __init__(self, task: Task) -> None:
        self.task = task
        self.sums: dict[str, torch.Tensor] = {}
        self.extra: dict[str, float] = {}
        self.n = 0.0

    def add(self, output: torch.Tensor, batch: dict[str, Any], extra: dict[str, float] | None = None) -> None:
        for k, v in self.task.metric_sums(output, batch).items():
            v = torch.as_tensor(v).detach().to("cpu", torch.float64)
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
        b = float(batch["input"].shape[0])
        for k, v in (extra or {}).items():
            self.extra[k] = self.extra.get(k, 0.0) + float(v) * b
        self.n += b

    def result(self, dist: DistInfo | None = None, device: str = "cpu") -> dict[str, float]:
        keys = sorted(self.sums)
        extra_keys = sorted(self.extra)
        shapes = [self.sums[k].shape for k in keys]
        # one flat vector: every statistic, the extras and the sample count, reduced in one call
        flat = torch.cat([*(self.sums[k].reshape(-1) for k in keys),
                          torch.tensor([self.extra[k] for k in extra_keys] + [self.n], dtype=torch.float64)])
        if dist is not None and dist.enabled:
            flat = all_reduce_sum(flat.to(device), dist).cpu()
        n = float(flat[-1])
        if n == 0:
            return {}
        out: dict[str, float] = {}
        pos = 0
        sums = {}
        for k, shape in zip(keys, shapes, strict=True):
            size = int(torch.Size(shape).numel())
            sums[k] = flat[pos:pos + size].reshape(shape)
            pos += size
        for i, k in enumerate(extra_keys):
            out[k] = float(flat[pos + i]) / n
        metrics = self.task.reduce_metrics(sums)
        names = self.task.metric_names  # the task's order first (tables print columns in it)
        out.update({k: metrics[k] for k in names if k in metrics})
        out.update({k: v for k, v in metrics.items() if k not in names})
        return out


__all__ = ["COUNT", "MetricAccumulator"]
