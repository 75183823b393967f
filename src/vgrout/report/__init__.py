"""`vgrout report DIR`: report.md + PNG plots for a decision folder or a single run folder.

A decision folder holds summary.json with "arms" and one run folder per arm x seed; a run folder holds
config.json, metrics.jsonl, eval.jsonl. The report shows: the table of deployed and as-trained
hack/solve per arm with 95% intervals, hack and solve curves per arm over steps, zone shares and
qmass over steps, and the gate's AUROC / F0.5 (direction arms).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from vgrout.runfolder import atomic_write_text, read_jsonl


def _fmt(rate: float, ci) -> str:
    if rate is None or (isinstance(rate, float) and math.isnan(rate)):
        return "n/a"
    return f"{rate:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"


def arms_table(summary: dict) -> str:
    rows = [
        "| arm | deployed hack | deployed solve | as-trained hack | as-trained solve | n |",
        "|---|---|---|---|---|---|",
    ]
    base = summary.get("base")
    if base:
        rows.append(
            f"| base model | {_fmt(base['hack'], base['hack_ci'])} | {_fmt(base['solve'], base['solve_ci'])} | - | - | {base['n']} |"
        )
    for arm, r in summary["arms"].items():
        d, a = r["deployed"], r["as_trained"]
        rows.append(
            f"| {arm} | {_fmt(d['hack'], d['hack_ci'])} | {_fmt(d['solve'], d['solve_ci'])} | "
            f"{_fmt(a['hack'], a['hack_ci'])} | {_fmt(a['solve'], a['solve_ci'])} | {d['n']} |"
        )
    return "\n".join(rows)


def _run_dirs(root: Path, summary: dict) -> dict[str, list[Path]]:
    return {arm: [root / name for name in r.get("runs", [])] for arm, r in summary["arms"].items()}


def _plot_curves(root: Path, runs: dict[str, list[Path]]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    # hack / solve over steps, deployed (solid) and as-trained (dashed)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for arm, dirs in runs.items():
        for k, d in enumerate(dirs):
            rows = [r for r in read_jsonl(d / "eval.jsonl") if r.get("kind") == "periodic"]
            if not rows:
                continue
            steps = [r["step"] for r in rows]
            for ax, metric in zip(axes, ("hack", "solve"), strict=True):
                line = ax.plot(
                    steps,
                    [r["deployed"][metric] for r in rows],
                    label=f"{arm} deployed" if k == 0 else None,
                )[0]
                ax.plot(
                    steps,
                    [r["as_trained"][metric] for r in rows],
                    ls="--",
                    color=line.get_color(),
                    alpha=0.6,
                )
    for ax, metric in zip(axes, ("hack", "solve"), strict=True):
        ax.set_title(f"held-out {metric} rate (solid: deployed, dashed: as-trained)")
        ax.set_xlabel("update")
        ax.set_ylim(-0.02, 1.02)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(root / "curves.png", dpi=110)
    plt.close(fig)
    made.append("curves.png")

    # zone shares and qmass over steps
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for arm, dirs in runs.items():
        for k, d in enumerate(dirs):
            m = read_jsonl(d / "metrics.jsonl")
            if not m:
                continue
            steps = [r["step"] for r in m]
            rout = [r.get("share_rout", float("nan")) for r in m]
            keep = [r.get("share_keep", float("nan")) for r in m]
            line = axes[0].plot(steps, rout, label=f"{arm} rout" if k == 0 else None)[0]
            axes[0].plot(steps, keep, ls=":", color=line.get_color())
            axes[1].plot(
                steps,
                [r.get("qmass", float("nan")) for r in m],
                color=line.get_color(),
                label=arm if k == 0 else None,
            )
    axes[0].set_title("zone shares (solid: rout, dotted: keep)")
    axes[1].set_title("qmass: quarantine share of update energy")
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(root / "zones.png", dpi=110)
    plt.close(fig)
    made.append("zones.png")
    return made


def _gate_table(runs: dict[str, list[Path]]) -> str:
    rows = [
        "| arm | mean gate AUROC (A>0 rollouts) | mean F0.5 | steps with both classes |",
        "|---|---|---|---|",
    ]
    any_row = False
    for arm, dirs in runs.items():
        au, f = [], []
        for d in dirs:
            for r in read_jsonl(d / "metrics.jsonl"):
                a, b = r.get("auroc"), r.get("f05")
                if a is not None and not math.isnan(a):
                    au.append(a)
                if b is not None and not math.isnan(b):
                    f.append(b)
        if au or f:
            any_row = True
            mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
            rows.append(f"| {arm} | {mean(au):.3f} | {mean(f):.3f} | {len(au)} |")
    return "\n".join(rows) if any_row else "(no direction arm logged gate scores)"


def write_report(root: Path) -> Path:
    root = Path(root)
    summary_path = root / "summary.json"
    if not summary_path.is_file():
        raise FileNotFoundError(f"{root} has no summary.json (is the run or decision finished?)")
    summary = json.loads(summary_path.read_text())
    if "arms" not in summary:  # a single run: wrap it as a one-arm decision
        summary = {
            "arms": {
                summary["arm"]: {
                    "deployed": summary["deployed"],
                    "as_trained": summary["as_trained"],
                    "runs": ["."],
                }
            },
            "seconds": summary.get("seconds"),
        }
    runs = _run_dirs(root, summary)
    plots = _plot_curves(root, runs)
    lines = [
        "# vgrout report",
        "",
        f"Folder: `{root}`. Wall time: {summary.get('seconds', float('nan')):.0f} s. "
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
        "## Curves",
        "",
        "![hack and solve curves](curves.png)",
        "",
        "![zone shares and qmass](zones.png)",
        "",
        "## Gate as a classifier",
        "",
        _gate_table(runs),
        "",
    ]
    path = root / "report.md"
    atomic_write_text(path, "\n".join(lines))
    del plots
    return path
