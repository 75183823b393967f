"""The sweep report's tables: groups (arms x other grid fields), paired contrasts, the placebo band,
every cell, and the curve values."""

from __future__ import annotations

from pathlib import Path

from vgrout.config import reads_field
from vgrout.experiments import aggregate as agg
from vgrout.experiments import sweep
from vgrout.experiments.report.common import format_number, markdown_table, missing, run_summary
from vgrout.experiments.report.curves import CURVE_KEYS

STATE_TITLES = {
    "deployed.hack": "deployed hack",
    "deployed.solve": "deployed solve",
    "as_trained.hack": "as-trained hack",
    "as_trained.solve": "as-trained solve",
}


def _stat(s: dict | None, signed: bool = False) -> str:
    if not s:
        return "n/a"
    return format_number(s.get("mean"), (s.get("lo"), s.get("hi")), digits=3, signed=signed)


def arms_table(summary: dict, groups: dict[str, dict]) -> str:
    """A row per group in grid order: fields ("-" where the arm does not read one, e.g. a band for
    absorb), n seeds, the four rates (mean [95% CI]), cells."""
    group_by = summary["group_by"][1:]
    stats = {g["name"]: g for g in summary["groups"]}
    config_arm = {
        name: over["arm"] for name, over in sweep.derived_arms().items()
    }  # routeV_placebo
    rows = []
    for name, info in groups.items():
        g = stats.get(name)
        metrics = g["metrics"] if g else {}
        arm = config_arm.get(info["arm"], info["arm"])
        rows.append([
            info["arm"],
            *(
                agg.format_value(info["fields"][f]) if reads_field(arm, f) else "-"
                for f in group_by
            ),
            len(g["seeds"]) if g else 0,
            *(_stat(metrics.get(m)) for m in agg.METRICS),
            f"{info['finished']}/{info['cells']}",
        ])  # fmt: skip
    header = ["arm", *group_by, "seeds", *(STATE_TITLES[m] for m in agg.METRICS), "cells done"]
    return markdown_table(header, rows)


def _contrast_cell(s: dict | None) -> str:
    if not s:
        return "n/a"
    mark = {True: " *", False: "", None: " ~"}[s.get("significant")]
    if s.get("significant_holm"):
        mark = (mark or " ") + "†"
    return _stat(s, signed=True) + mark


def holm_families(summary: dict) -> str:
    """`12 contrasts in each column` (or `12 / 12 / 11 / 11 contrasts ...` when a metric's Holm
    family differs)."""
    sizes = []
    for m in agg.METRICS:
        n = {
            s.get("holm_family")
            for kind, _ in agg.CONTRAST_KINDS
            for c in summary.get(kind, [])
            if (s := c["metrics"].get(m)) and s.get("holm_family")
        }
        sizes.append(max(n) if n else 0)
    if len(set(sizes)) == 1:
        return f"{sizes[0]} contrast{'' if sizes[0] == 1 else 's'} in each column"
    return " / ".join(str(k) for k in sizes) + " contrasts in the columns from left to right"


def contrasts_table(summary: dict) -> str:
    rows = []
    for kind, _ in agg.CONTRAST_KINDS:
        for c in summary.get(kind, []):
            first = c["metrics"][agg.METRICS[0]]
            why = f" ({c['why']})" if c.get("why") else ""
            rows.append([
                f"{c['a_display']} - {c['b_display']}{why}", first.get("n", 0),
                *(_contrast_cell(c["metrics"].get(m)) for m in agg.METRICS),
            ])  # fmt: skip
    if not rows:
        return (
            "(no contrast: contrasts need finished runs of `none`, or of a placebo arm, that share "
            "seeds with the arm compared)"
        )
    header = ["contrast", "paired seeds", *(STATE_TITLES[m] for m in agg.METRICS)]
    return markdown_table(header, rows)


def placebo_table(summary: dict) -> str:
    rows = []
    for band in summary.get("placebo_band", []):
        for m in agg.SENTENCE_METRICS:
            b = band["metrics"].get(m)
            if not b or not b.get("n"):
                continue
            real = b.get("real_mean")
            where = (
                agg.band_position(b)
                if band["real"] is not None and not missing(real)
                else "no real arm"
            )
            rows.append([
                band["placebo_display"], STATE_TITLES[m], b["n"],
                *(format_number(b.get(k), digits=3) for k in ("min", "p5", "median", "p95", "max")),
                band["real_display"] or "-", format_number(real, digits=3), where,
            ])  # fmt: skip
    if not rows:
        return "(no finished placebo runs)"
    header = ["placebo", "metric", "placebo runs", "min", "p5", "median", "p95", "max", "real arm",
              "real mean", "real vs band"]  # fmt: skip
    return markdown_table(header, rows)


def runs_table(root: Path, cells: list[dict], status: dict[str, tuple[str, str]]) -> str:
    rows = []
    for c in cells:
        st, note = status[c["name"]]
        s = run_summary(root / sweep.RUNS / c["folder"]) if st == "finished" else {}
        values = [
            format_number(agg.metric_value(s, m), digits=3) if s else "-" for m in agg.METRICS
        ]
        rows.append([c["name"], c["arm"], c["config"].get("seed"), st, *values, note])
    header = ["cell", "arm", "seed", "status", *(STATE_TITLES[m] for m in agg.METRICS), "note"]
    return markdown_table(header, rows)


def curve_values_table(curves: dict[str, dict]) -> str:
    rows = []
    for label, c in curves.items():
        for i, step in enumerate(c["step"]):
            rows.append([
                label, step, c["n"][i],
                *(format_number(c[k]["mean"][i], digits=3) for k in CURVE_KEYS),
            ])  # fmt: skip
    if not rows:
        return "(no periodic evaluations logged)"
    header = ["arm", "update", "seeds", *(STATE_TITLES[k] for k in CURVE_KEYS)]
    return markdown_table(header, rows)
