"""Curves over training: per-run series from eval.jsonl and metrics.jsonl, their mean over seeds,
and the curves.png / zones.png plots shared by the decision and the sweep report."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from vgrout.experiments.report.common import missing, nanmean, to_number
from vgrout.runfolder import read_jsonl

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


def eval_series(run_dir: Path) -> Series:
    """The run's periodic held-out evaluations: {step: {"deployed.hack": x, ...}}."""
    out: Series = {}
    for r in read_jsonl(Path(run_dir) / "eval.jsonl"):
        if r.get("kind") != "periodic":
            continue
        out[int(r["step"])] = {
            k: to_number((r.get(k.split(".")[0]) or {}).get(k.split(".")[1])) for k in CURVE_KEYS
        }
    return out


def zone_series(run_dir: Path) -> Series:
    """The run's per-step zone shares and qmass from metrics.jsonl."""
    return {
        int(r["step"]): {k: to_number(r.get(k)) for k in ZONE_KEYS}
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
            s: {k: nanmean([run[s][k] for run in runs if s in run]) for k in keys}
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
            out[k]["mean"].append(nanmean(vals))
            out[k]["min"].append(min(vals) if vals else math.nan)
            out[k]["max"].append(max(vals) if vals else math.nan)
    return out


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
