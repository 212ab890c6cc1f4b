"""The import wall: which part of the tree may import which, read from the source (no imports run).

- The core (``sparseconn`` outside ``engine``, ``cli``, ``viz`` and ``api``) imports none of those and no
  task; the package's ``__init__`` may import only ``sparseconn.api`` of them (lazily, on first use).
- ``sparseconn.api`` (the Python API) imports no CLI and no task.
- ``sparseconn.viz`` draws from data only: no torch, no engine, no CLI, no task.
- ``sparseconn.graph`` (the graph vocabulary every layer shares) imports no torch.
- ``sparseconn.engine`` imports no CLI and no task.
- A task imports no other task and nothing private of ``sparseconn`` (a module or name starting with ``_``).
- Nothing imports the folder ``tasks`` by its old import name (the plug-ins are ``sparseconn_tasks``).
- ``pyproject.toml`` lists every package folder, so an installed sparseconn has them all.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "tasks":
        parts[0] = "sparseconn_tasks"
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.append((base, [alias.name for alias in node.names]))
    return found


def sources(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def layer(path: Path) -> str:
    name = module_name(path)
    if name == "sparseconn.__main__":  # `python -m sparseconn` runs the CLI
        return "sparseconn.cli"
    if name == "sparseconn":
        return "package"
    if name == "sparseconn.api":
        return "api"
    for prefix in ("sparseconn.engine", "sparseconn.cli", "sparseconn.viz"):
        if name == prefix or name.startswith(prefix + "."):
            return prefix
    if name.startswith("sparseconn_tasks"):
        return "task"
    return "core"


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


FORBIDDEN = {
    "core": ("sparseconn.engine", "sparseconn.cli", "sparseconn.viz", "sparseconn.api", "sparseconn_tasks", "tasks"),
    "package": ("sparseconn.engine", "sparseconn.cli", "sparseconn.viz", "sparseconn_tasks", "tasks"),
    "api": ("sparseconn.cli", "sparseconn_tasks", "tasks"),
    "sparseconn.viz": ("torch", "sparseconn.engine", "sparseconn.cli", "sparseconn_tasks", "tasks"),
    "sparseconn.engine": ("sparseconn.cli", "sparseconn_tasks", "tasks"),
    "sparseconn.cli": ("sparseconn_tasks", "tasks"),
    "task": ("tasks",),
}


@pytest.mark.parametrize("path", sources("sparseconn") + sources("tasks"), ids=lambda p: module_name(p))
def test_the_import_wall(path: Path) -> None:
    mine = layer(path)
    for module, names in imports(path):
        for banned in FORBIDDEN[mine]:
            assert not within(module, banned), f"{module_name(path)} ({mine}) imports {module}"
        if mine == "task":
            own = ".".join(module_name(path).split(".")[:2])
            if within(module, "sparseconn_tasks"):
                assert within(module, own), f"{module_name(path)} imports another task: {module}"
            if within(module, "sparseconn"):
                private = [p for p in module.split(".") if p.startswith("_")] + [n for n in names if n.startswith("_")]
                assert not private, f"{module_name(path)} imports private {module} {names}"


def test_the_graph_vocabulary_needs_no_torch() -> None:
    assert not [m for m, _ in imports(ROOT / "sparseconn" / "graph.py") if within(m, "torch")]


def test_pyproject_lists_every_package() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    listed = set(config["packages"])
    assert config["package-dir"] == {"sparseconn_tasks": "tasks"}
    folders = {module_name(p.parent / "__init__.py") for folder in ("sparseconn", "tasks")
               for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts}
    assert folders == listed
