"""`vgrout report DIR`: report.md + PNG plots for a run folder, a decision folder or a sweep folder.

A decision folder holds summary.json with "arms" and one run folder per arm x seed; a run folder holds
config.json, metrics.jsonl, eval.jsonl; a sweep folder holds sweep.json and runs/<cell>/ run folders
(`vgrout.experiments.report.sweep`). The report shows: the table of deployed and as-trained hack/solve per arm
with 95% intervals, hack and solve curves per arm over steps (mean over seeds, shaded: the range
over seeds), zone shares and qmass over steps, and the gate's AUROC / F0.5 (direction arms).

Modules: `decision` (a run or a decision folder) and `sweep` (a sweep folder: `sweep_tables`,
`sweep_classify`, `runs_csv`); both build on `common` (numbers, Markdown tables), `curves` (series
and plots over steps) and `metrics_tables` (the gate's logged AUROC / F0.5, where the time goes).
"""

from __future__ import annotations

from pathlib import Path

from vgrout.experiments.report import sweep as sweep_report
from vgrout.experiments.report.common import markdown_table, missing
from vgrout.experiments.report.curves import (
    CURVE_KEYS,
    ZONE_KEYS,
    Series,
    eval_series,
    group_curves,
    mean_curves,
    plot_curves,
    plot_eval_curves,
    plot_zone_curves,
    zone_series,
)
from vgrout.experiments.report.decision import arms_table, per_mode_table, write_decision_report
from vgrout.experiments.report.metrics_tables import TIME_NOTE, TIME_PHASES, time_table

__all__ = [
    "CURVE_KEYS",
    "TIME_NOTE",
    "TIME_PHASES",
    "ZONE_KEYS",
    "Series",
    "arms_table",
    "eval_series",
    "group_curves",
    "markdown_table",
    "mean_curves",
    "missing",
    "per_mode_table",
    "plot_curves",
    "plot_eval_curves",
    "plot_zone_curves",
    "time_table",
    "write_report",
    "zone_series",
]


def write_report(root: Path, classify: bool = False) -> Path:
    """report.md + PNGs in ROOT (a run, decision or sweep folder); returns the report's path.

    `classify` (sweep folders only): run `vgrout classify` on finished runs that lack it first."""
    root = Path(root)
    if sweep_report.is_sweep_dir(root):
        return sweep_report.write_sweep_report(root, classify=classify)[0]
    if classify:
        raise ValueError(
            f"--classify works on a sweep folder; {root} is not one (for one run use "
            "`vgrout classify RUN_DIR`)"
        )
    return write_decision_report(root)
