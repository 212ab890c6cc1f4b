"""Comparison reports: a Markdown file with linked pictures and a self-contained HTML page.

A result is one dict per model: ``model``, the task's metrics (e.g. ``psnr`` in dB, ``ssim``, ``rmse``
in rad, or ``miou``), ``connections``, ``params`` (a count), ``macs`` (multiply-accumulates, a count),
``latency_ms``; any value may be ``None`` and is shown as "–", and so is ``params`` of 0 (a model with
nothing learned, such as the classical pipeline: "0.00" would read like a measurement).
:func:`comparison_rows` adds ``speedup``: the slowest latency over each model's. The metric columns are
the ``metrics`` passed to :func:`write_report`, or else every other key of the rows, in order of first
appearance.

Example::

    rows = comparison_rows(results)
    md, html = write_report("runs/x/report", rows, {"connections": Path("runs/x/pair.png")}, cfg_text)
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sparseconn.errors import DataError
from sparseconn.fileio import atomic_write_text

MISSING = "–"
MIME = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
        ".gif": "image/gif", ".webp": "image/webp"}


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def comparison_rows(results: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Copies of ``results`` with ``speedup`` = latency of the slowest model / latency of this one
    (``None`` where the latency is missing or not positive). The input dicts are not changed."""
    rows = []
    for i, result in enumerate(results):
        if not isinstance(result, Mapping) or not result.get("model"):
            raise DataError(f"result {i} has no 'model' name: expected a dict with keys model, psnr, ...")
        rows.append(dict(result))
    latencies = [lat for r in rows if (lat := _number(r.get("latency_ms"))) is not None and lat > 0]
    slowest = max(latencies, default=None)
    for row in rows:
        latency = _number(row.get("latency_ms"))
        row["speedup"] = slowest / latency if slowest is not None and latency and latency > 0 else None
    return rows


def _fmt(fmt: str, scale: float = 1.0, small: str | None = None) -> Callable[[Any], str]:
    """A formatter of ``value / scale``; ``small`` is the format below 0.1 (so 9.3e3 params read 0.00926 M)."""
    def render(value: Any) -> str:
        number = _number(value)
        if number is None:
            return MISSING
        number /= scale
        return format(number, small if small is not None and 0 < abs(number) < 0.1 else fmt)

    return render


def _params(value: Any) -> str:
    """Parameters in millions; "–" for none (a model with nothing learned: the classical pipeline)."""
    return MISSING if _number(value) == 0 else _fmt(".2f", 1e6, ".3g")(value)


def _speedup(value: Any) -> str:
    number = _number(value)
    return MISSING if number is None else f"{number:.1f}×"


def _count(value: Any) -> str:
    number = _number(value)
    return MISSING if number is None else f"{number:.0f}"


Column = tuple[str, str, Callable[[Any], str]]  # (header, key, formatter)

# Headers and formats of metrics the built-in tasks report; any other metric is shown as its key, 4 digits.
KNOWN_METRICS: dict[str, Column] = {
    "psnr": ("PSNR (dB)", "psnr", _fmt(".2f")),
    "ssim": ("SSIM", "ssim", _fmt(".3f")),
    "rmse": ("RMSE (rad)", "rmse", _fmt(".3f")),
    "rmse_rad": ("RMSE (rad)", "rmse_rad", _fmt(".3f")),
    "mse": ("MSE", "mse", _fmt(".4g")),
    "mae": ("MAE", "mae", _fmt(".4g")),
    "miou": ("mIoU", "miou", _fmt(".3f")),
    "pixel_acc": ("pixel acc.", "pixel_acc", _fmt(".3f")),
}
# The cost columns after the metrics; ``connections`` only when some row has a count.
COST_COLUMNS: list[Column] = [
    ("connections", "connections", _count),
    ("params (M)", "params", _params),
    ("MACs (G)", "macs", _fmt(".2f", 1e9, ".3g")),
    ("latency (ms)", "latency_ms", _fmt(".1f")),
    ("speed-up", "speedup", _speedup),
]
_FORMATTERS: dict[str, Callable[[Any], str]] = {key: f for _, key, f in (*KNOWN_METRICS.values(), *COST_COLUMNS)}


def format_value(key: str, value: Any) -> str:
    """``value`` of the column ``key`` as the report shows it (the unit is in the column's header: params
    in millions, MACs in billions); another key's number with 4 digits, "–" for none. The CLI's tables
    use it too, so that a terminal and a report read the same."""
    formatter = _FORMATTERS.get(key)
    if formatter is not None:
        return formatter(value)
    if value is None:
        return MISSING
    return f"{value:.4g}" if isinstance(value, float) else str(value)


_NOT_METRICS = {"model", "speedup"} | {key for _, key, _ in COST_COLUMNS}


def columns(rows: list[Mapping[str, Any]], metrics: Sequence[str] | None = None, costs: bool = True) -> list[Column]:
    """The table's columns after ``model``: the metrics, then connections (if any row has one), params,
    MACs, latency and speed-up (unless ``costs`` is False). ``metrics=None`` takes every key that is not
    one of those, in order."""
    if metrics is None:
        metrics = list(dict.fromkeys(k for r in rows for k in r if k not in _NOT_METRICS))
    cols = [KNOWN_METRICS.get(str(m).lower(), (str(m), m, _fmt(".4g"))) for m in metrics]
    cols = [(header, m, render) for (header, _, render), m in zip(cols, metrics, strict=True)]
    for col in COST_COLUMNS if costs else ():
        if col[1] != "connections" or any(_number(r.get("connections")) is not None for r in rows):
            cols.append(col)
    return cols


def _cells(row: Mapping[str, Any], cols: list[Column]) -> list[str]:
    return [str(row.get("model", MISSING))] + [render(row.get(key)) for _, key, render in cols]


def _md_table(rows, cols) -> list[str]:
    header = ["model"] + [h for h, _, _ in cols]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in _cells(row, cols)) + " |")
    return lines


def _markdown(title, rows, cols, images, out_dir, config_text, notes, tables) -> str:
    lines = [f"# {title}", ""] + _md_table(rows, cols)
    for caption, (t_rows, t_cols) in tables.items():
        lines += ["", f"## {caption}", ""] + _md_table(t_rows, t_cols)
    if notes:
        lines += [""] + [f"- {note}" for note in notes]
    for caption, path in images.items():
        rel = quote(Path(os.path.relpath(Path(path).resolve(), out_dir.resolve())).as_posix())
        lines += ["", f"## {caption}", "", f"![{caption}]({rel})"]
    lines += ["", "## configuration", "", "```yaml", config_text.rstrip("\n"), "```", ""]
    return "\n".join(lines)


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .7em}
td{text-align:right}td:first-child{text-align:left}th{background:#f3f3f3}
img{max-width:100%;border:1px solid #eee}pre{background:#f6f6f6;padding:1em;overflow-x:auto}"""


def _html_table(rows, cols) -> str:
    esc = html.escape
    header = "".join(f"<th>{esc(h)}</th>" for h in ["model"] + [h for h, _, _ in cols])
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in _cells(r, cols)) + "</tr>\n" for r in rows)
    return f"<table><thead><tr>{header}</tr></thead><tbody>\n{body}</tbody></table>"


def _html(title, rows, cols, images, config_text, notes, tables) -> str:
    esc = html.escape
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{esc(title)}</title>",
             f"<style>{_CSS}</style></head><body>", f"<h1>{esc(title)}</h1>", _html_table(rows, cols)]
    for caption, (t_rows, t_cols) in tables.items():
        parts += [f"<h2>{esc(caption)}</h2>", _html_table(t_rows, t_cols)]
    if notes:
        parts.append("<ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    for caption, path in images.items():
        mime = MIME.get(Path(path).suffix.lower(), "application/octet-stream")
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        parts.append(f"<h2>{esc(caption)}</h2><img alt=\"{esc(caption)}\" src=\"data:{mime};base64,{data}\">")
    parts += ["<h2>configuration</h2>", f"<pre><code>{esc(config_text)}</code></pre>", "</body></html>\n"]
    return "\n".join(parts)


def write_report(
    out_dir: str | os.PathLike[str],
    rows: list[Mapping[str, Any]],
    images: Mapping[str, str | os.PathLike[str]],
    config_text: str,
    title: str = "sparseconn report",
    notes: list[str] | None = None,
    metrics: Sequence[str] | None = None,
    tables: Mapping[str, list[Mapping[str, Any]]] | None = None,
) -> tuple[Path, Path]:
    """Write ``report.md`` (images linked relative to ``out_dir``) and a self-contained ``report.html``
    (images inlined as base64) into ``out_dir``; returns both paths. ``images`` maps a caption to a
    picture file; ``rows`` without ``speedup`` go through :func:`comparison_rows` first; ``metrics``
    names the metric columns (see :func:`columns`). ``tables`` maps a caption to more rows (e.g. the
    models on another test set), shown after the main table with the metric columns only.

    Both texts are built before either file is written, and each file is written atomically: a
    failure (a missing picture, a bad row) leaves any earlier report untouched.
    """
    out = Path(out_dir)
    for caption, path in images.items():
        if not Path(path).is_file():
            raise DataError(f"report image {caption!r} ({path}) does not exist: expected a saved picture")
    if any("speedup" not in r for r in rows):
        rows = comparison_rows(list(rows))
    notes = list(notes or [])
    cols = columns(rows, metrics)
    extra = {caption: (list(t), columns(list(t), metrics, costs=False)) for caption, t in (tables or {}).items()}
    md_text = _markdown(title, rows, cols, images, out, config_text, notes, extra)
    html_text = _html(title, rows, cols, images, config_text, notes, extra)
    md = atomic_write_text(out / "report.md", md_text)
    page = atomic_write_text(out / "report.html", html_text)
    return md, page
