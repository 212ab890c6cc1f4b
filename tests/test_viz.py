"""Drawings and reports from plain data: graphs built by hand, synthetic logs, tiny arrays."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import matplotlib.image as mpimg
import networkx as nx
import numpy as np
import pytest

from sparseconn.errors import ArchitectureError, SparseconnError
from sparseconn.viz import (
    _layout,
    comparison_rows,
    draw_connections,
    draw_pair,
    load_connections,
    plot_trajectories,
    save_figure,
    write_dot,
    write_graphml,
    write_report,
)
from sparseconn.viz.graph import _plan

DPI = 120
STRIDES = [2, 2, 4, 8, 16, 16, 32, 32]


def super_prnet() -> nx.DiGraph:
    """The paper's super-PRNet as the core builds it: E1..E8, G (3x3 pool), D1..D8, head on D1."""
    g = nx.DiGraph(output="D1")
    for i, (c, s) in enumerate(zip([32, 16, 24, 32, 64, 96, 160, 320], STRIDES, strict=True)):
        g.add_node(f"E{i + 1}", kind="encoder", channels=c, stride=s, size=None, feature=i, order=i)
    g.add_node("G", kind="ground", channels=1280, stride=None, size=3, feature=7, order=0)
    for level in range(1, 9):  # D_l is processed at position 8 - l (0 = deepest)
        g.add_node(f"D{level}", kind="decoder", channels=8 * level, stride=STRIDES[level - 1], size=None,
                   feature=level - 1, order=8 - level)
    g.add_node("H", kind="head", channels=1, stride=None, size=None, order=0)
    for level in range(1, 9):
        for src in [f"E{i}" for i in range(1, 9)] + ["G"] + [f"D{j}" for j in range(level + 1, 9)]:
            g.add_edge(src, f"D{level}", candidate=True)
    g.add_edge("D1", "H", candidate=False)
    return g


def weights_42(g: nx.DiGraph) -> dict[str, float]:
    """Weights that keep 42 connections, every stage fed and used (E_l->D_l, D_l->D_{l-1} and more)."""
    rng = np.random.default_rng(0)
    keys = [f"{u}->{v}" for u, v, c in g.edges(data="candidate") if c]
    must = {f"E{i}->D{i}" for i in range(1, 9)} | {f"D{i}->D{i - 1}" for i in range(2, 9)}
    extra = set(rng.choice(sorted(set(keys) - must), 42 - len(must), replace=False))
    return {k: float(rng.uniform(0.05, 1.0) if k in must | extra else rng.uniform(0, 5e-4)) for k in keys}


def child_of(g: nx.DiGraph, weights: dict[str, float], drop: tuple[str, ...] = ()) -> nx.DiGraph:
    child = g.copy()
    child.remove_edges_from([(u, v) for u, v, c in g.edges(data="candidate") if c and weights[f"{u}->{v}"] < 1e-3])
    child.remove_nodes_from(drop)
    return child


def edge_set(g: nx.DiGraph) -> set[tuple[str, str]]:
    return {(str(u), str(v)) for u, v in g.edges}


def check_png(path: Path, size_in: tuple[float, float]) -> np.ndarray:
    """A valid PNG of exactly figure-size x dpi pixels that is not blank."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(path)
    expected = np.array([size_in[1], size_in[0]]) * DPI  # (H, W) pixels
    assert np.all(np.abs(np.array(img.shape[:2]) - expected) <= 1), (img.shape, expected)
    rgb = img[..., :3]
    assert rgb.std() > 0.05
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 10
    return img


@pytest.fixture(scope="module")
def prnet() -> tuple[nx.DiGraph, dict[str, float], nx.DiGraph]:
    g = super_prnet()
    w = weights_42(g)
    return g, w, child_of(g, w)


def test_super_graph_fixture_matches_the_paper(prnet):
    g, w, child = prnet
    assert sum(1 for *_, c in g.edges(data="candidate") if c) == 100
    assert sum(1 for *_, c in child.edges(data="candidate") if c) == 42


def test_layout_aligns_decoders_with_encoders_and_no_edge_crosses_a_box(prnet):
    g, w, child = prnet
    pos = _layout.compute_layout(g)
    for level in range(1, 9):
        assert pos[f"D{level}"][0] == pos[f"E{level}"][0]
    assert pos["G"][0] > pos["E8"][0] and pos["H"][0] < pos["D1"][0]
    # A child without D2 and D5: D6 still sits under E6, not under the first free stride-16 encoder.
    dropped = _layout.compute_layout(child_of(g, w, drop=("D2", "D5")))
    assert dropped["D6"][0] == pos["E6"][0] and dropped["D1"][0] == pos["E1"][0]
    plan = _plan(g, w, 1e-3, True, None)
    half_w, half_h = _layout.BOX_W / 2 - 0.02, _layout.BOX_H / 2 - 0.02
    for path, _ in plan.edges:
        pts = np.concatenate(path.to_polygons(closed_only=False))
        for x, y in plan.layout.values():
            assert not np.any((np.abs(pts[:, 0] - x) < half_w) & (np.abs(pts[:, 1] - y) < half_h))


def test_draw_connections_png_and_svg(prnet, tmp_path):
    g, w, child = prnet
    fig = draw_connections(g, w, threshold=1e-3, title="super-PRNet")
    size = tuple(fig.get_size_inches())
    check_png(save_figure(fig, tmp_path / "super.png", dpi=DPI), size)
    fig = draw_connections(child, w, title="NAS-PRNet", show_pruned=False)
    svg = save_figure(fig, tmp_path / "child.svg").read_text(encoding="utf-8")
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    for node in child.nodes:
        assert f">{node}<" in svg


def test_draw_pair_png(prnet, tmp_path):
    g, w, child = prnet
    fig = draw_pair(g, child, w, 1e-3, stacked=False)
    size = tuple(fig.get_size_inches())
    img = check_png(save_figure(fig, tmp_path / "pair.png", dpi=DPI), size)
    assert img.shape[1] > img.shape[0]  # side by side
    # By default the wide 17-stage pair is stacked, so it keeps its size in a report column ...
    fig = draw_pair(g, child, w, 1e-3)
    stacked = tuple(fig.get_size_inches())
    assert stacked == (size[0] / 2, size[1] * 2)
    # ... while a small space stays side by side.
    small = nx.DiGraph([("E1", "D1"), ("D1", "H")])
    nx.set_node_attributes(small, {"E1": "encoder", "D1": "decoder", "H": "head"}, "kind")
    width, height = draw_pair(small, small).get_size_inches()
    assert width > height
    assert draw_pair(small, small).axes[1].get_title() == "(b) derived child: 1 connection"


def test_bad_inputs_raise_one_line_errors(prnet, tmp_path):
    g, w, _ = prnet
    bad = g.copy()
    bad.add_node("X", kind="mystery")
    with pytest.raises(ArchitectureError, match="'X' has kind 'mystery'"):
        draw_connections(bad)
    with pytest.raises(SparseconnError, match="match none"):
        draw_connections(g, {"e3_d1": 0.5})
    with pytest.raises(SparseconnError, match=r"\.png"):
        save_figure(draw_connections(g), tmp_path / "x.bmp")
    assert not (tmp_path / "x.bmp").exists()


def test_dot_and_graphml_round_trip(prnet, tmp_path):
    g, w, child = prnet
    for graph in (g, child):
        text = write_dot(graph, tmp_path / "g.dot", w).read_text(encoding="utf-8")
        assert text.startswith("digraph") and text.rstrip().endswith("}")
        found = set(re.findall(r'^\s*"((?:[^"\\]|\\.)*)"\s*->\s*"((?:[^"\\]|\\.)*)"', text, re.M))
        assert found == edge_set(graph)
        back = nx.read_graphml(write_graphml(graph, tmp_path / "g.graphml", w))
        assert edge_set(back) == edge_set(graph)
        assert back.nodes["E3"]["channels"] == 24 and "stride" not in back.nodes["G"]
        assert back.edges["E1", "D1"]["weight"] == pytest.approx(w["E1->D1"])
        assert back.edges["D1", "H"]["candidate"] is False
    quoted = nx.DiGraph([('a "b"', "c d")])
    nx.set_node_attributes(quoted, "decoder", "kind")
    text = write_dot(quoted, tmp_path / "q.dot").read_text(encoding="utf-8")
    assert '"a \\"b\\"" -> "c d"' in text


def write_log(path: Path, epochs: int = 5, torn: bool = False) -> dict[str, float]:
    keys = ["E1->D1", "E2->D1", "G->D1", "D2->D1", "E2->D2"]
    final = {"E1->D1": 0.9, "E2->D1": 2e-4, "G->D1": 0.4, "D2->D1": 0.0, "E2->D2": 0.7}
    lines = []
    for e in range(epochs):
        t = e / (epochs - 1)
        lines.append(json.dumps({"epoch": e, "phase": "search",
                                 "weights": {k: 0.5 + (final[k] - 0.5) * t for k in keys}}))
    text = "\n".join(lines) + "\n" + ('{"epoch": 5, "phase": "sea' if torn else "")
    path.write_text(text, encoding="utf-8")
    return final


def test_trajectories_from_a_torn_log(tmp_path):
    write_log(tmp_path / "connections.jsonl", torn=True)
    records = load_connections(tmp_path)
    assert [r["epoch"] for r in records] == list(range(5))
    fig = plot_trajectories(records, threshold=1e-3)
    assert fig.axes[0].get_title() == "connection weights: 3 kept, 2 pruned"
    check_png(save_figure(fig, tmp_path / "traj.png", dpi=DPI), tuple(fig.get_size_inches()))
    fig = plot_trajectories(records, kept={"E1->D1"}, log=True, title="log")
    assert fig.axes[0].get_yscale() == "log"
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[:2] == ["kept (1)", "pruned (4)"]
    check_png(save_figure(fig, tmp_path / "traj_log.png", dpi=DPI), tuple(fig.get_size_inches()))
    fig = plot_trajectories(records, mark_epoch=3)
    assert "pruned at epoch 3" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(list(line.get_xdata()) == [3, 3] for line in fig.axes[0].get_lines())  # the vertical line


def test_trajectories_of_a_resumed_run_draw_each_epoch_once(tmp_path):
    write_log(tmp_path / "connections.jsonl", epochs=3)
    lines = (tmp_path / "connections.jsonl").read_text(encoding="utf-8").splitlines()
    repeat = json.loads(lines[1])
    repeat["weights"]["E1->D1"] = 0.123  # epoch 1 logged again after a resume
    records = [json.loads(line) for line in lines[:2]] + [repeat] + [json.loads(lines[2])]
    fig = plot_trajectories(records)
    line = next(ln for ln in fig.axes[0].get_lines() if len(ln.get_xdata()) > 2)
    assert list(line.get_xdata()) == [0.0, 1.0, 2.0]
    ys = {tuple(ln.get_ydata()) for ln in fig.axes[0].get_lines() if len(ln.get_xdata()) == 3}
    assert any(y[1] == 0.123 for y in ys)
    fig = plot_trajectories(records[:1])  # one epoch: whole-epoch ticks around it
    assert fig.axes[0].get_xlim() == (-0.5, 0.5)


def test_load_connections_errors_name_the_path(tmp_path):
    with pytest.raises(SparseconnError, match=re.escape(f"{tmp_path} has no connections.jsonl")):
        load_connections(tmp_path)
    (tmp_path / "connections.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(SparseconnError, match="is empty"):
        load_connections(tmp_path / "connections.jsonl")
    with pytest.raises(SparseconnError, match="does not exist"):
        load_connections(tmp_path / "nope.jsonl")


def test_report(tmp_path):
    image = save_figure(draw_connections(super_prnet()), tmp_path / "figs" / "space.png", dpi=DPI)
    results = [
        {"model": "U-Net", "psnr": 36.8, "ssim": 0.874, "rmse": None, "params": 37.7e6, "macs": 971.4e9,
         "latency_ms": 373.0},
        {"model": "NAS-PRNet", "psnr": 36.7, "ssim": 0.866, "rmse": 0.12, "params": 4.4e6, "macs": 11.3e9,
         "latency_ms": 31.0},
        {"model": "classical", "psnr": None, "ssim": None, "rmse": None, "params": None, "macs": None,
         "latency_ms": None},
    ]
    rows = comparison_rows(results)
    assert "speedup" not in results[0] and rows[0]["speedup"] == 1.0 and rows[2]["speedup"] is None
    assert rows[1]["speedup"] == pytest.approx(373 / 31)
    md, html = write_report(tmp_path / "report", rows, {"search space": image}, "space:\n  edges: dense\n",
                            notes=["latency on 2 CPU threads <fast>"])
    text = md.read_text(encoding="utf-8")
    assert "| model | PSNR (dB) | SSIM | RMSE (rad) | params (M) | MACs (G) | latency (ms) | speed-up |" in text
    assert "| U-Net | 36.80 | 0.874 | – | 37.70 | 971.40 | 373.0 | 1.0× |" in text
    assert "| NAS-PRNet | 36.70 | 0.866 | 0.120 | 4.40 | 11.30 | 31.0 | 12.0× |" in text
    assert "| classical | – | – | – | – | – | – | – |" in text
    assert "![search space](../figs/space.png)" in text and "```yaml\nspace:\n  edges: dense\n```" in text
    page = html.read_text(encoding="utf-8")
    assert "data:image/png;base64," in page and "&lt;fast&gt;" in page and "<td>NAS-PRNet</td>" in page


def test_a_model_with_nothing_learned_shows_no_parameter_count(tmp_path):
    """params 0 (the classical pipeline) reads "–" like a value not measured, not "0.00"; a small learned
    model still shows its count."""
    rows = comparison_rows([
        {"model": "FT + unwrap (classical)", "psnr": 30.0, "params": 0, "macs": None, "latency_ms": 200.0},
        {"model": "tiny", "psnr": 31.0, "params": 120, "macs": 3.0e6, "latency_ms": 2.0},
    ])
    md, html = write_report(tmp_path, rows, {}, "seed: 0\n", metrics=["psnr"])
    text = md.read_text(encoding="utf-8")
    assert "| FT + unwrap (classical) | 30.00 | – | – | 200.0 | 1.0× |" in text
    assert "| tiny | 31.00 | 0.00012 | 0.003 | 2.0 | 100.0× |" in text
    assert "<td>0.00</td>" not in html.read_text(encoding="utf-8")


def test_report_columns_follow_the_task_metrics(tmp_path):
    rows = comparison_rows([
        {"model": "SparseMask", "miou": 0.681, "pixel_acc": 0.9, "connections": 42, "params": 2.1e6,
         "macs": 9.2e3, "latency_ms": 12.0},
        {"model": "tiny", "miou": 0.5, "pixel_acc": 0.8, "connections": None, "params": 9.3e3, "macs": 0,
         "latency_ms": 24.0},
    ])
    md, _ = write_report(tmp_path, rows, {}, "seed: 0\n", metrics=["miou"])
    text = md.read_text(encoding="utf-8")
    assert "| model | mIoU | connections | params (M) | MACs (G) | latency (ms) | speed-up |" in text
    assert "| SparseMask | 0.681 | 42 | 2.10 | 9.2e-06 | 12.0 | 2.0× |" in text
    assert "| tiny | 0.500 | – | 0.0093 | 0.00 | 24.0 | 1.0× |" in text
    md, _ = write_report(tmp_path, [{"model": "NAS-PRNet", "psnr": 36.7, "rmse_rad": 0.12}], {}, "",
                         metrics=("psnr", "ssim", "rmse_rad"))  # the phase-retrieval task's names
    assert "| NAS-PRNet | 36.70 | – | 0.120 | – | – | – | – |" in md.read_text(encoding="utf-8")
    md, _ = write_report(tmp_path, rows, {}, "seed: 0\n")  # no metrics named: every other key, in order
    assert "| model | mIoU | pixel acc. | connections |" in md.read_text(encoding="utf-8")


def test_viz_never_imports_torch():
    for path in Path(__file__).parents[1].joinpath("sparseconn", "viz").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in getattr(node, "names", [])] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n == "torch" or n.startswith("torch.") for n in names), path


def test_the_cli_tables_format_costs_as_the_report_does() -> None:
    """A tiny child's 9.3 thousand parameters read 0.00926 (M) in the terminal and in the report alike (the
    CLI once printed 0.01M beside the report's 0.00926)."""
    from rich.console import Console

    from sparseconn.cli.run import _HEADERS, _table
    from sparseconn.viz.report import format_value

    rows = [{"model": "child", "psnr": 38.114, "params": 9260, "macs": 5.0e7, "latency_ms": 104.93},
            {"model": "classical", "psnr": 30.61, "params": 0, "macs": None, "latency_ms": 478.3}]
    console = Console(width=160, record=True)
    console.print(_table("test set", rows, _HEADERS))
    text = console.export_text()
    assert "params (M)" in text and "MACs (G)" in text
    for cell in ("0.00926", "0.05", "38.11", "104.9", "–"):
        assert cell in text, cell
    assert "0.01M" not in text
    assert [format_value("params", 9260), format_value("params", 0), format_value("other", 0.123456)] == \
        ["0.00926", "–", "0.1235"]
