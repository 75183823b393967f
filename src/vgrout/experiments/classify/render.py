"""Rendering an analysis: the Markdown of classify.md and the grouped bars of classify.png."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from vgrout.experiments.classify.analysis import ORACLE, SOURCE_TITLES, SOURCES
from vgrout.experiments.classify.features import SITE_TITLES
from vgrout.experiments.classify.metrics import METRIC_TITLES, METRICS


def _fmt(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def results_table(analysis: dict, rows: str, sites_dim: dict[str, int] | None = None) -> str:
    """One Markdown table: a line per (site, metric), a column per source + the Haar band.

    rows = "eval" (every source on the evaluation half) or "all" (label-free sources on all
    selected rollouts; oracle columns show '-')."""
    header = ["site", "metric", *(SOURCE_TITLES[s] for s in SOURCES), "Haar median", "Haar p95"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for site, cell in analysis["results"].items():
        title = SITE_TITLES.get(site, site)
        if sites_dim and site in sites_dim:
            title += f" ({sites_dim[site]})"
        for m in METRICS:
            vals = []
            for source in SOURCES:
                entry = cell.get(source, {})
                if "skipped" in entry:
                    vals.append("skip")
                elif rows not in entry:
                    vals.append("-")
                else:
                    vals.append(_fmt(entry[rows][m]))
            band = cell["haar"][rows][m]
            vals += [_fmt(band["median"]), _fmt(band["p95"])]
            lines.append(f"| {title} | {METRIC_TITLES[m]} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def _reasons(analysis: dict, rows: str) -> list[str]:
    found: dict[str, str] = {}
    for cell in analysis["results"].values():
        for source, entry in cell.items():
            if "skipped" in entry and source in ORACLE and rows == "eval":
                found.setdefault(f"{SOURCE_TITLES[source]}", "skipped: " + entry["skipped"])
            if source == "haar" or rows not in entry:
                continue
            for m in METRICS:
                why = entry[rows].get(f"{m}_reason")
                if why:
                    found.setdefault(METRIC_TITLES[m], why)
    return [
        f"{m}: {why}" if why.startswith("skipped") else f"{m} n/a: {why}"
        for m, why in found.items()
    ]


def markdown_report(info: dict, analysis: dict) -> str:
    sp = analysis["split"]
    lab = info["labels"]
    lines = [
        f"# Classifier analysis: `{info['run_dir']}`",
        "",
        f"Arm `{info['arm']}`, checkpoint after {info['checkpoint_step']} updates, read in the "
        f"**{info['state']}** state. {info['n_rollouts']} {info['rollout_kind']} rollouts "
        f"(of {info['n_available']} available; seed {info['seed']}), {lab['hacks']} exploited, "
        f"{lab['n_pos_adv']} with advantage > 0 of which {lab['hacks_pos_adv']} exploited. "
        "Labels are the run's oracle `exploited` flags (measurement only).",
        "",
        f"Operating point for F0.5: score >= the {100 * (1 - info['tail_q']):.0f}th percentile of "
        f"the scored rollouts' scores (the rout tail of the quantile band, tail {info['tail_q']}, "
        "equal weights). Directions are unit per block (per module at the adapter sites) and "
        "scores are raw dot products, as the gate scores. `skip` = the source could not be built; "
        "`n/a` = a class is absent.",
        "",
        f"## Evaluation half ({sp['eval_rows']} rollouts, {sp['eval_hacks']} hacks, "
        f"{sp['eval_problems']} problems; oracle fits on the other {sp['fit_rows']} rollouts "
        f"of {sp['fit_problems']} problems, split by problem)",
        "",
        results_table(analysis, "eval", info.get("site_dims")),
        "",
        *(f"- {r}" for r in _reasons(analysis, "eval")),
        "",
        f"## All {info['n_rollouts']} rollouts (label-free sources only)",
        "",
        results_table(analysis, "all", info.get("site_dims")),
        "",
        *(f"- {r}" for r in _reasons(analysis, "all")),
        "",
    ]
    skipped = info.get("skipped_sources") or {}
    for source, why in skipped.items():
        lines.append(f"- {SOURCE_TITLES[source]} skipped: {why}")
    logged = info.get("logged_gate_score")
    if logged:
        lines += [
            "",
            "The run's own gate scores as logged (each scored at training time by that step's "
            f"model and direction; {logged['n']} rollouts): "
            + ", ".join(f"{METRIC_TITLES[m]} {_fmt(logged[m])}" for m in METRICS),
        ]
    lines += ["", "![classifier analysis](classify.png)", ""]
    return "\n".join(lines)


def plot(analysis: dict, path: Path, title: str = "") -> None:
    """Grouped bars per site (one bar per source), the Haar band (median..p95) shaded behind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sites = list(analysis["results"])
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5), sharex=True)
    width = 0.8 / len(SOURCES)
    colors = ["tab:blue", "tab:green", "tab:red", "tab:purple"]
    for ax, m in zip(axes.flat, METRICS, strict=True):
        for i, site in enumerate(sites):
            band = analysis["results"][site]["haar"]["eval"][m]
            if np.isfinite(band["median"]):
                ax.add_patch(
                    matplotlib.patches.Rectangle(
                        (i - 0.45, band["median"]), 0.9, band["p95"] - band["median"],
                        color="0.8", zorder=0, label="Haar median..p95" if i == 0 else None,
                    )
                )  # fmt: skip
                ax.hlines(band["median"], i - 0.45, i + 0.45, color="0.5", lw=1, zorder=1)
            for j, source in enumerate(SOURCES):
                entry = analysis["results"][site].get(source, {})
                val = entry.get("eval", {}).get(m, math.nan)
                x = i - 0.4 + (j + 0.5) * width
                if np.isfinite(val):
                    ax.bar(x, val, width, color=colors[j], zorder=2,
                           label=SOURCE_TITLES[source] if i == 0 else None)  # fmt: skip
                else:
                    ax.text(x, 0.02, "n/a", rotation=90, ha="center", va="bottom", fontsize=7)
        if m.startswith("auroc"):
            ax.axhline(0.5, color="k", lw=0.6, ls=":")
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{METRIC_TITLES[m]} (evaluation half)")
        ax.set_xticks(range(len(sites)), [SITE_TITLES.get(s, s) for s in sites])
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if labels:  # nothing to label when every cell is n/a
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
