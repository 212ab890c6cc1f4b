"""How much does a trained phase model's output move when only the camera changes?

For a few simulated fields (the run's own simulator, recorded as floats), the model's phase (rad) on
the hologram is compared with its phase on the same hologram scaled by 0.3 and by 3, offset by 0.2
(a dark level), and quantised to 8, 12 and 16 bits. Prints the RMSE in rad for each change.

    python examples/exposure_check.py runs/demo-.../ [-n 8]

The numbers in docs/measurements.md came from this script.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from sparseconn.engine.inference import predict
from sparseconn.engine.loading import load_model, make_task


def _quantise(h: np.ndarray, bits: int) -> np.ndarray:
    levels = 2**bits - 1
    return np.round(np.clip(h, 0.0, 1.0) * levels) / levels


CHANGES = {
    "gain x0.3": lambda h: 0.3 * h,
    "gain x3": lambda h: 3.0 * h,
    "offset +0.2": lambda h: h + 0.2,
    "8-bit": lambda h: _quantise(h, 8),
    "12-bit": lambda h: _quantise(h, 12),
    "16-bit": lambda h: _quantise(h, 16),
}


def exposure_check(run: Path, n: int = 8, seed: int = 123) -> dict[str, float]:
    """RMSE (rad) between the model's phase on float holograms and on each changed copy, over ``n`` fields."""
    from sparseconn_tasks.phase_retrieval.simulate import SimConfig, simulate

    lm = load_model(run)
    task = make_task(lm.cfg)
    sim = SimConfig.model_validate({**task.cfg.data.sim.model_dump(), "bit_depth": None})  # floats: quantise here
    net = lm.net.eval()
    pr = task.phase_range
    errs: dict[str, list[float]] = {k: [] for k in CHANGES}
    for i in range(n):
        holo = simulate(sim, np.random.default_rng([seed, i])).hologram.astype(np.float64)

        def phase(h: np.ndarray) -> np.ndarray:
            x = torch.from_numpy(h.astype(np.float32))[None, None]  # (1, 1, H, W)
            return predict(net, x)[0, 0].numpy() * pr  # rad

        ref = phase(holo)
        for name, change in CHANGES.items():
            errs[name].append(float(np.sqrt(np.mean((phase(change(holo)) - ref) ** 2))))
    return {k: float(np.mean(v)) for k, v in errs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a run folder or checkpoint of the phase_retrieval task")
    parser.add_argument("-n", type=int, default=8, help="number of simulated fields")
    args = parser.parse_args()
    for name, err in exposure_check(args.run, args.n).items():
        print(f"{name:12s} RMSE {err:.4f} rad")


if __name__ == "__main__":
    main()
