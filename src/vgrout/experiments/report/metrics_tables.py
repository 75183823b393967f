"""Tables of what runs logged during training (metrics.jsonl per step, rollouts.parquet per
rollout), shared by the decision and the sweep report: the gate's AUROC / F0.5, where its scores
put the hacks, and where the time goes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from vgrout.experiments.report.common import (
    format_number,
    markdown_table,
    missing,
    nanmean,
    to_number,
)
from vgrout.experiments.stats import bootstrap_ci
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


SCORE_BINS: tuple[tuple[float, float], ...] = (
    (0, 0.1),
    (0.1, 0.3),
    (0.3, 0.7),
    (0.7, 0.9),
    (0.9, 1),
)
"""Within-step score quantile bins of `score_table`: the band's keep tail, its middle, its rout
tail (band_tail_q = 0.1)."""

SCORE_NOTE = (
    "Kept student rollouts of the direction arms (teacher rows are all hacks by construction and "
    "left out); *hack* = the oracle's `exploited` label. Hack rate in each zone the gate gave, "
    "where the hacks went (*hacks kept*: share of the hacks in the keep zone, which trains the "
    "deployed block alone; *hacks routed*: in the rout zone, which trains the quarantine alone; "
    "the rest trained both), and "
    "by the rollout's score quantile within its step (a gate that finds hacks has its highest rate "
    "in the top bin, where the band routs). Mean over runs; *top bin - all* is the top bin's rate "
    "minus the arm's overall rate, with a 95% bootstrap interval over runs; *norm AUROC* is how "
    "well the raw feature's norm alone tells hacks apart (below 0.5: hacks have the smaller norms; "
    "n/a for runs made before the norm was logged, 2026-12-01)."
)


def score_rates(run_dir: Path) -> dict | None:
    """One run's hack rates among kept, scored student rollouts: `all`, per zone, per score bin;
    None when the run scored none (not a direction arm, or no rollouts.parquet)."""
    import pyarrow.parquet as pq

    path = Path(run_dir) / "rollouts.parquet"
    cols = ["step", "source", "kept", "zone", "score", "exploited"]
    names = set(pq.read_schema(path).names) if path.is_file() else set()
    if not set(cols) <= names:
        return None
    t = pq.read_table(path, columns=cols + ["feature_norm"] * ("feature_norm" in names)).to_pydict()
    score = np.array([np.nan if v is None else v for v in t["score"]], dtype=float)
    use = np.array(t["kept"], bool) & (np.array(t["source"]) == "student") & ~np.isnan(score)
    if not use.any():
        return None
    step, zone = np.array(t["step"])[use], np.array(t["zone"])[use]
    hack, score = np.array(t["exploited"], bool)[use], score[use]
    quantile = np.empty(len(score))
    for s in np.unique(step):  # mid-rank quantile in (0, 1) within the step
        at = np.flatnonzero(step == s)
        ranks = score[at].argsort(kind="stable").argsort()
        quantile[at] = (ranks + 0.5) / len(at)
    rate = {"all": hack.mean()}
    for z in ("keep", "absorb", "rout"):
        rate[z] = hack[zone == z].mean() if (zone == z).any() else np.nan
    for z in ("keep", "rout"):  # the rest of the hacks trained both blocks
        rate[f"hacks_{z}"] = (zone[hack] == z).mean() if hack.any() else np.nan
    for lo, hi in SCORE_BINS:
        inside = (quantile >= lo) & (quantile < hi)
        rate[(lo, hi)] = hack[inside].mean() if inside.any() else np.nan
    rate["norm_auroc"] = np.nan
    if "feature_norm" in t and 0 < hack.sum() < len(hack):
        from sklearn.metrics import roc_auc_score

        rate["norm_auroc"] = roc_auc_score(hack, np.array(t["feature_norm"], float)[use])
    return rate


def score_table(runs: Mapping[str, Sequence[Path]]) -> str:
    """Where the gate's scores put the hacks (SCORE_NOTE), per arm."""
    rows = []
    for arm, dirs in runs.items():
        rates = [r for r in (score_rates(d) for d in dirs) if r is not None]
        if not rates:
            continue
        keys = ["all", "keep", "absorb", "rout", "hacks_keep", "hacks_rout", *SCORE_BINS]
        cells = [format_number(nanmean(r[k] for r in rates), digits=3) for k in keys]
        lift = [r[SCORE_BINS[-1]] - r["all"] for r in rates]
        ci = bootstrap_ci(lift) if len(lift) > 1 else None
        norm = format_number(nanmean(r["norm_auroc"] for r in rates), digits=3)
        rows.append(
            [arm, len(rates), *cells, format_number(nanmean(lift), ci, 3, signed=True), norm]
        )
    if not rows:
        return "(no direction arm scored rollouts)"
    bins = [f"{lo:.0%}-{hi:.0%}" for lo, hi in SCORE_BINS]
    header = [
        "arm",
        "runs",
        "all",
        "keep",
        "absorb",
        "rout",
        "hacks kept",
        "hacks routed",
        *bins,
        "top bin - all",
        "norm AUROC",
    ]
    return markdown_table(header, rows)


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
