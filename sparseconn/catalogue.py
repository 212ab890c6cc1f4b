"""What is registered, by kind: the names a config may use, what each is, and where it comes from.

``catalogue("fusions")`` -> ``{"fusions": [{"name": "concat", "description": "...", "origin": "built in",
"module": "sparseconn.ops"}, ...]}``; ``catalogue()`` gives every kind. ``origin`` is ``built in``
(sparseconn itself), an installed plug-in's entry-point module (e.g. ``sparseconn_tasks.phase_retrieval``) or
``config plug-in MODULE`` (imported by a config's ``plugins:`` list); see :func:`sparseconn.registry.origin_of`.
This is what ``sparseconn list`` prints.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from sparseconn.connections import PARAMETERISATIONS
from sparseconn.edge_rules import EDGE_RULES
from sparseconn.encoders import ENCODERS
from sparseconn.errors import SparseconnError
from sparseconn.heads import HEADS
from sparseconn.inputs import INPUT_OPS
from sparseconn.models import MODELS
from sparseconn.ops import EDGE_OPS, FUSIONS, RESIZE_POLICIES, STAGE_OPS
from sparseconn.registry import Registry, load_plugins, origin_of
from sparseconn.regularizers import REGULARIZERS
from sparseconn.task import TASKS

KINDS: dict[str, Registry[Any]] = {
    "encoders": ENCODERS,
    "edge-rules": EDGE_RULES,
    "fusions": FUSIONS,
    "edge-ops": EDGE_OPS,
    "stage-ops": STAGE_OPS,
    "weights": PARAMETERISATIONS,
    "regularizers": REGULARIZERS,
    "heads": HEADS,
    "tasks": TASKS,
    "models": MODELS,
    "input-ops": INPUT_OPS,
    "resize-policies": RESIZE_POLICIES,
}
"""The kinds ``sparseconn list`` knows, each with its registry (``weights``: the connection
parameterisations of ``space.connections.parameterisation``)."""


_SENTENCE_END = re.compile(r"[.!?](?=\s+[A-Z`]|$)")
"""A full stop that ends a sentence: at the end, or before a capital or a ``code`` span (not ``e.g. a``,
``Eq. (1)``, ``Fig. 2``)."""


def description(obj: Any) -> str:
    """The first line of ``obj``'s own docstring (a class's, not one inherited from its base; an instance's
    class's), carried on to the end of its sentence where the line breaks mid-sentence (within the first
    paragraph), or ``""``."""
    doc = obj.__doc__ if isinstance(obj, type) or inspect.isroutine(obj) else type(obj).__doc__
    lines = re.split(r"\n\s*\n", inspect.cleandoc(doc))[0].splitlines() if isinstance(doc, str) else []
    if not lines:
        return ""
    first = lines[0].strip()
    paragraph = " ".join(line.strip() for line in lines)
    end = next((m.end() for m in _SENTENCE_END.finditer(paragraph) if m.end() >= len(first)), len(paragraph))
    return paragraph[:end]


def check_kind(kind: str | None) -> None:
    """An unknown kind is an error naming the kinds (None: every kind)."""
    if kind is not None and kind not in KINDS:
        raise SparseconnError(f"unknown kind {kind!r}; expected one of: {', '.join(KINDS)}")


def catalogue(kind: str | None = None) -> dict[str, list[dict[str, str]]]:
    """The registered names of ``kind`` (every kind when None), sorted, with their description, origin and
    registering module. Loads the installed plug-ins first; an unknown kind is an error naming the kinds."""
    check_kind(kind)
    load_plugins()
    out: dict[str, list[dict[str, str]]] = {}
    for k, registry in KINDS.items():
        if kind is not None and k != kind:
            continue
        rows = []
        for name in registry.names():
            module = registry.module_of(name)
            rows.append({"name": name, "description": description(registry.get(name)),
                         "origin": origin_of(module), "module": module})
        out[k] = rows
    return out
