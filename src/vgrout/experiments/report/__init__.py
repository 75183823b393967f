"""`vgrout report DIR`: report.md + PNG plots for a run folder, a decision folder or a sweep folder.

A decision folder holds summary.json with "arms" and one run folder per arm x seed; a run folder holds
config.json, metrics.jsonl, eval.jsonl; a sweep folder holds sweep.json and runs/<cell>/ run folders
(`vgrout.experiments.report.sweep`). The report shows: the table of deployed and as-trained hack/solve per arm
with 95% intervals, hack and solve curves per arm over steps (mean over seeds, shaded: the range
over seeds), zone shares and qmass over steps, and the gate's AUROC / F0.5 (direction arms).

The table, curve and gate helpers here are shared by the decision and the sweep report.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from vgrout.runfolder import atomic_write_text, read_jsonl

CURVE_KEYS: tuple[str, ...] = (
    "deployed.hack",
    "deployed.solve",
    "as_trained.hack",
    "as_trained.solve",
)
"""Per-step keys of `eval_series` (periodic held-out evaluations, `state.metric`)."""
ZONE_KEYS: tuple[str, ...] = ("share_rout", "share_keep", "qmass")
"""Per-step keys of `zone_series` (metrics.jsonl)."""

Series = dict[int, dict[str, float]]
"""{step: {key: value}} of one run."""


# --------------------------------------------------------------------------------- tables
def missing(x) -> bool:
    """None or NaN: a number the report shows as n/a."""
    return x is None or (isinstance(x, float) and math.isnan(x))


def _fmt(rate: float | None, ci=None, digits: int = 2, signed: bool = False) -> str:
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


def arms_table(summary: dict, cell: str = "") -> str:
    """Deployed and as-trained hack/solve per arm. `cell` "" = held-out problems with held-out
    markers (plus the base model row); "_train_dist" = training-distribution prompts."""
    rows = []
    base = summary.get("base")
    if base and not cell:
        rows.append([
            "base model", _fmt(base["hack"], base["hack_ci"]),
            _fmt(base["solve"], base["solve_ci"]), "-", "-", base["n"],
        ])  # fmt: skip
    for arm, r in summary["arms"].items():
        if f"deployed{cell}" not in r:
            continue
        d, a = r[f"deployed{cell}"], r[f"as_trained{cell}"]
        rows.append([
            arm, _fmt(d["hack"], d.get("hack_ci")), _fmt(d["solve"], d.get("solve_ci")),
            _fmt(a["hack"], a.get("hack_ci")), _fmt(a["solve"], a.get("solve_ci")), d["n"],
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
            for r in read_jsonl(path):
                if r.get("kind") != "final" or r.get("split") != "test":
                    continue
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


# --------------------------------------------------------------------------------- curves
def _number(x) -> float:
    try:
        return math.nan if x is None else float(x)
    except (TypeError, ValueError):
        return math.nan


def eval_series(run_dir: Path) -> Series:
    """The run's periodic held-out evaluations: {step: {"deployed.hack": x, ...}}."""
    out: Series = {}
    for r in read_jsonl(Path(run_dir) / "eval.jsonl"):
        if r.get("kind") != "periodic":
            continue
        out[int(r["step"])] = {
            k: _number((r.get(k.split(".")[0]) or {}).get(k.split(".")[1])) for k in CURVE_KEYS
        }
    return out


def zone_series(run_dir: Path) -> Series:
    """The run's per-step zone shares and qmass from metrics.jsonl."""
    return {
        int(r["step"]): {k: _number(r.get(k)) for k in ZONE_KEYS}
        for r in read_jsonl(Path(run_dir) / "metrics.jsonl")
    }


def mean_curves(replicates: Sequence[Sequence[Series]], keys: Sequence[str]) -> dict:
    """Mean over replicates (seeds) per step; the runs of one replicate are averaged first.

    Returns {"step": [...], "n": [replicates with a value at that step], key: {"mean": [...],
    "min": [...], "max": [...]}} over the union of steps (NaN where no replicate has a value)."""
    per_rep: list[Series] = []
    for runs in replicates:
        steps = sorted({s for run in runs for s in run})
        per_rep.append({
            s: {k: _nanmean([run[s][k] for run in runs if s in run]) for k in keys}
            for s in steps
        })  # fmt: skip
    steps = sorted({s for rep in per_rep for s in rep})
    out: dict = {"step": steps, "n": []}
    for k in keys:
        out[k] = {"mean": [], "min": [], "max": []}
    for s in steps:
        out["n"].append(sum(1 for rep in per_rep if s in rep))
        for k in keys:
            vals = [rep[s][k] for rep in per_rep if s in rep and not missing(rep[s][k])]
            out[k]["mean"].append(_nanmean(vals))
            out[k]["min"].append(min(vals) if vals else math.nan)
            out[k]["max"].append(max(vals) if vals else math.nan)
    return out


def _nanmean(values: Iterable[float]) -> float:
    vals = [v for v in values if not missing(v)]
    return sum(vals) / len(vals) if vals else math.nan


def group_curves(
    groups: Mapping[str, Sequence[Sequence[Path]]],
    series: Callable[[Path], Series],
    keys: Sequence[str],
) -> dict[str, dict]:
    """{label: mean_curves} for {label: [[run dirs of seed 1], [run dirs of seed 2], ...]}."""
    return {
        label: mean_curves([[series(d) for d in dirs] for dirs in reps], keys)
        for label, reps in groups.items()
    }


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:  # no run logged this curve: no empty legend
        ax.legend(fontsize=7)


def plot_eval_curves(path: Path, curves: Mapping[str, dict]) -> None:
    """Held-out hack and solve over updates per label: deployed solid (shaded: range over seeds),
    as-trained dashed."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for label, c in curves.items():
        if not c["step"]:
            continue
        for ax, metric in zip(axes, ("hack", "solve"), strict=True):
            dep = c[f"deployed.{metric}"]
            line = ax.plot(c["step"], dep["mean"], label=f"{label} deployed")[0]
            if max(c["n"]) > 1:
                ax.fill_between(
                    c["step"], dep["min"], dep["max"], color=line.get_color(), alpha=0.15
                )
            ax.plot(
                c["step"], c[f"as_trained.{metric}"]["mean"], ls="--",
                color=line.get_color(), alpha=0.6,
            )  # fmt: skip
    for ax, metric in zip(axes, ("hack", "solve"), strict=True):
        ax.set_title(f"held-out {metric} rate (solid: deployed, dashed: as-trained)", fontsize=9)
        ax.set_xlabel("update")
        ax.set_ylim(-0.02, 1.02)
    _legend(axes[0])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_zone_curves(path: Path, curves: Mapping[str, dict]) -> None:
    """Zone shares (rout solid, keep dotted) and qmass over steps per label (mean over seeds)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for label, c in curves.items():
        if not c["step"]:
            continue
        line = axes[0].plot(c["step"], c["share_rout"]["mean"], label=f"{label} rout")[0]
        axes[0].plot(c["step"], c["share_keep"]["mean"], ls=":", color=line.get_color())
        axes[1].plot(c["step"], c["qmass"]["mean"], color=line.get_color(), label=label)
    axes[0].set_title("zone shares (solid: rout, dotted: keep)")
    axes[1].set_title("qmass: quarantine share of update energy")
    for ax in axes:
        ax.set_xlabel("step")
        _legend(ax)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(root: Path, groups: Mapping[str, Sequence[Sequence[Path]]]) -> dict[str, dict]:
    """ROOT/curves.png and ROOT/zones.png for {label: [[run dirs of one seed], ...]}; returns the
    held-out curves that were plotted ({label: mean_curves})."""
    curves = group_curves(groups, eval_series, CURVE_KEYS)
    plot_eval_curves(Path(root) / "curves.png", curves)
    plot_zone_curves(Path(root) / "zones.png", group_curves(groups, zone_series, ZONE_KEYS))
    return curves


def _gate_table(runs: Mapping[str, Sequence[Path]]) -> str:
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
            rows.append([arm, _fmt(_nanmean(au), digits=3), _fmt(_nanmean(f), digits=3), len(au)])
    header = ["arm", "mean gate AUROC (A>0 rollouts)", "mean F0.5", "steps with both classes"]
    return markdown_table(header, rows) if rows else "(no direction arm logged gate scores)"


TIME_PHASES: tuple[str, ...] = ("generate", "grade", "gate", "update", "refresh")
"""Step phases logged as `time_<phase>` in metrics.jsonl (`vgrout.rl.train.PHASES`)."""


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
        total = _nanmean(_number(r.get("seconds")) for r in steps)
        phase = {k: _nanmean(_number(r.get(f"time_{k}")) for r in steps) for k in TIME_PHASES}
        phase["other"] = max(0.0, total - sum(phase.values()))
        cells = [f"{v:.2f} ({v / total:.0%})" if total > 0 else f"{v:.2f}" for v in phase.values()]
        tok_s = _nanmean(_number(r.get("gen_tokens_per_s")) for r in steps)
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


def write_report(root: Path, classify: bool = False) -> Path:
    """report.md + PNGs in ROOT (a run, decision or sweep folder); returns the report's path.

    `classify` (sweep folders only): run `vgrout classify` on finished runs that lack it first."""
    root = Path(root)
    from vgrout.experiments.report import sweep as sweep_report

    if sweep_report.is_sweep_dir(root):
        return sweep_report.write_sweep_report(root, classify=classify)[0]
    if classify:
        raise ValueError(
            f"--classify works on a sweep folder; {root} is not one (for one run use "
            "`vgrout classify RUN_DIR`)"
        )
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
        f"Folder: `{root}`. Wall time: {_fmt(seconds, digits=0)} s. "
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
        _gate_table(runs),
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
