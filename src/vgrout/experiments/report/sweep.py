"""`vgrout report SWEEP_DIR`: a self-contained report.md + PNGs for a sweep folder.

A folder is a sweep folder when it holds `sweep.json` (written by `vgrout.experiments.sweep.run_sweep`). The
report re-aggregates the finished runs (`sweep.finish`, which also rewrites sweep_summary.json) and
writes, all numbers in the Markdown and the plots beside it (referenced relatively):

- the arms table: per group (arm, plus every other grid field the sweep varies, e.g. init) the mean
  over seeds and 95% bootstrap interval of deployed and as-trained hack and solve, the number of
  seeds and of finished cells; failed and unfinished cells listed under it;
- a plain-language paragraph from `aggregate.significance_sentences`;
- paired contrasts against `none` and real-vs-placebo with intervals, and the placebo band;
- curves per group over steps (periodic held-out evals, mean over seeds; zone shares and qmass),
  with their values in an appendix table;
- the gate's logged AUROC / F0.5 during training, and the offline classifier table (`vgrout
  classify` outputs, classify.json in each run folder) aggregated over seeds, or how to produce it;
- every cell with its status and final numbers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from vgrout.experiments import aggregate as agg
from vgrout.experiments import sweep
from vgrout.experiments.report.common import run_summary
from vgrout.experiments.report.curves import plot_curves
from vgrout.experiments.report.metrics_tables import (
    SCORE_NOTE,
    TIME_NOTE,
    gate_table,
    score_table,
    time_table,
)
from vgrout.experiments.report.runs_csv import (
    CSV_COLUMNS,
    RUNS_CSV,
    machines_sentence,
    run_overrides,
    runs_csv,
)
from vgrout.experiments.report.sweep_classify import (
    CLASSIFY_FILE,
    CLASSIFY_METRICS,
    classify_missing,
    classify_tables,
)
from vgrout.experiments.report.sweep_tables import (
    STATE_TITLES,
    arms_table,
    contrasts_table,
    curve_values_table,
    holm_families,
    placebo_table,
    runs_table,
)
from vgrout.runfolder import RunFolder, atomic_write_bytes, atomic_write_text

__all__ = [
    "CLASSIFY_FILE",
    "CLASSIFY_METRICS",
    "CSV_COLUMNS",
    "RUNS_CSV",
    "STATE_TITLES",
    "arms_table",
    "cell_status",
    "classify_missing",
    "classify_tables",
    "contrasts_table",
    "curve_values_table",
    "is_sweep_dir",
    "placebo_table",
    "publish_report",
    "run_overrides",
    "runs_csv",
    "runs_table",
    "significance_paragraph",
    "write_sweep_report",
]


def is_sweep_dir(root: Path) -> bool:
    return (Path(root) / sweep.SWEEP_FILE).is_file()


# --------------------------------------------------------------------------------- the cells
def cell_status(run_dir: Path) -> tuple[str, str]:
    """(status, note) of a cell folder: finished, failed (with the error), running, killed (a
    config.json but no summary: the next `vgrout sweep` resumes it) or not started."""
    folder = RunFolder(run_dir)
    if folder.summary.is_file():
        return "finished", ""
    failed = run_dir / sweep.FAILED_FILE
    if failed.is_file():
        try:
            error = json.loads(failed.read_text()).get("error", "")
        except (OSError, ValueError):
            error = "failed.json unreadable"
        return "failed", str(error).splitlines()[0] if error else ""
    if (run_dir / sweep.RUNNING_FILE).is_file():
        return "running", ""
    if folder.config.is_file():
        return "killed", "resumable: re-run the sweep"
    return "not started", ""


def _cell_group(cell: dict, group_by: Sequence[str]) -> str:
    fields = {f: cell["config"].get(f) for f in group_by}
    return agg.group_name(agg.group_key({"arm": cell["arm"], "fields": fields}, group_by))


# --------------------------------------------------------------------------------- the report
def write_sweep_report(
    root: Path,
    *,
    classify: bool = False,
    classify_arms: Sequence[str] | None = None,
    reading: Path | None = None,
    publish: Path | None = None,
    n_resamples: int = 10_000,
) -> tuple[Path, str]:
    """Write ROOT/report.md, curves.png, zones.png and runs.csv; returns (path, a short text for
    the terminal: the arms table and the significance paragraph).

    `classify` runs `vgrout classify` on the finished runs without one (only those of
    `classify_arms` when given). `reading` is a hand-written Markdown file placed under the arms
    table as "Reading" (what the numbers mean; it is not generated). `publish` copies the report,
    its plots and runs.csv into that folder (e.g. docs/evidence, to be committed)."""
    root = Path(root)
    doc = json.loads((root / sweep.SWEEP_FILE).read_text())
    cells = doc["cells"]
    if reading is not None and not Path(reading).is_file():
        raise FileNotFoundError(f"--reading {reading}: no such file")
    classify_errors = (
        classify_missing(root, cells, arms=classify_arms) if classify or classify_arms else []
    )
    summary = sweep.finish(root, n_resamples=n_resamples)
    group_by = summary["group_by"][1:]
    defaults = sweep.base_defaults(root)
    status = {c["name"]: cell_status(root / sweep.RUNS / c["folder"]) for c in cells}

    groups: dict[str, dict] = {}  # grid order
    for c in cells:
        name = _cell_group(c, group_by)
        info = groups.setdefault(name, {
            "arm": c["arm"], "fields": {f: c["config"].get(f) for f in group_by},
            "cells": 0, "finished": 0, "finished_dirs": [], "by_seed": {},
        })  # fmt: skip
        info["display"] = agg.display_name(agg.group_key(info, group_by), defaults)
        info["cells"] += 1
        if status[c["name"]][0] == "finished":
            d = root / sweep.RUNS / c["folder"]
            info["finished"] += 1
            info["finished_dirs"].append(d)
            info["by_seed"].setdefault(c["config"].get("seed"), []).append(d)

    curves = plot_curves(root, {g["display"]: list(g["by_seed"].values()) for g in groups.values()})
    arms = arms_table(summary, groups)
    paragraph = significance_paragraph(summary)
    counts: dict[str, int] = {}
    for st, _ in status.values():
        counts[st] = counts.get(st, 0) + 1
    not_done = [
        (c["name"], *status[c["name"]]) for c in cells if status[c["name"]][0] != "finished"
    ]
    finished_dirs = [d for g in groups.values() for d in g["finished_dirs"]]
    by_group = {
        g["display"]: g["finished_dirs"] for g in groups.values()
    }  # rows of the per-group tables
    seconds = [run_summary(d).get("seconds") for d in finished_dirs]
    seconds = [s for s in seconds if isinstance(s, int | float)]
    class_text, n_classified, n_finished = classify_tables(
        groups, n_resamples, summary.get("level", 0.95)
    )

    spec = doc.get("spec", {})
    level = round(100 * summary.get("level", 0.95))
    lines = [
        "# vgrout sweep report",
        "",
        f"Folder: `{root}`. Preset `{spec.get('preset', '?')}`; grid: {_grid_words(spec)}"
        f"{_set_words(spec)}. {len(cells)} cells: "
        + ", ".join(f"{n} {st}" for st, n in counts.items())
        + f". Training time summed over finished runs: {sum(seconds):.0f} s. "
        + machines_sentence(finished_dirs),
        "",
        f"Every number is a mean over training seeds (runs that share a seed, e.g. several placebo "
        f"Haar seeds, are averaged first) with a {level}% percentile-bootstrap interval over seeds "
        f"({summary.get('n_resamples', 0):,} resamples, seeded). Rates are on held-out problems with "
        "held-out loophole markers, one sample per prompt at the evaluation temperature. "
        "*deployed* = quarantine deleted (for `none`, deployed = as-trained); *hack* = the home "
        "mode's channel paid and the answer is not truly correct; *solve* = the strict oracle "
        "passed.",
        "",
        "## Arms",
        "",
        arms,
        "",
    ]
    if not_done:
        lines += [
            f"Cells without a result ({len(not_done)}): they are left out of every number in this report.",
            "",
            *(f"- `{n}`: {st}" + (f": {note}" if note else "") for n, st, note in not_done),
            "",
        ]
    if reading is not None:
        lines += ["## Reading", "", Path(reading).read_text().strip(), ""]
    lines += [
        "## What is significant",
        "",
        paragraph,
        "",
        "## Paired contrasts",
        "",
        f"Differences A - B per seed (same seed, same other grid fields; a contrast declared "
        f"in the spec, listed first with its reason, pairs its two groups by seed only), mean "
        f"over seeds [{level}% bootstrap interval]. `*` = the interval excludes 0 with at least "
        f"{summary.get('min_seeds')} paired seeds; `~` = not tested (fewer paired seeds); `†` = "
        f"also significant after Holm's correction for every contrast tested in its column "
        f"(paired t-test per contrast, family-wise error {100 - level}%; "
        f"{holm_families(summary)}). A `*` without `†` is a finding to replicate on fresh seeds "
        "before building on it.",
        "",
        contrasts_table(summary),
        "",
        "## Placebo band",
        "",
        "Each placebo run uses one Haar-random direction through the same machinery; the band is "
        "the spread over every placebo run (not averaged by seed), and the real arm's mean over "
        "seeds is placed in it.",
        "",
        placebo_table(summary),
        "",
        "## Curves",
        "",
        "Held-out rates at each periodic evaluation, mean over seeds (shaded: range over seeds; "
        "values in the last section); zone shares and qmass per training step.",
        "",
        "![hack and solve curves](curves.png)",
        "",
        "![zone shares and qmass](zones.png)",
        "",
        "## Gate as a classifier during training",
        "",
        "The gate's own AUROC / F0.5 as logged each step (direction arms), mean over steps and runs.",
        "",
        gate_table(by_group),
        "",
        "## Where the gate's scores put the hacks",
        "",
        SCORE_NOTE,
        "",
        score_table(by_group),
        "",
        "## Offline classifier analysis",
        "",
    ]
    if class_text:
        lines += [
            f"From `vgrout classify` ({n_classified} of {n_finished} finished runs; see each run's "
            "classify.md for the method): a linear direction per source, scored at each feature "
            "site, against the oracle `exploited` label on the evaluation half, rollouts with "
            f"advantage > 0. Mean over runs [{level}% bootstrap interval]; `(k/n)` = only k of the "
            "n runs had both classes; `n/a` = no run had both classes; `skip` = the source could "
            "not be built in any run (e.g. no self-generated pair survived, or the oracle fit half "
            "has no hack); Haar p95 = mean over runs of the 95th percentile of random directions "
            "(the bar a label-free direction must clear).",
            "",
            class_text,
        ]
    else:
        lines += [
            "No run folder holds a classifier analysis yet. Produce it with "
            "`vgrout classify RUN_DIR` for each run folder under `runs/`, or all at once with "
            f"`vgrout report {root} --classify`, then re-run the report.",
            "",
        ]
    if classify_errors:
        lines += [f"- classify failed on `{n}`: {e}" for n, e in classify_errors] + [""]
    lines += [
        "## Where the time goes",
        "",
        TIME_NOTE,
        "",
        time_table(by_group),
        "",
        "## Runs",
        "",
        runs_table(root, cells, status),
        "",
        "## Curve values",
        "",
        curve_values_table(curves),
        "",
    ]
    path = root / "report.md"
    atomic_write_text(path, "\n".join(lines))
    atomic_write_text(root / RUNS_CSV, runs_csv(root, doc, status))
    if publish is not None:
        publish_report(root, Path(publish))
    brief = "\n".join([arms, "", paragraph, "", f"report: {path}"])
    return path, brief


def publish_report(root: Path, dest: Path) -> None:
    """Copy report.md, its PNGs and runs.csv into `dest` (created), each file written whole."""
    dest.mkdir(parents=True, exist_ok=True)
    for src in [root / "report.md", root / RUNS_CSV, *sorted(root.glob("*.png"))]:
        atomic_write_bytes(dest / src.name, src.read_bytes())


def significance_paragraph(summary: dict) -> str:
    sentences = summary.get("sentences") or agg.significance_sentences(summary)
    level = round(100 * summary.get("level", 0.95))
    if not sentences:
        return (
            "No comparison can be made yet: contrasts need a `none` arm or a placebo arm that "
            "shares seeds with the arm it controls."
        )
    lead = (
        f"A comparison is called significant when its {level}% bootstrap interval over paired "
        f"seeds excludes 0 and at least {summary.get('min_seeds')} seeds pair up. This report "
        "tests many comparisons, and a bootstrap over a few seeds is narrow, so each also gets a "
        "paired t-test p-value, adjusted by Holm's method over every comparison tested on the "
        f"same metric: it *holds after correction* when the adjusted p is under "
        f"{(100 - level) / 100:.2f}."
    )
    return " ".join([lead, *sentences])


def _grid_words(spec: dict) -> str:
    grids = spec.get("grids") or [{}]
    words = []
    for g in grids:
        axes = "; ".join(
            f"{k} = {', '.join(agg.format_value(v) for v in vs)}" for k, vs in g.items()
        )
        words.append(axes or "(one cell)")
    return " + ".join(words)


def _set_words(spec: dict) -> str:
    sets = spec.get("set") or {}
    if not sets:
        return ""
    return "; fixed: " + ", ".join(f"{k}={agg.format_value(v)}" for k, v in sets.items())
