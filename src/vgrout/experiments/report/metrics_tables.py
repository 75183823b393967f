"""Tables of what runs logged per training step in metrics.jsonl, shared by the decision and the
sweep report: the gate's AUROC / F0.5 and where the time goes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from vgrout.experiments.report.common import (
    format_number,
    markdown_table,
    missing,
    nanmean,
    to_number,
)
from vgrout.runfolder import read_jsonl


def gate_table(runs: Mapping[str, Sequence[Path]]) -> str:
    """Mean over steps (and runs) of the gate's logged AUROC / F0.5 per label."""
    rows = []
    for arm, dirs in runs.items():
        au, f = [], []
        for d in dirs:
            for r in read_jsonl(Path(d) / "metrics.jsonl"):
                a, b = r.get("auroc"), r.get("f05")
                if not missing(a):
                    au.append(a)
                if not missing(b):
                    f.append(b)
        if au or f:
            rows.append(
                [
                    arm,
                    format_number(nanmean(au), digits=3),
                    format_number(nanmean(f), digits=3),
                    len(au),
                ]
            )
    header = ["arm", "mean gate AUROC (A>0 rollouts)", "mean F0.5", "steps with both classes"]
    return markdown_table(header, rows) if rows else "(no direction arm logged gate scores)"


TIME_PHASES: tuple[str, ...] = ("generate", "grade", "gate", "update", "refresh")
"""Step phases logged as `time_<phase>` in metrics.jsonl (`vgrout.rl.metrics.PHASES`)."""


def time_table(runs: Mapping[str, Sequence[Path]]) -> str:
    """Where the time goes: mean seconds per step and per phase (share of the step) per arm, over
    all logged steps of its runs; `other` = the step's seconds outside the timed phases."""
    rows = []
    for arm, dirs in runs.items():
        steps = [
            r
            for d in dirs
            if (Path(d) / "metrics.jsonl").is_file()
            for r in read_jsonl(Path(d) / "metrics.jsonl")
            if "time_generate" in r
        ]
        if not steps:
            continue
        total = nanmean(to_number(r.get("seconds")) for r in steps)
        phase = {k: nanmean(to_number(r.get(f"time_{k}")) for r in steps) for k in TIME_PHASES}
        phase["other"] = max(0.0, total - sum(phase.values()))
        cells = [f"{v:.2f} ({v / total:.0%})" if total > 0 else f"{v:.2f}" for v in phase.values()]
        tok_s = nanmean(to_number(r.get("gen_tokens_per_s")) for r in steps)
        rows.append([arm, f"{total:.2f}", *cells, f"{tok_s:.0f}", len(steps)])
    if not rows:
        return "(no phase timings in metrics.jsonl: runs made before they were logged)"
    header = ["arm", "s/step", *TIME_PHASES, "other", "generated tok/s", "steps"]
    return markdown_table(header, rows)


TIME_NOTE = (
    "Mean seconds per training step and per phase (share of the step), over every logged step: "
    "*generate* = sampling rollouts; *grade* = the sandboxed grader (teacher rows included); "
    "*gate* = scoring and routing (routeV's c-probe pass); *update* = old log-probs, the masked "
    "forward/backward and the optimizer step; *refresh* = direction re-extraction; *other* = "
    "bookkeeping. Evaluations and checkpoints are not in a step."
)
