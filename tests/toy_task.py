"""A tiny regression task for engine tests: smooth random images in, their blurred copy out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from sparseconn.heads import HEADS, Head, register_head
from sparseconn.task import TASKS, Task, TaskConfig, register_task


class ToyConfig(TaskConfig):
    size: int = 32
    train_size: int = 16
    val_size: int = 4
    test_size: int = 2


class ToyData(Dataset):
    def __init__(self, n: int, size: int, seed: int) -> None:
        self.n, self.size, self.seed = n, size, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        g = torch.Generator().manual_seed(self.seed * 1000 + i)
        x = F.avg_pool2d(torch.rand(1, 1, self.size, self.size, generator=g), 5, 1, 2)[0]
        y = F.avg_pool2d(x[None], 3, 1, 1)[0].clamp(0, 1)
        return {"input": x, "target": y, "name": f"toy{i}"}


if "toy_head" not in HEADS:
    @register_head("toy_head")
    class ToyHead(Head):
        def __init__(self, in_channels: int, out_channels: int = 1) -> None:
            super().__init__(in_channels, out_channels)
            self.conv = nn.Conv2d(in_channels, out_channels, 1)

        def forward(self, x: torch.Tensor, input_size: tuple[int, int]) -> torch.Tensor:
            return torch.sigmoid(F.interpolate(self.conv(x), size=input_size, mode="bilinear"))


if "toy" not in TASKS:
    @register_task("toy")
    class ToyTask(Task):
        Config = ToyConfig
        primary_metric = "mse"
        higher_is_better = False
        metric_names = ("mse",)
        output_suffix = ".npy"
        fast_dev_run = {"train_size": 8}

        def datasets(self, seed: int) -> dict[str, Dataset]:
            c = self.cfg
            return {"train": ToyData(c.train_size, c.size, seed), "val": ToyData(c.val_size, c.size, seed + 1),
                    "test": ToyData(c.test_size, c.size, seed + 2)}

        def loss(self, output: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
            return F.mse_loss(output, batch["target"])

        def metrics(self, output: torch.Tensor, batch: dict[str, Any]) -> dict[str, float]:
            return {"mse": F.mse_loss(output, batch["target"]).item()}

        def read_input(self, path: Path) -> np.ndarray:
            return np.load(path, allow_pickle=False).astype(np.float32)[None]

        def write_output(self, output: np.ndarray, path: Path) -> Path:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path.with_suffix(".npy"), output)
            return path.with_suffix(".npy")


TOY_YAML = """
seed: 0
plugins: [tests.toy_task]
task: {name: toy}
space:
  encoder: {name: tiny, params: {channels: [8, 8], strides: [2, 4]}}
  ground: [{name: G, source: -1, size: 1}]
  decoder: {depth: {rule: constant, value: 8}}
  head: {name: toy_head}
search:
  epochs: 2
  batch_size: 4
  regularizers:
    - {name: binary_entropy, coef: 0.005}
    - {name: global_sparsity, coef: 0.001}
train: {epochs: 2, batch_size: 4}
prune: {threshold: 0.3}
evaluate: {latency_size: [32, 32], latency_runs: 1}
"""


def write_toy_config(folder: Path) -> Path:
    p = Path(folder) / "toy.yaml"
    p.write_text(TOY_YAML)
    return p
