"""The task contract: what a task adds to the core (data, loss, metrics, I/O, baselines).

A task is one small class registered by name; its ``Config`` (a :class:`TaskConfig` subclass: a strict
pydantic model) validates the ``task:`` section of a run config. Batches are dicts with at least
``input`` (B, C, H, W) and ``target``; ``name`` (list of str) is optional.

Example::

    @register_task("my_task")
    class MyTask(Task):
        Config = MyTaskConfig
        primary_metric = "miou"
        def datasets(self, seed): return {"train": ..., "val": ..., "test": ...}
        def loss(self, output, batch): ...
        def metrics(self, output, batch): return {"miou": ...}

Metrics are summed over a split through :meth:`Task.metric_sums` / :meth:`Task.reduce_metrics`; the
default averages :meth:`Task.metrics` over samples, a task with a dataset-level metric (mIoU from a
confusion matrix) overrides the pair.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel
from torch.utils.data import Dataset

from sparseconn.errors import SparseconnError
from sparseconn.registry import Registry, make_register
from sparseconn.schema import StrictModel


def split_seeds(run_seed: int, data_seed: int) -> dict[str, int]:
    """Seeds of generated ``train``/``val``/``test`` splits. Training items follow the run seed; validation
    and test items depend on ``data_seed`` only, so runs with different ``--seed`` are scored on the
    same items (the offsets keep the three streams apart)."""
    return {"train": run_seed, "val": data_seed + 1_000_003, "test": data_seed + 2_000_003}


COUNT = "_count"
"""Key of the sample count in the default :meth:`Task.metric_sums`."""


class TaskConfig(StrictModel):
    """Base of a task's ``Config``: the ``task:`` section of a run config, unknown keys rejected. A run
    config carries its task section as this typed object (``cfg.task``)."""

    name: str | None = None
    """The task's registry name (``task.name`` of the run config)."""


class Task:
    """Base class of every task. Subclasses set ``Config`` and implement the data/loss/metric hooks."""

    Config: ClassVar[type[BaseModel]] = TaskConfig
    primary_metric: ClassVar[str] = "loss"
    """Validation metric that picks ``best.pt``."""
    higher_is_better: ClassVar[bool] = False
    metric_names: ClassVar[tuple[str, ...]] = ()
    fast_dev_run: ClassVar[dict[str, Any]] = {}
    """``task.*`` overrides (dotted keys below ``task``) that shrink the data for ``--fast-dev-run``."""
    input_suffixes: ClassVar[tuple[str, ...]] = (".tif", ".tiff", ".png", ".npy")
    """File types ``infer`` picks up from a folder (lower case)."""
    output_suffix: ClassVar[str | None] = None
    """The suffix :meth:`write_frames` gives an output file (``".tif"``: input ``a.png`` -> ``a.tif``), so
    that ``infer`` can check before any work that no output replaces an input or an existing file. None
    (unknown): ``infer`` takes any file ``STEM.*`` in the output folder for one it may replace."""
    metric_labels: ClassVar[dict[str, str]] = {}
    """How reports print metric names (e.g. ``{"miou": "mIoU"}``); unlisted names print as they are."""
    display_names: ClassVar[dict[str, str]] = {"supernet": "supernet", "child": "child"}
    """How reports name the searched supernet and its derived child."""

    target_scale: float | None = None
    """What the head's output 1 stands for in the task's units (the phase task: its phase range, rad), or
    None. Training hands it to the input op before the first step (:meth:`~sparseconn.inputs.InputOp.
    set_target_scale`), which keeps it as module state where its :meth:`~sparseconn.inputs.InputOp.finish`
    needs it, so a model trained on another range carries its own."""

    @classmethod
    def check_space(cls, cfg: BaseModel, space: Any) -> None:
        """Cross-check the task's config against the run's ``space`` section when the config is loaded
        (e.g. the number of classes against the head's); raise ``ValueError`` with a one-line reason."""

    def __init__(self, cfg: BaseModel) -> None:
        self.cfg = cfg

    def datasets(self, seed: int) -> dict[str, Dataset]:
        """``{"train", "val", "test"}`` datasets; training items may be augmented per epoch."""
        raise NotImplementedError  # abstract

    def loss(self, output: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """The task loss Loss_t (a scalar)."""
        raise NotImplementedError  # abstract

    def metrics(self, output: torch.Tensor, batch: dict[str, Any]) -> dict[str, float]:
        """Per-batch means of the task's metrics (averaged over batches by sample count)."""
        raise NotImplementedError  # abstract

    def metric_sums(self, output: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Additive statistics of one batch, summed over batches (and DDP ranks) before
        :meth:`reduce_metrics`. Override both for metrics that are not means of per-batch values,
        e.g. mIoU from a summed (K, K) confusion matrix. Default: :meth:`metrics` weighted by batch size.
        """
        b = float(batch["input"].shape[0])
        sums = {k: torch.tensor(float(v) * b, dtype=torch.float64) for k, v in self.metrics(output, batch).items()}
        sums[COUNT] = torch.tensor(b, dtype=torch.float64)
        return sums

    def reduce_metrics(self, sums: dict[str, torch.Tensor]) -> dict[str, float]:
        """Metrics of a whole split from the summed :meth:`metric_sums` (default: sample-weighted means)."""
        n = float(sums[COUNT]) if COUNT in sums else 0.0
        return {k: float(v) / n for k, v in sums.items() if k != COUNT} if n > 0 else {}

    def read_input(self, path: Path) -> np.ndarray:
        """One input for ``sparseconn infer``: (C, H, W) float32."""
        raise NotImplementedError  # abstract

    def write_output(self, output: np.ndarray, path: Path) -> Path:
        """Write one prediction (C, H, W) for ``sparseconn infer``. ``path`` is the input's file name in the
        output folder; the task replaces its suffix with its own (``path.with_suffix(".tif")``) and
        returns the path written."""
        raise NotImplementedError  # abstract

    def iter_frames(self, path: Path) -> Iterator[np.ndarray]:
        """The frames of one input file for ``infer``, each (C, H, W) float32, read one at a time (a file
        may hold a stack of frames; ``infer`` never asks for the next frame before it needs it).
        Default: :meth:`read_input` once."""
        yield self.read_input(path)

    def frame_count(self, path: Path) -> int | None:
        """How many frames :meth:`iter_frames` yields for ``path``, from the file's header (for the progress
        bar and the choice of inference engine); None when unknown. Default: 1 when :meth:`iter_frames` is
        the default, else None."""
        return 1 if type(self).iter_frames is Task.iter_frames else None

    def write_frames(self, frames: Iterator[np.ndarray], path: Path) -> Path:
        """Write the predictions of one input file's frames, (C, H, W) each, in order, as one output file;
        take them one at a time from ``frames`` (a stack is never held whole). ``path`` is as in
        :meth:`write_output`; returns the path written. Default: the single frame through
        :meth:`write_output`."""
        first = next(frames)
        if next(frames, None) is not None:
            raise SparseconnError(f"{path.name}: the input holds several frames, but {type(self).__name__} writes "
                                  "one prediction per file")
        return self.write_output(first, path)

    def baselines(self) -> dict[str, Callable[..., np.ndarray]]:
        """Non-network methods evaluated beside the networks: name -> ``fn(input (C, H, W)) -> output``.

        A baseline that needs more of the item than its input lists those batch keys in a ``needs``
        attribute and gets them as keyword arguments (``fn(x, background=...)``); ``evaluate`` skips it,
        with a note, on a split whose items lack one of them. ``timed = False`` on a baseline leaves its
        latency out (a reference score such as "predict zero" is not a method to time).
        """
        return {}

    def eval_sets(self, seed: int) -> dict[str, Dataset]:
        """Extra test sets that ``evaluate`` scores beside the ``test`` split, by display name (e.g. a
        cross-domain set made from other settings than the training data). Default: none."""
        return {}

    def example_input(self, size: tuple[int, int], seed: int = 0) -> np.ndarray:
        """A representative (C, H, W) input of ``size`` for latency measurements."""
        rng = np.random.default_rng(seed)
        return rng.standard_normal((1, *size)).astype(np.float32)

    def panels(self, batch: dict[str, Any], outputs: dict[str, np.ndarray], scores: dict[str, str]) -> Any:
        """A matplotlib figure comparing outputs on one test item, or None."""
        return None

    def set_epoch(self, datasets: dict[str, Dataset], epoch: int) -> None:
        """Re-seed per-epoch augmentation (called before every training epoch)."""
        for ds in datasets.values():
            if hasattr(ds, "set_epoch"):
                ds.set_epoch(epoch)


TASKS: Registry[type[Task]] = Registry("task")
register_task = make_register(TASKS)
