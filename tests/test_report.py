"""Pictures and reports of a real (tiny) run: one toy pipeline, drawn, reported and fed bad input.

The module runs ``sparseconn pipeline --fast-dev-run`` once on the toy task (with a panels picture),
then checks the report and every picture it left, draws the run folder, its architecture.json and
its config with ``sparseconn draw``, and checks that bad input fails cleanly without writing.
"""

from __future__ import annotations

import base64
import inspect
import json
import re
import shutil
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from PIL import Image
from sparseconn_tasks.phase_retrieval.panels import phase_panels
from typer.testing import CliRunner

import sparseconn.fileio
from sparseconn.architecture import FORMAT_VERSION, Architecture
from sparseconn.cli import app
from sparseconn.engine.drawing import write_jobs
from sparseconn.errors import DataError
from sparseconn.space import SearchSpace
from sparseconn.task import TASKS, register_task
from sparseconn.viz import (
    draw_connections,
    draw_pair,
    load_connections,
    plot_trajectories,
    save_figure,
    write_report,
)
from sparseconn.viz import report as viz_report
from tests.toy_task import write_toy_config

DPI = inspect.signature(save_figure).parameters["dpi"].default  # what the engine saves with
MODELS = ("supernet", "child")

ToyTask = TASKS.get("toy")
if "toy_panels" not in TASKS:

    @register_task("toy_panels")
    class ToyPanelsTask(ToyTask):  # type: ignore[misc, valid-type]
        """The toy task with an outputs picture, so the report's panels path runs too."""

        def panels(self, batch, outputs, scores):
            x, y = batch["input"][0, 0].numpy(), batch["target"][0, 0].numpy()
            return phase_panels(x, y, {k: v[0] for k, v in outputs.items()}, phase_range=1.0, scores=scores)


def cli(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    config = write_toy_config(folder)
    config.write_text(config.read_text().replace("task: {name: toy}", "task: {name: toy_panels}"))
    out = folder / "R"
    result = cli("pipeline", config, "--fast-dev-run", "--out", out, "--device", "cpu", "--quiet",
                 "--set", "search.epochs=2")
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def arch(run) -> Architecture:
    return Architecture.load(run / "architecture.json")


def check_png(path: Path, size_in) -> np.ndarray:
    """A PNG that PIL reads, of figure size x dpi pixels, that is not blank."""
    with Image.open(path) as img:
        assert img.format == "PNG"
        img.verify()
    with Image.open(path) as img:
        width, height = img.size
        rgb = np.asarray(img.convert("RGB"))
    expected = np.asarray(size_in, dtype=float) * DPI
    assert abs(width - expected[0]) <= 1 and abs(height - expected[1]) <= 1, (path.name, img.size, expected)
    assert rgb.std() > 10, path.name  # 0-255 scale: lines, boxes and text, not a flat page
    packed = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    assert len(np.unique(packed)) > 10, path.name  # many colours, not a two-tone blank
    return rgb


@pytest.fixture(scope="module")
def sizes(run, arch) -> dict[str, tuple[float, float]]:
    """The size in inches each picture is drawn at, from the library's own figures."""
    full, child = SearchSpace(arch.space).graph, arch.graph()
    records = load_connections(run)
    sizes = {
        "connections": draw_pair(full, child, arch.candidates, arch.threshold).get_size_inches(),
        "child": draw_connections(child, arch.weights(), threshold=arch.threshold).get_size_inches(),
        "candidates": draw_connections(full).get_size_inches(),
        "trajectories": plot_trajectories(records, threshold=arch.threshold).get_size_inches(),
    }
    item = np.zeros((32, 32))
    sizes["panels"] = phase_panels(item, item, dict.fromkeys(MODELS, item), phase_range=1.0).get_size_inches()
    return {k: tuple(float(x) for x in v) for k, v in sizes.items()}


# ---------------------------------------------------------------------------------------------- the report


def test_pipeline_leaves_report_and_linked_pictures(run, arch):
    md = (run / "report.md").read_text(encoding="utf-8")
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert sorted(Path(p).name for p in linked) == ["connections.png", "panels.png", "trajectories.png"]
    for rel in linked:
        assert rel.startswith("figures/") and (run / rel).is_file(), rel
    header = "| model | MSE | connections | params (M) | MACs (G) | latency (ms) | speed-up |"
    assert header in md
    table = [line for line in md.splitlines() if line.startswith("| ") and line != header and "---" not in line]
    assert [line.split(" | ")[0][2:] for line in table] == list(MODELS)
    speedups = [float(line.split(" | ")[-1].rstrip(" |").rstrip("×")) for line in table]
    assert min(speedups) == 1.0 and all(s >= 1.0 for s in speedups)  # against the slowest model
    assert "–" not in table[0]  # metric, counts, MACs and latency all measured
    assert "```yaml\nplugins:" in md and "\ntask:\n  name: toy_panels" in md and "prune:\n  threshold: 0.3" in md
    assert (f"- Derived child: {len(arch.connections)} of 7 candidate connections kept (w ≥ 0.3); removed stages: "
            f"{', '.join(arch.removed_stages) or 'none'}.") in md
    assert "- Latency: median of 1 run at 256x256, batch 1" in md


def test_report_html_is_self_contained(run):
    page = (run / "report.html").read_text(encoding="utf-8")
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 3 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r'(href|src)="(?!data:)', page) and "<link" not in page and "<script" not in page
    inlined = {base64.b64decode(s.split(",", 1)[1]) for s in sources}
    assert inlined == {p.read_bytes() for p in (run / "figures").glob("*.png")}
    assert "<th>speed-up</th>" in page and all(f"<td>{m}</td>" in page for m in MODELS)
    assert "name: toy_panels" in page


def test_report_pictures_are_valid_images_of_the_drawn_size(run, sizes):
    pictures = sorted((run / "figures").glob("*.png"))
    assert [p.stem for p in pictures] == ["connections", "panels", "trajectories"]
    for png in pictures:
        check_png(png, sizes[png.stem])


# ---------------------------------------------------------------------------------------------- draw


def read_dot(text: str) -> nx.DiGraph:
    """A DOT reader for what :func:`sparseconn.viz.write_dot` writes (no pydot needed): one statement a
    line, ``"a" [k="v", ...]`` for a node and ``"a" -> "b" [...]`` for an edge."""
    quoted = r'"((?:[^"\\]|\\.)*)"'
    unescape = lambda s: s.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")  # noqa: E731
    assert text.startswith("digraph ") and text.rstrip().endswith("}")
    graph = nx.DiGraph()
    for line in text.splitlines():
        if m := re.fullmatch(rf"\s*{quoted}\s*->\s*{quoted}\s*(\[.*\])?;?\s*", line):
            attrs = dict(re.findall(rf'(\w+)={quoted}', m.group(3) or ""))
            graph.add_edge(unescape(m.group(1)), unescape(m.group(2)), **attrs)
        elif m := re.fullmatch(rf"\s*{quoted}\s*(\[.*\]);?\s*", line):
            graph.add_node(unescape(m.group(1)), **dict(re.findall(rf'(\w+)={quoted}', m.group(2))))
    return graph


def check_graph_files(stem: Path, graph: nx.DiGraph, weights: dict[str, float] | None) -> None:
    edges = {(str(u), str(v)) for u, v in graph.edges}
    dot = read_dot(stem.with_suffix(".dot").read_text(encoding="utf-8"))
    assert set(dot.edges) == edges and set(dot.nodes) == {str(n) for n in graph.nodes}
    try:
        import pydot  # noqa: F401  (optional: networkx's own DOT reader)
    except ImportError:
        pass
    else:
        assert {(u.strip('"'), v.strip('"')) for u, v in nx.nx_pydot.read_dot(stem.with_suffix(".dot")).edges} == edges
    back = nx.read_graphml(stem.with_suffix(".graphml"))
    assert set(back.edges) == edges and set(back.nodes) == {str(n) for n in graph.nodes}
    for u, v in edges:
        assert back.nodes[u]["kind"] == graph.nodes[u]["kind"]
        if weights and f"{u}->{v}" in weights:
            assert back.edges[u, v]["weight"] == pytest.approx(weights[f"{u}->{v}"])
            assert float(dot.edges[u, v]["conn_weight"]) == pytest.approx(weights[f"{u}->{v}"], rel=1e-5)


def check_svg(path: Path, graph: nx.DiGraph) -> None:
    svg = path.read_text(encoding="utf-8")
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    for node in graph.nodes:
        assert f">{node}<" in svg, (path.name, node)


@pytest.fixture(scope="module")
def drawn(run, tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("drawn")
    sources = {"run": run, "json": run / "architecture.json", "config": run.parent / "toy.yaml"}
    outs = {}
    for name, source in sources.items():
        result = cli("draw", source, "--out", base / name)
        assert result.exit_code == 0, result.output
        listed = {Path(line).name for line in result.stdout.splitlines()}
        assert listed == {p.name for p in (base / name).iterdir()}, name
        outs[name] = base / name
    return outs


def test_draw_writes_every_format_for_each_kind_of_source(drawn):
    graph_files = {f"{stem}.{fmt}" for stem in ("connections", "child") for fmt in ("png", "svg", "dot", "graphml")}
    assert {p.name for p in drawn["json"].iterdir()} == graph_files
    assert {p.name for p in drawn["run"].iterdir()} == graph_files | {"trajectories.png", "trajectories.svg"}
    assert {p.name for p in drawn["config"].iterdir()} == {f"candidates.{f}" for f in ("png", "svg", "dot", "graphml")}


def test_drawn_pictures_are_valid_and_name_every_node(arch, drawn, sizes):
    full, child = SearchSpace(arch.space).graph, arch.graph()
    for folder in drawn.values():
        for png in folder.glob("*.png"):
            check_png(png, sizes[png.stem])
    for folder in (drawn["run"], drawn["json"]):
        check_svg(folder / "child.svg", child)  # every kept node, by name
        check_svg(folder / "connections.svg", full)
    check_svg(drawn["config"] / "candidates.svg", full)


def test_drawn_dot_and_graphml_round_trip(arch, drawn):
    full, child = SearchSpace(arch.space).graph, arch.graph()
    for folder in (drawn["run"], drawn["json"]):
        check_graph_files(folder / "connections", full, arch.candidates)
        check_graph_files(folder / "child", child, arch.weights())
    check_graph_files(drawn["config"] / "candidates", full, None)


# ---------------------------------------------------------------------------------------------- bad input


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def small_run(run, tmp_path) -> Path:
    """The run folder without its checkpoints (draw reads only these three files)."""
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("architecture.json", "connections.jsonl", "config.yaml"):
        shutil.copy(run / name, copy / name)
    return copy


def fails_cleanly(args: list, out: Path, *needles: str) -> None:
    before = snapshot(out) if out.exists() else None
    result = cli(*args, "--out", out)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    if before is None:
        assert not out.exists()
    else:
        assert snapshot(out) == before  # no new, changed or temporary files


def test_run_folder_without_connections_log(small_run, tmp_path):
    (small_run / "connections.jsonl").unlink()
    fails_cleanly(["draw", small_run], tmp_path / "out", "connections.jsonl", str(small_run))
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "connections.png").write_bytes(b"an earlier drawing")
    fails_cleanly(["draw", small_run], kept, "connections.jsonl")


def test_architecture_from_a_newer_format_version(small_run, tmp_path):
    path = small_run / "architecture.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["format_version"] = FORMAT_VERSION + 1
    path.write_text(json.dumps(data), encoding="utf-8")
    needles = (f"format version {FORMAT_VERSION + 1}", str(path))
    fails_cleanly(["draw", path], tmp_path / "json", *needles)
    fails_cleanly(["draw", small_run], tmp_path / "run", *needles)
    fails_cleanly(["draw", small_run], small_run / "figures", *needles)  # the default place, inside the run


def test_unknown_format_writes_nothing(small_run, tmp_path):
    fails_cleanly(["draw", small_run, "--formats", "png,jpeg"], tmp_path / "out", "'jpeg'", "graphml")
    fails_cleanly(["draw", tmp_path / "missing.yaml"], tmp_path / "out", "missing.yaml", "does not exist")


def test_a_drawing_that_fails_half_way_changes_nothing(tmp_path):
    def ok(path: Path) -> Path:
        path.write_text("new", encoding="utf-8")
        return path

    def broken(path: Path) -> Path:
        path.write_text("half", encoding="utf-8")
        raise RuntimeError("renderer crashed")

    with pytest.raises(RuntimeError):
        write_jobs({"a.txt": ok, "b.txt": broken}, tmp_path / "new" / "figures")
    assert not (tmp_path / "new").exists()
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "a.txt").write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError):
        write_jobs({"a.txt": ok, "b.txt": broken}, tmp_path / "old")
    assert snapshot(tmp_path / "old") == {"a.txt": b"old"}
    assert write_jobs({"a.txt": ok}, tmp_path / "old") == [tmp_path / "old" / "a.txt"]
    assert snapshot(tmp_path / "old") == {"a.txt": b"new"}


def test_report_writing_is_atomic(run, tmp_path, monkeypatch):
    for name in ("report.md", "report.html"):
        shutil.copy(run / name, tmp_path / name)
    before = snapshot(tmp_path)
    rows = [{"model": "child", "mse": 0.01, "latency_ms": 3.0}]
    image = run / "figures" / "trajectories.png"
    with pytest.raises(DataError, match="does not exist"):
        write_report(tmp_path, rows, {"gone": tmp_path / "gone.png"}, "seed: 0\n")

    def crash(*args, **kwargs):
        raise OSError("disk full")

    with monkeypatch.context() as m:  # the HTML fails: the Markdown is not written either
        m.setattr(viz_report, "_html", crash)
        with pytest.raises(OSError):
            write_report(tmp_path, rows, {"weights": image}, "seed: 0\n")
    with monkeypatch.context() as m:  # the disk fails mid-write: the old file stays whole, no temporary left
        m.setattr(sparseconn.fileio.os, "fsync", crash)
        with pytest.raises(OSError):
            write_report(tmp_path, rows, {"weights": image}, "seed: 0\n")
    assert snapshot(tmp_path) == before
    md, page = write_report(tmp_path, rows, {"weights": image}, "seed: 0\n", metrics=["mse"])
    assert "| child | 0.01 | – | – | 3.0 | 1.0× |" in md.read_text(encoding="utf-8")
    assert sorted(snapshot(tmp_path)) == ["report.html", "report.md"]


def test_a_damaged_supernet_checkpoint_is_reported_not_hidden(run, tmp_path):
    copy = tmp_path / "R"
    shutil.copytree(run, copy)
    ckpt = copy / "checkpoints" / "search_best.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    result = CliRunner().invoke(app, ["evaluate", str(copy), "--device", "cpu", "--no-latency"])
    assert result.exit_code == 0, result.output
    assert "warning: the supernet row is missing" in result.output and "search_best.pt" in result.output
    evaluation = json.loads((copy / "evaluation.json").read_text())
    assert [row["model"] for row in evaluation["rows"]] == ["child"]
    assert evaluation["warnings"] and "search_best.pt" in evaluation["warnings"][0]


def test_the_old_report_module_still_offers_every_moved_name():
    """``sparseconn.engine.report`` was split into drawing and run_report; old imports get the same objects."""
    import sparseconn.engine.report as old
    from sparseconn.engine import drawing, run_report

    for name in old.__all__:
        home = run_report if name == "write_run_report" else drawing
        assert getattr(old, name) is getattr(home, name), name
