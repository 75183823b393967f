"""The sweep folder: its file names (the layout is in `vgrout.experiments.sweep`'s docstring),
and sweep.json, which ties the folder to its grid."""

from __future__ import annotations

import json
import time
from pathlib import Path

from vgrout.experiments.sweep.spec import Cell, SweepSpec, make_spec
from vgrout.runfolder import atomic_write_text

SWEEP_FILE = "sweep.json"
STATUS_FILE = "status.json"
SUMMARY_FILE = "sweep_summary.json"
FAILED_FILE = "failed.json"
RUNNING_FILE = "running.json"
RUNS = "runs"


class GridChangedError(ValueError):
    """SWEEP_DIR holds a sweep of another grid (re-run with `force_grid` to switch)."""


def write_or_check_sweep_file(
    out: Path, spec: SweepSpec, cells: list[Cell], force_grid: bool
) -> list[str]:
    """Tie SWEEP_DIR to its grid. Returns the names of cells that left the sweep (force_grid)."""
    path = out / SWEEP_FILE
    dropped: list[str] = []
    if path.is_file():
        old = json.loads(path.read_text())
        old_cells = {c["folder"]: c["name"] for c in old.get("cells", [])}
        new_cells = {c.folder: c.name for c in cells}
        if old_cells != new_cells:
            added = [n for f, n in new_cells.items() if f not in old_cells]
            dropped = [n for f, n in old_cells.items() if f not in new_cells]
            if not force_grid:
                kept = len(new_cells) - len(added)
                raise GridChangedError(
                    f"{out} holds a sweep with a different grid (preset/--set/--grid changed): "
                    f"{len(added)} new cells{_examples(added)}, {len(dropped)} cells not in the "
                    f"new grid{_examples(dropped)}, {kept} unchanged. Re-run with --force-grid to "
                    "switch to the new grid (unchanged cells are reused; the others' folders stay "
                    "on disk but leave the sweep), or choose another --out."
                )
    doc = {
        "version": 1,
        "spec": spec.to_dict(),
        "cells": [c.to_dict() for c in cells],
        "dropped_cells": dropped,
        "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    out.mkdir(parents=True, exist_ok=True)
    # no sort_keys: a grid's axis order is part of its cell names
    atomic_write_text(path, json.dumps(doc, indent=2))
    return dropped


def _examples(names: list[str], k: int = 3) -> str:
    if not names:
        return ""
    more = ", ..." if len(names) > k else ""
    return f" ({', '.join(names[:k])}{more})"


def load_sweep_spec(out: Path) -> SweepSpec:
    """The spec an existing SWEEP_DIR was run with (re-run a sweep without retyping its grid)."""
    path = Path(out) / SWEEP_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{out} holds no sweep ({SWEEP_FILE} missing)")
    d = json.loads(path.read_text())["spec"]
    return make_spec(d["preset"], d["grids"], d["set"], d.get("contrasts"))
