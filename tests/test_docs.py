"""The documentation stays true: generated references are current, links and anchors resolve, code names
exist, and the tutorial's commands run.

- ``docs/configuration.md`` and ``docs/cli.md`` equal what ``docs/generate.py`` writes now.
- Every relative link in ``README.md`` and ``docs/*.md`` names an existing file, and its ``#anchor`` (if
  any) a heading of that file.
- Every full code name in ``docs/*.md`` (a code span such as ``sparseconn.network.build_child``) imports.
- Every ``bash`` block of ``docs/tutorial.md`` runs, command by command, in an empty folder holding a copy
  of the bundled config (the commands carry ``--fast-dev-run``).
"""

from __future__ import annotations

import importlib
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.clitools import cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
GENERATE = ".venv/bin/python docs/generate.py"

FENCE = re.compile(r"^```.*?^```", re.S | re.M)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.M)
CODE_NAME = re.compile(r"`((?:sparseconn|sparseconn_tasks)(?:\.\w+)+)`")
ENTRY_POINT_GROUPS = {"sparseconn.plugins"}
"""Code spans that look like module paths but name something else (the plug-in entry-point group)."""


def prose(text: str) -> str:
    """Markdown without its fenced code blocks (links and headings inside them are not links or headings)."""
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but ``-`` and ``_`` dropped, spaces to ``-``."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a page's headings, duplicates numbered ``-1``, ``-2`` as GitHub does."""
    seen: dict[str, int] = {}
    found = set()
    for _, title in HEADING.findall(prose(path.read_text(encoding="utf-8"))):
        base = slug(title)
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def test_generated_references_are_current() -> None:
    res = subprocess.run([sys.executable, "docs/generate.py", "--check"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, (f"docs/configuration.md or docs/cli.md is stale: regenerate with `{GENERATE}` "
                                 f"and commit the result\n{res.stdout}{res.stderr}")


def test_the_docs_index_is_linked_from_the_readme() -> None:
    links = LINK.findall(prose((ROOT / "README.md").read_text(encoding="utf-8")))
    assert "docs/README.md" in [link.split("#")[0] for link in links]
    index = prose((DOCS / "README.md").read_text(encoding="utf-8"))
    listed = {link.split("#")[0] for link in LINK.findall(index)}
    missing = [p.name for p in DOCS.glob("*.md") if p.name != "README.md" and p.name not in listed]
    assert not missing, f"docs/README.md does not list {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(page: Path) -> None:
    broken = []
    for link in LINK.findall(prose(page.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", link):  # http:, https:, mailto:
            continue
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        if not path.exists():
            broken.append(f"{link}: no file {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{link}: no heading with anchor #{anchor} in {path.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def resolve(name: str) -> object:
    """Import the longest module prefix of a dotted name, then follow the rest as attributes."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(name)


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_code_names_in_the_docs_exist(page: Path) -> None:
    names = sorted(set(CODE_NAME.findall(page.read_text(encoding="utf-8"))) - ENTRY_POINT_GROUPS)
    missing = []
    for name in names:
        try:
            resolve(name)
        except (ImportError, AttributeError) as exc:
            missing.append(f"{name} ({type(exc).__name__}: {exc})")
    assert not missing, f"{page.name} names code that does not exist: " + "; ".join(missing)


def bash_commands(page: Path) -> list[str]:
    """The commands of a page's ``bash`` blocks in order: continuation lines joined, comments dropped."""
    text = page.read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(line.strip())
    return commands


@pytest.mark.timeout(600)
def test_the_tutorial_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commands = bash_commands(DOCS / "tutorial.md")
    assert len(commands) >= 6
    (tmp_path / "tasks").mkdir()
    shutil.copy(ROOT / "tasks" / "phase_retrieval.yaml", tmp_path / "tasks")
    monkeypatch.chdir(tmp_path)
    for command in commands:
        words = shlex.split(command, comments=True)
        assert words[0] == "sparseconn", f"tutorial commands must be sparseconn commands: {command!r}"
        if any(w in ("search", "train", "pipeline") for w in words[1:2]):
            assert "--fast-dev-run" in words, f"a tutorial command that trains must be quick: {command!r}"
        result = cli(*words[1:])
        assert result.exit_code == 0, f"{command}\n{result.output}\n{result.exception!r}"
    # What the tutorial's text says each step leaves behind.
    for path in ("runs/search/architecture.json", "runs/search/connections.jsonl", "runs/child/evaluation.json",
                 "runs/child/report.html", "phases/sim_00000.tif", "figures/connections.png",
                 "figures/child.png", "figures/trajectories.png"):
        assert (tmp_path / path).is_file(), path
