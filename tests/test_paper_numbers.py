"""The paper's super-PRNet and SparseMask's decoder, expressed purely as configuration."""

from __future__ import annotations

from sparseconn.config import load_space_config
from sparseconn.encoders import skip_pretrained
from sparseconn.network import build_child, build_supernet
from sparseconn.profiling import count_macs, count_params
from sparseconn.pruning import derive
from sparseconn.space import SearchSpace


def test_super_prnet_params_and_macs_near_table_1():
    cfg = load_space_config("tasks/phase_retrieval.yaml")
    net = build_supernet(SearchSpace(cfg))
    assert net.num_connections == 100
    params = count_params(net)
    macs = count_macs(net, (1, 1, 1024, 1024))
    # Table I: 7.2M parameters and 17.5G "FLOPs" (multiply-accumulates); within 15%.
    assert abs(params / 7.2e6 - 1) < 0.15, params
    assert abs(macs / 17.5e9 - 1) < 0.15, macs


def test_sparsemask_voc_child_has_056m_decoder_and_head_params():
    # The VOC config (21 classes); tasks/segmentation.yaml has the same space with a 6-class head.
    cfg = load_space_config("tasks/segmentation_voc.yaml")
    assert cfg.head.params["num_classes"] == 21
    assert cfg.encoder.params == {"width": 1.0, "pretrained": "imagenet"}  # the paper's ImageNet init
    voc = cfg.model_dump(exclude={"head"})
    del voc["encoder"]["params"]["pretrained"]
    assert voc == load_space_config("tasks/segmentation.yaml").model_dump(exclude={"head"})
    space = SearchSpace(cfg)
    assert len(space.candidates) == 90
    # The published VOC architecture: 15 connections.
    kept = {"E0->D1", "G->D1", "E2->D2", "G->D2", "E3->D3", "G->D3"}
    kept |= {f"{s}->D8" for s in ("E0", "E1", "E2", "E3", "E8", "G", "D1", "D2", "D3")}
    arch = derive(space.graph, cfg, {k: float(k in kept) for k in space.candidates})
    assert sorted(arch.connections) == sorted(kept)
    with skip_pretrained():  # counts parameters only: no ImageNet download
        child = build_child(arch)
    decoder_and_head = count_params(child) - count_params(child.encoder)
    assert abs(decoder_and_head / 0.56e6 - 1) < 0.01, decoder_and_head
