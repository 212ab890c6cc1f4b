"""Regenerate ``tasks/segmentation_voc_child.json``: SparseMask's published VOC child (docs/reference.md §2)
in the space of ``tasks/segmentation_voc.yaml``, pruned by sparseconn's own pruning code.

The space's 90 candidate weights are set to 1 for the 15 published connections and 0 for the rest, then
:func:`sparseconn.pruning.derive` prunes them with the config's ``prune`` settings (threshold 1e-3,
SparseMask's redundancy clean-ups), exactly as ``sparseconn prune`` does after a search. The encoder's
``pretrained`` is removed unless ``--pretrained`` is given (the file is then rebuilt without a download;
``--pretrained imagenet`` writes a child whose encoder starts from ImageNet weights, as SparseMask's did)::

    python -m sparseconn_tasks.segmentation.make_voc_child                       # the shipped file
    python -m sparseconn_tasks.segmentation.make_voc_child --pretrained imagenet --out my_child.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sparseconn.architecture import Architecture
from sparseconn.engine.config import load_run_config
from sparseconn.errors import ArchitectureError
from sparseconn.graph import edge_key
from sparseconn.pruning import derive
from sparseconn.space import SearchSpace

TASKS = Path(__file__).resolve().parents[1]  # tasks/ in a clone, sparseconn_tasks/ when installed
CONFIG = TASKS / "segmentation_voc.yaml"
OUT = TASKS / "segmentation_voc_child.json"

PUBLISHED: dict[str, tuple[str, ...]] = {
    "D1": ("E0", "G"),
    "D2": ("E2", "G"),
    "D3": ("E3", "G"),
    "D8": ("E0", "E1", "E2", "E3", "E8", "G", "D1", "D2", "D3"),
}
"""Inputs of each stage of SparseMask's searched VOC child: 15 connections."""


def make_child(config: Path = CONFIG, pretrained: str | None = None) -> Architecture:
    """The published child pruned from ``config``'s space, checked to keep exactly the 15 connections."""
    cfg = load_run_config(config)
    space = cfg.space.model_copy(deep=True)
    space.encoder.params.pop("pretrained", None)
    if pretrained is not None:
        space.encoder.params["pretrained"] = pretrained
    search_space = SearchSpace(space)
    kept = {edge_key(src, dst) for dst, srcs in PUBLISHED.items() for src in srcs}
    missing = sorted(kept - set(search_space.candidates))
    if missing:
        raise ArchitectureError(f"published connection {missing[0]} is not a candidate of {config}'s space")
    weights = {k: float(k in kept) for k in search_space.candidates}
    arch = derive(search_space.graph, space, weights, cfg.prune.threshold, cfg.prune.redundancy)
    if set(arch.connections) != kept:  # pruning dropped a published stage or kept an extra edge
        raise ArchitectureError(f"pruning kept {sorted(arch.connections)}, not the 15 published connections")
    return arch


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=CONFIG, help="run config whose space to prune")
    parser.add_argument("--pretrained", default=None, help="encoder pretrained weights (default: none)")
    parser.add_argument("--out", type=Path, default=OUT, help="where to write architecture.json")
    args = parser.parse_args(argv)
    arch = make_child(args.config, args.pretrained)
    arch.save(args.out)
    print(f"{args.out}: {len(arch.connections)} of {len(arch.candidates)} connections kept; removed stages: "
          f"{', '.join(arch.removed_stages) or 'none'}")


if __name__ == "__main__":
    main()
