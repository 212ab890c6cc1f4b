"""The random control (issue 13): a child of as many connections as the searched one, drawn uniformly at random
among the live children of that size (:mod:`sparseconn.sampling`), trained by ``pipeline`` and reported.

The sampler: reproducible by seed, exactly N connections, every kept stage live, uniform over the live
subsets (checked against their brute-force enumeration on the tiny space), one-line errors for impossible
sizes. The engine: one tiny pipeline (``tasks/phase_retrieval_tiny.yaml``, ``--fast-dev-run``) with two
random children; then ``evaluate`` notes a missing one and ``pipeline --resume`` keeps a finished one,
continues an unfinished one and retrains a missing one to the same architecture.
"""

from __future__ import annotations

import itertools
import json
import shutil
from collections import Counter
from pathlib import Path

import networkx as nx
import pytest

from sparseconn.architecture import Architecture
from sparseconn.config import load_space_config
from sparseconn.engine.baselines import draw_random_child, random_children, train_baselines
from sparseconn.engine.config import load_run_config
from sparseconn.engine.jobs import RunOptions
from sparseconn.errors import ArchitectureError
from sparseconn.graph import NodeInfo, candidate_edges, decoder_nodes, make_graph, split_key
from sparseconn.pruning import reprune
from sparseconn.sampling import SCHEME, connection_range, random_architecture
from sparseconn.space import SearchSpace
from tests.clitools import cli, ok, one_line_error

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tasks" / "phase_retrieval_tiny.yaml"
PAPER = ROOT / "tasks" / "phase_retrieval.yaml"
SEG = ROOT / "tasks" / "segmentation.yaml"


def is_live(arch: Architecture) -> bool:
    """Every decoder stage of the child has an input and every kept connection leads into the output."""
    g = arch.graph()  # also the library's own structural check
    out = arch.output
    stages = [n for n in g if g.nodes[n]["kind"] == "decoder"]
    return (all(g.in_degree(d) > 0 for d in stages)
            and all(dst == out or nx.has_path(g, dst, out) for dst in (split_key(k)[1] for k in arch.connections)))


def live_subsets(graph: nx.DiGraph, n: int) -> set[frozenset[str]]:
    """Every set of ``n`` candidates that is a live child, by brute force (small spaces only)."""
    keys, out = candidate_edges(graph), graph.graph["output"]
    found = set()
    for subset in itertools.combinations(keys, n):
        pairs = [split_key(k) for k in subset]
        fed = {d for _, d in pairs}
        used = {s for s, _ in pairs}
        touched = fed | {s for s in used if graph.nodes[s]["kind"] == "decoder"}
        if out in fed and all(d in fed and (d == out or d in used) for d in touched):
            found.add(frozenset(subset))
    return found


@pytest.mark.parametrize("config", [TINY, PAPER, SEG], ids=["tiny", "paper", "segmentation"])
def test_the_same_seed_draws_the_same_child_of_exactly_n_live_connections(config):
    space = SearchSpace(load_space_config(config))
    lo, hi = connection_range(space.graph)
    for n in sorted({lo, 2, 5, 12, hi - 1, hi} & set(range(lo, hi + 1))):
        first = random_architecture(space, n, seed=3)
        again = random_architecture(space, n, seed=3)
        assert first.model_dump() == again.model_dump()
        assert len(first.connections) == n and is_live(first), (config.name, n)
        assert first.random_draw is not None and first.random_draw.seed == 3 and first.random_draw.scheme == SCHEME
        assert first.candidates == {k: float(k in first.connections) for k in space.candidates}
        kept_stages = {split_key(k)[1] for k in first.connections}
        assert set(first.removed_stages) == set(decoder_nodes(space.graph)) - kept_stages
    if hi > 20:  # different seeds: different children (there are very many of 12 connections)
        drawn = {frozenset(random_architecture(space, 12, seed=s).connections) for s in range(5)}
        assert len(drawn) == 5


def test_the_draw_is_uniform_over_the_live_children_of_that_size():
    """On the tiny space (7 candidates) every live set of 3 connections is drawn, about equally often, and
    nothing else is (fixed seeds: deterministic)."""
    graph = SearchSpace(load_space_config(TINY)).graph
    cfg = load_space_config(TINY)
    expected = live_subsets(graph, 3)
    counts = Counter(frozenset(random_architecture(graph, 3, seed=s, cfg=cfg).connections) for s in range(1200))
    assert set(counts) == expected and len(expected) >= 5
    mean = 1200 / len(expected)
    assert all(0.6 * mean < c < 1.4 * mean for c in counts.values()), counts


def test_impossible_sizes_are_one_line_errors():
    space = SearchSpace(load_space_config(TINY))
    lo, hi = connection_range(space.graph)
    assert (lo, hi) == (1, 7)
    for n in (0, 8):
        with pytest.raises(ArchitectureError) as exc:
            random_architecture(space, n, seed=0)
        assert str(exc.value) == (f"a random child of {n} connections is impossible: a live child of this search "
                                  "space has 1 to 7 candidate connections")
    with pytest.raises(ArchitectureError, match="seed is -1; expected an integer ≥ 0"):
        random_architecture(space, 3, seed=-1)
    with pytest.raises(ArchitectureError, match="connections is 2.5; expected an integer"):
        random_architecture(space, 2.5, seed=0)
    # two parallel two-step paths E->A->O, E->B->O: 2 or 4 connections, never 3 (a gap inside the range)
    nodes = {"E": NodeInfo("encoder", 8, 2), "A": NodeInfo("decoder", 8, 2, order=0),
             "B": NodeInfo("decoder", 8, 2, order=1), "O": NodeInfo("decoder", 8, 2, order=2)}
    graph = make_graph(nodes, [("E", "A"), ("E", "B"), ("A", "O"), ("B", "O")], "O", None)
    cfg = load_space_config(TINY)
    assert connection_range(graph) == (2, 4)
    with pytest.raises(ArchitectureError) as exc:
        random_architecture(graph, 3, seed=0, cfg=cfg, max_draws=5000)
    assert "no live child of 3 connections in 5000 random draws" in str(exc.value) and "\n" not in str(exc.value)


def test_a_searched_architecture_file_is_unchanged_and_a_random_one_round_trips(tmp_path):
    space = SearchSpace(load_space_config(TINY))
    arch = random_architecture(space, 4, seed=1)
    arch.save(tmp_path / "r.json")
    back = Architecture.load(tmp_path / "r.json")
    assert back == arch and back.random_draw.seed == 1
    again = reprune(back)  # pruned again, it is still the same draw: no searched child in disguise
    assert again.connections == arch.connections and again.random_draw == arch.random_draw
    searched = Architecture.load(ROOT / "tests" / "fixtures" / "run_36d2709" / "search" / "architecture.json")
    assert searched.random_draw is None and "random_draw" not in searched.model_dump(mode="json")


# ---------------------------------------------------------------------------------------------- the engine

ENTRIES = "[classical, {random_child: {seed: 0}}, {random_child: {seed: 1}, name: chance 1}]"
SETS = ["--set", f"evaluate.baselines={ENTRIES}"]
FAST = ["--fast-dev-run", "--device", "cpu", "--quiet", "--set", "evaluate.latency_size=[64,64]"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("random") / "R"
    ok("pipeline", TINY, "--out", out, *FAST, *SETS)
    return out


def test_pipeline_trains_and_reports_the_random_children(run):
    searched = Architecture.load(run / "architecture.json")
    n = len(searched.connections)
    for folder, seed in (("random-child-seed-0", 0), ("chance-1", 1)):
        arch = Architecture.load(run / "baselines" / folder / "architecture.json")
        assert len(arch.connections) == n and arch.random_draw.seed == seed and is_live(arch)
        assert (run / "baselines" / folder / "checkpoints" / "best.pt").is_file()
    summary = json.loads((run / "summary.json").read_text())
    rows = [r["model"] for r in summary["evaluation"]]
    assert rows == ["super-PRNet", "NAS-PRNet", "random child (seed 0)", "chance 1", "FT + unwrap (classical)"]
    by_name = {r["model"]: r for r in summary["evaluation"]}
    assert by_name["random child (seed 0)"]["connections"] == by_name["chance 1"]["connections"] == n
    assert set(summary["baselines"]) == {"random-child-seed-0", "chance-1"}
    assert summary["random_children"]["chance-1"]["connections"] == n
    sub = load_run_config(run / "baselines" / "chance-1" / "config.yaml")  # the run's train settings, inherit too
    parent = load_run_config(run / "config.yaml")
    assert sub.train == parent.train and sub.seed == parent.seed and sub.evaluate.baselines == ["classical"]
    report = (run / "report.md").read_text(encoding="utf-8")
    assert "| random child (seed 0) |" in report and "| chance 1 |" in report
    assert (f"- random child (seed 0): the random control, {n} of 7 candidate connections drawn uniformly at random"
            in report)
    assert "- Search vs chance (PSNR (dB) on the test split, higher is better): NAS-PRNet " in report
    assert "the searched child beats" in report and "of 2 random children." in report


def test_a_random_child_evaluated_on_its_own_is_named_as_the_random_control(run, tmp_path):
    """``evaluate RUN/baselines/random-child-seed-0`` names its row as the parent run's report does, not
    with the task's name for a searched child."""
    copy = Path(shutil.copytree(run / "baselines" / "random-child-seed-0", tmp_path / "seed0"))
    ok("evaluate", copy, "--device", "cpu", "--no-latency")
    rows = [r["model"] for r in json.loads((copy / "evaluation.json").read_text())["rows"]]
    assert rows[0] == "random child (seed 0)" and "NAS-PRNet" not in rows


def test_the_same_seed_draws_the_same_child_again(run):
    """The child drawn for the run again (as a second training of the entry would draw it) is the saved one."""
    cfg = load_run_config(run / "config.yaml")
    searched = Architecture.load(run / "architecture.json")
    for folder, entry in random_children(cfg):
        saved = Architecture.load(run / "baselines" / folder / "architecture.json")
        assert draw_random_child(cfg, entry, searched).model_dump() == saved.model_dump()


def test_evaluate_notes_a_missing_one_and_resume_keeps_continues_and_retrains(run, tmp_path):
    copy = Path(shutil.copytree(run, tmp_path / "R"))
    seed0, chance = copy / "baselines" / "random-child-seed-0", copy / "baselines" / "chance-1"
    shutil.rmtree(chance)  # killed before it started
    result = ok("evaluate", copy, "--device", "cpu", "--no-latency")
    assert "warning: chance 1 is not evaluated" in result.output
    assert [r["model"] for r in json.loads((copy / "evaluation.json").read_text())["rows"]] == [
        "super-PRNet", "NAS-PRNet", "random child (seed 0)", "FT + unwrap (classical)"]

    kept_ckpt = (seed0 / "checkpoints" / "best.pt").read_bytes()
    ok("pipeline", TINY, "--out", copy, "--resume", *FAST, *SETS)
    assert (seed0 / "checkpoints" / "best.pt").read_bytes() == kept_ckpt  # finished: kept, not retrained
    assert (chance / "architecture.json").read_text() == (run / "baselines" / "chance-1" / "architecture.json"
                                                           ).read_text()  # trained again: the same child

    rows = json.loads((copy / "summary.json").read_text())["evaluation"]
    assert [r["model"] for r in rows][2:4] == ["random child (seed 0)", "chance 1"]

    (seed0 / "train_summary.json").unlink()  # killed after its last checkpoint, before its summary
    cfg = load_run_config(copy / "config.yaml")
    best = train_baselines(cfg, copy, RunOptions(resume=True, progress=False))  # the pipeline's baseline stage
    assert (seed0 / "train_summary.json").is_file() and set(best) == {"random-child-seed-0", "chance-1"}
    assert Architecture.load(seed0 / "architecture.json") == Architecture.load(
        run / "baselines" / "random-child-seed-0" / "architecture.json")


@pytest.mark.parametrize(("entries", "needles"), [
    ("[{random_child: {seed: -1}}]", ("evaluate.baselines", "random_child.seed", "-1")),
    ("[{random_child: {seed: 0}, colour: red}]", ("evaluate.baselines", "unknown key 'colour'")),
    ("[{random_child: {sede: 0}}]", ("random_child.sede", "seed")),
    ("[{random_child: {seed: 0}, model: {name: unet}}]", ("random_child: {seed}, name}",)),
    ("[{random_child: {seed: 2}}, {random_child: {seed: 2}}]", ("evaluate.baselines.1",
                                                                  "baselines/random-child-seed-2/", "`name`")),
])
def test_bad_entries_are_one_line_errors_before_anything_runs(entries, needles, tmp_path):
    out = tmp_path / "R"
    one_line_error(cli("pipeline", TINY, "--out", out, *FAST, "--set", f"evaluate.baselines={entries}"), *needles)
    assert not out.exists()
