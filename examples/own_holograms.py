"""Bring your own holograms: ground truth by the classical pipeline, a network trained on them, and every
hologram of a folder retrieved by it.

    python examples/own_holograms.py --demo runs/own --fast-dev-run

With your microscope's frames, pass the folder instead of ``--demo``::

    python examples/own_holograms.py --raw my_raw/ runs/own

``my_raw/interferograms/`` holds the holograms (8- or 16-bit TIFF/PNG, or float TIFF/NPY) and, if you
have them, ``my_raw/backgrounds/NAME.*`` (one sample-free hologram per frame) or one
``my_raw/backgrounds/background.*``. ``--demo`` writes a stand-in for such a folder first: 16-bit
frames and backgrounds from the simulator (``tasks/phase_retrieval/simulate.py``).

The three steps are the ordinary commands, printed as they run:

1. ``sparseconn data truth RAW --out RUN/data``: each phase by Takeda's FT method, aberrations removed by
   the background (or a polynomial fit), unwrapped: ``RUN/data/phases/`` and ``meta.json``.
2. ``sparseconn train tasks/phase_retrieval.yaml --arch tasks/phase_retrieval/architectures/demo_child.json``
   with ``task.data.source=folder``: the shipped NAS-PRNet child, trained on those pairs.
3. ``sparseconn infer RUN/child RAW/interferograms --out RUN/phases``: one float32 TIFF phase map (rad)
   per hologram, at the hologram's size.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[1]
CHILD = ROOT / "tasks" / "phase_retrieval" / "architectures" / "demo_child.json"
CONFIG = ROOT / "tasks" / "phase_retrieval.yaml"


def write_demo(raw: Path, n: int, size: int, seed: int = 0) -> None:
    """A stand-in microscope folder: ``n`` simulated 16-bit holograms with their backgrounds."""
    from sparseconn_tasks.phase_retrieval.simulate import SimConfig, simulate

    small = {"carrier_period": 3.0, "semi_axis": (8, 14), "n_cells": (1, 2), "tilt": 0.5, "defocus": 0.5,
             "astigmatism": 0.3, "coma": 0.2}  # few, small cells and mild aberrations fit a 64x64 field
    cfg = SimConfig(size=size, **(small if size < 128 else {}))
    rng = np.random.default_rng(seed)
    for sub in ("interferograms", "backgrounds"):
        (raw / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        sample = simulate(cfg, rng)
        for sub, frame in (("interferograms", sample.hologram), ("backgrounds", sample.background)):
            tifffile.imwrite(raw / sub / f"cell_{i:03d}.tif", np.round(np.clip(frame, 0, 1) * 65535).astype(np.uint16))


def sparseconn(*args: object) -> None:
    """Run one ``sparseconn`` command (with this Python), printed first; stop on failure."""
    cmd = [sys.executable, "-m", "sparseconn", *map(str, args)]
    print("$ sparseconn " + shlex.join(cmd[3:]), flush=True)
    done = subprocess.run(cmd, check=False)
    if done.returncode != 0:
        raise SystemExit(done.returncode)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--raw", type=Path, help="your folder with interferograms/ (and backgrounds/)")
    source.add_argument("--demo", action="store_true", help="write a simulated stand-in folder first")
    parser.add_argument("out", type=Path, help="run folder to create (must not exist)")
    parser.add_argument("--fast-dev-run", action="store_true", help="tiny sizes and two batches, for a smoke test")
    args = parser.parse_args(argv)
    if args.out.exists():
        parser.error(f"{args.out} exists; choose a new folder")
    raw = args.raw
    if args.demo:
        raw = args.out / "raw"
        write_demo(raw, n=12 if args.fast_dev_run else 200, size=64 if args.fast_dev_run else 256)
    data, child, phases = args.out / "data", args.out / "child", args.out / "phases"
    sparseconn("data", "truth", raw, "--out", data, "--quiet")
    fast = ["--fast-dev-run"] if args.fast_dev_run else []
    sparseconn("train", CONFIG, "--arch", CHILD, "--out", child, "--quiet", *fast,
               "--set", "task.data.source=folder", "--set", f"task.data.root={data}",
               "--set", "task.data.cross_domain_size=0", "--set", "train.inherit=false")
    sparseconn("infer", child, raw / "interferograms", "--out", phases)
    print(f"phase maps in {phases}")


if __name__ == "__main__":
    main()
