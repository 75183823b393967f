"""Aggregating a sweep folder's finished runs into sweep_summary.json (`vgrout.experiments.aggregate`)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from vgrout.experiments import aggregate as agg
from vgrout.experiments.sweep.folder import SUMMARY_FILE, load_sweep_spec
from vgrout.experiments.sweep.spec import SweepSpec, contrast_side
from vgrout.presets import load_preset
from vgrout.runfolder import atomic_write_text


def finish(out: Path, n_resamples: int = 10_000) -> dict:
    """Aggregate the sweep's finished runs into OUT/sweep_summary.json (also `vgrout report`)."""
    out = Path(out)
    runs, missing = agg.load_runs(out)
    spec = load_sweep_spec(out)
    summary = agg.aggregate(
        runs, n_resamples=n_resamples, defaults=spec_defaults(spec), declared=declared(spec)
    )
    summary["unfinished"] = missing
    summary["runs"] = [
        {"name": r["name"], "folder": r["folder"], "arm": r["arm"], "seed": r["seed"]} for r in runs
    ]
    summary["sentences"] = agg.significance_sentences(summary)
    summary = _finite(summary)  # NaN (no data) -> null: strict JSON for other tools
    atomic_write_text(
        out / SUMMARY_FILE, json.dumps(summary, indent=2, sort_keys=True, allow_nan=False)
    )
    return summary


def base_defaults(out: Path) -> dict:
    """{field: value} of the sweep's base config (its preset + fixed sets), for ablation contrasts."""
    return spec_defaults(load_sweep_spec(out))


def spec_defaults(spec: SweepSpec) -> dict:
    base = dataclasses.replace(load_preset(spec.preset), **spec.sets)
    return dataclasses.asdict(base)


def declared(spec: SweepSpec) -> list[dict]:
    """The spec's declared contrasts with each side resolved to a run-like record (aggregate)."""
    base = load_preset(spec.preset)
    return [
        {
            "a": contrast_side(base, spec, c["a"]),
            "b": contrast_side(base, spec, c["b"]),
            "why": c.get("why", ""),
        }
        for c in spec.contrasts
    ]


def _finite(x):
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
