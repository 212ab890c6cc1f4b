"""A new task in one file: denoising synthetic images, searched, pruned, retrained and reported like
the bundled tasks.

    sparseconn pipeline examples/denoise_task.yaml --fast-dev-run --out runs/denoise

(``examples/denoise_task.yaml`` names this module under ``plugins:``; run from the repository root.)
Drop ``--fast-dev-run`` for the real run (the sizes in the YAML). Then
``sparseconn infer runs/denoise noisy/ --out clean/`` denoises a folder of ``.npy`` images.

What a task provides (the contract is :class:`sparseconn.task.Task`):

- ``Config``: its ``task:`` section, a :class:`~sparseconn.task.TaskConfig` (unknown keys are errors).
- ``datasets``: train, validation and test items ``{"input", "target", "name"}``, here made on the fly:
  smooth random scenes (blobs and stripes) in [0, 1], plus Gaussian noise of ``sigma``.
- ``loss`` (Loss_t; the engine adds the connection losses in the search) and ``metrics`` (PSNR, MSE).
- ``baselines``: non-network methods in every report, here a Gaussian blur.
- ``read_input``/``write_output`` for ``sparseconn infer`` (``.npy`` files).

The head ``denoise_head`` maps the output stage to the clean image in [0, 1].
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from scipy.ndimage import gaussian_filter
from torch import nn
from torch.utils.data import Dataset

from sparseconn.heads import HEADS, Head, register_head
from sparseconn.task import TASKS, Task, TaskConfig, register_task, split_seeds


class DenoiseConfig(TaskConfig):
    size: int = Field(64, ge=16)
    """Image side, px."""
    sigma: float = Field(0.1, gt=0)
    """Standard deviation of the added Gaussian noise (images are in [0, 1])."""
    train_size: int = Field(256, ge=1)
    val_size: int = Field(16, ge=1)
    test_size: int = Field(16, ge=1)
    data_seed: int = 0
    """Seed of the validation and test items (the same for every run seed)."""


def scene(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size) float32 in [0, 1]: a few Gaussian blobs and one set of stripes."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.zeros((size, size))
    for _ in range(rng.integers(2, 6)):
        cy, cx, r = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.05, 0.2)
        img += rng.uniform(0.3, 1.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    angle, period = rng.uniform(0, math.pi), rng.uniform(0.1, 0.3)
    img += 0.3 * (np.sin(2 * math.pi * (xx * math.cos(angle) + yy * math.sin(angle)) / period) > 0)
    return (img / max(float(img.max()), 1e-6)).astype(np.float32)


class NoisyScenes(Dataset):
    """Item ``i`` depends on ``(seed, i)`` only."""

    def __init__(self, n: int, size: int, sigma: float, seed: int) -> None:
        self.n, self.size, self.sigma, self.seed = n, size, sigma, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, i])
        clean = scene(rng, self.size)
        noisy = clean + rng.normal(0.0, self.sigma, clean.shape).astype(np.float32)
        return {"input": torch.from_numpy(noisy)[None], "target": torch.from_numpy(clean)[None],
                "name": f"scene_{self.seed}_{i:05d}"}


class DenoiseHead(Head):
    """D_out (B, C, h, w) -> (B, 1, H, W): a 1x1 conv at the stage's resolution, up-sampled to the input
    size and bounded to [0, 1] by a sigmoid: the clean image."""

    def __init__(self, in_channels: int, out_channels: int = 1) -> None:
        super().__init__(in_channels, out_channels)
        self.conv = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, input_size: tuple[int, int]) -> torch.Tensor:
        y = F.interpolate(self.conv(x), size=input_size, mode="bilinear", align_corners=False)
        return torch.sigmoid(y)


class DenoiseTask(Task):
    Config = DenoiseConfig
    primary_metric = "psnr"
    higher_is_better = True
    metric_names = ("psnr", "mse")
    metric_labels = {"psnr": "PSNR (dB)", "mse": "MSE"}
    fast_dev_run = {"train_size": 8, "val_size": 2, "test_size": 2}
    input_suffixes = (".npy",)
    output_suffix = ".npy"

    def datasets(self, seed: int) -> dict[str, Dataset]:
        c = self.cfg
        seeds = split_seeds(seed, c.data_seed)
        return {"train": NoisyScenes(c.train_size, c.size, c.sigma, seeds["train"]),
                "val": NoisyScenes(c.val_size, c.size, c.sigma, seeds["val"]),
                "test": NoisyScenes(c.test_size, c.size, c.sigma, seeds["test"])}

    def loss(self, output: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        return F.mse_loss(output, batch["target"])

    def metrics(self, output: torch.Tensor, batch: dict[str, Any]) -> dict[str, float]:
        mse = F.mse_loss(output.float(), batch["target"].float(), reduction="none").flatten(1).mean(1)  # (B,)
        return {"mse": float(mse.mean()), "psnr": float((-10 * torch.log10(mse.clamp_min(1e-12))).mean())}

    def baselines(self) -> dict[str, Any]:
        sigma = 1.0

        def gaussian_blur(x: np.ndarray) -> np.ndarray:
            return gaussian_filter(x, sigma=(0, sigma, sigma)).astype(np.float32)

        return {"Gaussian blur (σ = 1 px)": gaussian_blur}

    def example_input(self, size: tuple[int, int], seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return (scene(rng, size[0])[None, :, : size[1]] + rng.normal(0, self.cfg.sigma, (1, size[0], size[1]))
                ).astype(np.float32)

    def read_input(self, path: Path) -> np.ndarray:
        x = np.load(path, allow_pickle=False).astype(np.float32)
        return x[None] if x.ndim == 2 else x

    def write_output(self, output: np.ndarray, path: Path) -> Path:
        target = path.with_suffix(".npy")
        target.parent.mkdir(parents=True, exist_ok=True)
        np.save(target, output.astype(np.float32))
        return target


# Registered once, also when the module is imported under a second name.
if "denoise_head" not in HEADS:
    register_head("denoise_head")(DenoiseHead)
if "denoise" not in TASKS:
    register_task("denoise")(DenoiseTask)
