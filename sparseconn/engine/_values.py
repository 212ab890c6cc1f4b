"""Command-line values as numbers (``infer``'s and ``export``'s options): a string or a number in, a whole or
a positive number out, or the one-line error naming the option and the value given."""

from __future__ import annotations

import math

from sparseconn.errors import SparseconnError


def whole_number(value: str | int, option: str, unit: str, alternative: str = "") -> int:
    """A whole number >= 1 of ``unit`` for ``option``; else the one-line error (naming ``alternative`` too)."""
    try:
        n = int(str(value).strip())
    except ValueError:
        n = 0
    if n < 1:
        raise SparseconnError(f"{option} must be a whole number of {unit} >= 1{alternative}, got {str(value)!r}")
    return n


def positive_number(value: str | float, option: str, unit: str = "") -> float:
    """A finite number > 0 (of ``unit``, where given) for ``option``; else the one-line error."""
    try:
        x = float(str(value).strip())
    except ValueError:
        x = math.nan
    if not (math.isfinite(x) and x > 0):
        of = f" of {unit}" if unit else ""
        raise SparseconnError(f"{option} must be a positive number{of}, got {str(value)!r}")
    return x
