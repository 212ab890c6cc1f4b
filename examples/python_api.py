"""The Python API without the CLI: a search space written as a Python dict, a search watched epoch by
epoch, the accuracy-cost trade-off of several pruning thresholds, and the chosen child retrained,
evaluated and drawn.

    python examples/python_api.py --fast-dev-run --out runs/api

Everything here is ``import sparseconn as sc`` (``sparseconn/api.py``); the run folders are the CLI's, so
``sparseconn evaluate runs/api/child`` works on them too.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import sparseconn as sc

# The tiny phase-retrieval space of tasks/phase_retrieval_tiny.yaml, as data: 64x64 holograms, two encoder
# features, one ground feature, two decoder stages and the paper's dense rule (7 candidate connections).
CONFIG = {
    "seed": 0,
    "task": {"name": "phase_retrieval", "data": {
        "source": "synthetic", "train_size": 64, "val_size": 8, "test_size": 8, "cross_domain_size": 0,
        "sim": {"size": 64, "carrier_period": 3.0, "semi_axis": [8, 14], "n_cells": [1, 2], "tilt": 0.5,
                "defocus": 0.5, "astigmatism": 0.3, "coma": 0.2}}},
    "space": {
        "input": {"name": "sideband"},
        "encoder": {"name": "tiny", "params": {"channels": [8, 16], "strides": [2, 4]}},
        "ground": [{"name": "G", "source": -1, "size": 1}],
        "decoder": {"depth": {"rule": "constant", "value": 8}},
        "edges": {"rule": "dense"},
        "head": {"name": "regression", "params": {"out_channels": 1}},
    },
    "search": {"epochs": 6, "batch_size": 8, "regularizers": [
        {"name": "binary_entropy", "coef": 5.0e-3}, {"name": "global_sparsity", "coef": 2.0e-3}]},
    "train": {"epochs": 6, "batch_size": 8},
    "evaluate": {"latency_size": [256, 256], "latency_runs": 3},
}
FAST = {"search.epochs": 1, "train.epochs": 1, "search.limit_train_batches": 2, "train.limit_train_batches": 2,
        "task.data.train_size": 8, "task.data.val_size": 2, "task.data.test_size": 2}


def watch(epoch: int, record: dict) -> None:
    """Called after every search epoch with its line of metrics.jsonl."""
    print(f"  epoch {epoch}: val PSNR {record.get('val_psnr', float('nan')):.2f} dB, "
          f"{record.get('live_connections')} live connections")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/api"), help="parent folder of the runs")
    parser.add_argument("--fast-dev-run", action="store_true", help="one tiny epoch each, for a smoke test")
    args = parser.parse_args(argv)

    cfg = sc.load_config(CONFIG, FAST if args.fast_dev_run else None)
    print("search:")
    search = sc.search(cfg, args.out / "search", progress=False, callbacks=[watch])

    # Thresholds between the learned weights: keep all, about two thirds, about half of the connections.
    weights = sorted(sc.load_model(search, "last").net.connections.snapshot().values())
    thresholds = sorted({weights[int(q * (len(weights) - 1))] for q in (0.0, 0.34, 0.5)})
    print("threshold  connections  params  MACs at 256x256")
    for threshold in thresholds:
        try:
            arch = sc.prune(search, threshold, checkpoint="last", out=args.out / f"architecture-{threshold:.4f}.json")
        except sc.SparseconnError as exc:  # e.g. nothing left that reaches the output
            print(f"{threshold:9.4f}  no child: {exc}")
            continue
        cost = sc.profile(sc.build_child(arch), (1, 1, 256, 256))
        print(f"{threshold:9.4f}  {len(arch.connections):4d} of {len(arch.candidates)}  "
              f"{cost.params:6d}  {cost.macs / 1e6:7.1f} M")

    arch = sc.prune(search, thresholds[len(thresholds) // 2], checkpoint="last")  # kept: RUN/architecture.json
    child = sc.train(cfg, arch, args.out / "child", inherit=search, progress=False)
    table = sc.evaluate(child, latency=not args.fast_dev_run)
    for row in table["rows"]:
        print(f"{row['model']:<40} {row['psnr']:6.2f} dB  {row['rmse_rad']:.3f} rad")
    print("drawings:", ", ".join(p.name for p in sc.draw(search, args.out / "figures", formats=("svg",))))


if __name__ == "__main__":
    main()
