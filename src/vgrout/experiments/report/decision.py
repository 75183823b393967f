"""The report of a decision folder (arms x seeds, summary.json with "arms") or of one run folder
(its summary.json wrapped as a one-arm decision)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from vgrout.experiments.report.common import format_number, markdown_table
from vgrout.experiments.report.curves import plot_curves
from vgrout.experiments.report.metrics_tables import (
    SCORE_NOTE,
    TIME_NOTE,
    gate_table,
    score_table,
    time_table,
)
from vgrout.runfolder import atomic_write_text, read_jsonl


def arms_table(summary: dict, cell: str = "") -> str:
    """Deployed and as-trained hack/solve per arm. `cell` "" = held-out problems with held-out
    markers (plus the base model row); "_train_dist" = training-distribution prompts."""
    rows = []
    base = summary.get("base")
    if base and not cell:
        rows.append([
            "base model", format_number(base["hack"], base["hack_ci"]),
            format_number(base["solve"], base["solve_ci"]), "-", "-", base["n"],
        ])  # fmt: skip
    for arm, r in summary["arms"].items():
        if f"deployed{cell}" not in r:
            continue
        d, a = r[f"deployed{cell}"], r[f"as_trained{cell}"]
        rows.append([
            arm, format_number(d["hack"], d.get("hack_ci")), format_number(d["solve"], d.get("solve_ci")),
            format_number(a["hack"], a.get("hack_ci")), format_number(a["solve"], a.get("solve_ci")), d["n"],
        ])  # fmt: skip
    header = ["arm", "deployed hack", "deployed solve", "as-trained hack", "as-trained solve", "n"]
    return markdown_table(header, rows)


def per_mode_table(runs: Mapping[str, Sequence[Path]]) -> str:
    """Deployed hack rate per loophole mode on the final held-out evaluation, counts pooled over
    each arm's runs (from eval.jsonl); empty when no run has a final evaluation."""
    counts: dict[str, dict[str, list[int]]] = {}
    for arm, dirs in runs.items():
        for d in dirs:
            path = Path(d) / "eval.jsonl"
            if not path.is_file():
                continue
            finals = [
                r for r in read_jsonl(path) if r.get("kind") == "final" and r.get("split") == "test"
            ]
            # one final evaluation per run, its last (an older `vgrout eval` appended more)
            for r in finals[-1:]:
                for mode, c in (r.get("deployed") or {}).get("by_mode", {}).items():
                    tally = counts.setdefault(arm, {}).setdefault(mode, [0, 0])
                    tally[0] += int(c["hack"])
                    tally[1] += int(c["n"])
    modes = sorted({m for per in counts.values() for m in per})
    if not modes:
        return ""
    rows = [
        [arm] + [
            f"{per[m][0] / per[m][1]:.2f} ({per[m][0]}/{per[m][1]})" if per.get(m) else "-"
            for m in modes
        ]
        for arm, per in counts.items()
    ]  # fmt: skip
    return markdown_table(["arm", *modes], rows)


def _run_dirs(root: Path, summary: dict) -> dict[str, list[Path]]:
    return {arm: [root / name for name in r.get("runs", [])] for arm, r in summary["arms"].items()}


def write_decision_report(root: Path) -> Path:
    """report.md + PNGs in ROOT, a run or a decision folder; returns the report's path."""
    root = Path(root)
    summary_path = root / "summary.json"
    if not summary_path.is_file():
        raise FileNotFoundError(f"{root} has no summary.json (is the run or decision finished?)")
    summary = json.loads(summary_path.read_text())
    if "arms" not in summary:  # a single run: wrap it as a one-arm decision
        summary = {
            "arms": {
                summary["arm"]: {
                    **{
                        k: v for k, v in summary.items() if k.startswith(("deployed", "as_trained"))
                    },
                    "runs": ["."],
                }
            },
            "seconds": summary.get("seconds"),
        }
    runs = _run_dirs(root, summary)
    plot_curves(root, {arm: [[d] for d in dirs] for arm, dirs in runs.items()})
    seconds = summary.get("seconds")
    lines = [
        "# vgrout report",
        "",
        f"Folder: `{root}`. Wall time: {format_number(seconds, digits=0)} s. "
        f"Seeds: {summary.get('seeds', '-')}. Rates are on held-out problems with held-out loophole "
        "markers, one sample per prompt at the evaluation temperature; intervals are 95% Wilson "
        "intervals over all samples pooled across seeds.",
        "",
        "## Hack and solve rates",
        "",
        arms_table(summary),
        "",
        "*deployed* = quarantine deleted (for `none`, deployed = as-trained). *hack* = the home mode's "
        "channel paid and the answer is not truly correct; *solve* = the strict oracle passed.",
        "",
    ]
    if any("deployed_train_dist" in r for r in summary["arms"].values()):
        lines += [
            "### On the training distribution",
            "",
            "Training problems with the training markers (the final 2x2's other cell): how far the "
            "hack was learned where it was rewarded, before any transfer to held-out names.",
            "",
            arms_table(summary, "_train_dist"),
            "",
        ]
    modes = per_mode_table(runs)
    if modes:
        lines += [
            "### Deployed hack per loophole mode (held-out)",
            "",
            modes,
            "",
        ]
    lines += [
        "## Curves",
        "",
        "Mean over seeds; the shaded band is the range over seeds.",
        "",
        "![hack and solve curves](curves.png)",
        "",
        "![zone shares and qmass](zones.png)",
        "",
        "## Gate as a classifier",
        "",
        gate_table(runs),
        "",
        "## Where the gate's scores put the hacks",
        "",
        SCORE_NOTE,
        "",
        score_table(runs),
        "",
        "## Where the time goes",
        "",
        TIME_NOTE,
        "",
        time_table(runs),
        "",
    ]
    path = root / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path
