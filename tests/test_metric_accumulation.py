"""Split-level metrics: the default sample-weighted mean, and a dataset-level metric (IoU from a summed
confusion matrix) that is not the mean of per-batch values."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from sparseconn.engine.metrics import MetricAccumulator
from sparseconn.task import Task


class MeanTask(Task):
    def metrics(self, output: torch.Tensor, batch: dict[str, Any]) -> dict[str, float]:
        return {"mae": float((output - batch["target"]).abs().mean())}


class IoUTask(Task):
    """Binary IoU of the foreground: intersection / union summed over the split, not averaged."""

    def metric_sums(self, output: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        pred, target = output > 0.5, batch["target"] > 0.5
        conf = torch.zeros(2, 2, dtype=torch.float64)  # rows: truth, columns: prediction
        for t in (0, 1):
            for p in (0, 1):
                conf[t, p] = float(((target == bool(t)) & (pred == bool(p))).sum())
        return {"confusion": conf}

    def reduce_metrics(self, sums: dict[str, torch.Tensor]) -> dict[str, float]:
        c = sums["confusion"]
        return {"iou": float(c[1, 1] / (c[1, 1] + c[0, 1] + c[1, 0]))}


def batch(pred: list[float], target: list[float]) -> tuple[torch.Tensor, dict[str, Any]]:
    out = torch.tensor(pred).view(-1, 1, 1, 1)
    return out, {"input": out, "target": torch.tensor(target).view(-1, 1, 1, 1)}


def test_default_is_the_sample_weighted_mean() -> None:
    acc = MetricAccumulator(MeanTask(None))
    acc.add(*batch([1.0, 1.0, 1.0], [0.0, 0.0, 0.0]), extra={"loss": 3.0})  # mae 1 over 3 samples
    acc.add(*batch([0.0], [0.0]), extra={"loss": 7.0})  # mae 0 over 1 sample
    res = acc.result()
    assert res["mae"] == pytest.approx(0.75)  # not (1 + 0) / 2
    assert res["loss"] == pytest.approx((3.0 * 3 + 7.0) / 4)


def test_a_dataset_level_metric_sums_its_statistics() -> None:
    acc = MetricAccumulator(IoUTask(None))
    acc.add(*batch([1.0, 1.0], [1.0, 0.0]))  # TP 1, FP 1 -> batch IoU 0.5
    acc.add(*batch([1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]))  # TP 1, FN 3 -> batch IoU 0.25
    assert acc.result()["iou"] == pytest.approx(2 / 6)  # split IoU: TP 2 / (TP 2 + FP 1 + FN 3)


def test_empty_split_gives_no_metrics() -> None:
    assert MetricAccumulator(MeanTask(None)).result() == {}


def test_metrics_come_in_the_tasks_order() -> None:
    class Ordered(MeanTask):
        metric_names = ("zeta", "alpha")

        def metrics(self, output: torch.Tensor, batch: dict[str, Any]) -> dict[str, float]:
            return {"alpha": 1.0, "mid": 2.0, "zeta": 3.0}

    acc = MetricAccumulator(Ordered(None))
    acc.add(*batch([0.0], [0.0]), extra={"loss": 1.0})
    assert list(acc.result()) == ["loss", "zeta", "alpha", "mid"]
