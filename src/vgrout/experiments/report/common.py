"""What every report shares for numbers: missing values, NaN-aware means, formatting with an
interval, Markdown tables, and tolerant reads of a run's JSON files."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from vgrout.runfolder import RunFolder


def missing(x) -> bool:
    """None or NaN: a number the report shows as n/a."""
    return x is None or (isinstance(x, float) and math.isnan(x))


def format_number(rate: float | None, ci=None, digits: int = 2, signed: bool = False) -> str:
    """`0.50 [0.20, 0.80]`; `n/a` when the rate is missing; no interval when it is missing."""
    if missing(rate):
        return "n/a"
    spec = f"{'+' if signed else ''}.{digits}f"
    text = format(rate, spec)
    if ci is None or any(missing(c) for c in ci):
        return text
    return f"{text} [{format(ci[0], spec)}, {format(ci[1], spec)}]"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def seed_ranges(seeds) -> str:
    """`0-4, 7` for {0, 1, 2, 3, 4, 7}."""
    values = sorted({int(s) for s in seeds})
    parts, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            parts.append(str(start) if start == v else f"{start}-{v}")
            start = None
    return ", ".join(parts)


def to_number(x) -> float:
    """A logged value as a float; NaN when it is absent or not a number."""
    try:
        return math.nan if x is None else float(x)
    except (TypeError, ValueError):
        return math.nan


def nanmean(values: Iterable[float]) -> float:
    """Mean of the values that are not missing; NaN when none is."""
    vals = [v for v in values if not missing(v)]
    return sum(vals) / len(vals) if vals else math.nan


def read_json_or_empty(path: Path) -> dict:
    """A JSON file's content; {} when it is absent or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def run_summary(run_dir: Path) -> dict:
    """A run folder's summary.json; {} when the run has none."""
    return read_json_or_empty(RunFolder(run_dir).summary)
