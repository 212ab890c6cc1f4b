"""The one strict pydantic base of every config and file model (no torch, so any layer may use it).

Example::

    class DataConfig(StrictModel):
        root: Path  # a docstring under a field becomes its description

    DataConfig(root="x", roots="y")  # ValidationError: roots: extra inputs are not permitted
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A pydantic model that rejects unknown keys (a typo is an error, not a silently ignored value),
    validates assignments as it validates input, and takes each field's description from the docstring
    written under it."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)


__all__ = ["StrictModel"]
