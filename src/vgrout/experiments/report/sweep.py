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
from collections.abc import Callable, Sequence
from pathlib import Path

from vgrout.experiments import aggregate as agg
from vgrout.experiments import sweep
from vgrout.experiments.report import (
    CURVE_KEYS,
    TIME_NOTE,
    _fmt,
    _gate_table,
    markdown_table,
    missing,
    plot_curves,
    time_table,
)
from vgrout.runfolder import RunFolder, atomic_write_text

CLASSIFY_FILE = "classify.json"
CLASSIFY_METRICS: tuple[str, ...] = ("auroc_pos_adv", "f05_pos_adv")
"""Offline classifier metrics shown per source x site (advantage > 0 rollouts, evaluation half)."""
STATE_TITLES = {
    "deployed.hack": "deployed hack",
    "deployed.solve": "deployed solve",
    "as_trained.hack": "as-trained hack",
    "as_trained.solve": "as-trained solve",
}


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


def _summary_of(run_dir: Path) -> dict:
    return _json_or_empty(RunFolder(run_dir).summary)


# --------------------------------------------------------------------------------- tables
def _stat(s: dict | None, signed: bool = False) -> str:
    if not s:
        return "n/a"
    return _fmt(s.get("mean"), (s.get("lo"), s.get("hi")), digits=3, signed=signed)


def arms_table(summary: dict, groups: dict[str, dict]) -> str:
    """A row per group in grid order: fields, n seeds, the four rates (mean [95% CI]), cells."""
    group_by = summary["group_by"][1:]
    stats = {g["name"]: g for g in summary["groups"]}
    rows = []
    for name, info in groups.items():
        g = stats.get(name)
        metrics = g["metrics"] if g else {}
        rows.append([
            info["arm"], *(agg.format_value(info["fields"][f]) for f in group_by),
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
    return _stat(s, signed=True) + mark


def contrasts_table(summary: dict) -> str:
    rows = []
    for kind, _ in agg.CONTRAST_KINDS:
        for c in summary.get(kind, []):
            first = c["metrics"][agg.METRICS[0]]
            rows.append([
                f"{c['a_display']} - {c['b_display']}", first.get("n", 0),
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
                *(_fmt(b.get(k), digits=3) for k in ("min", "p5", "median", "p95", "max")),
                band["real_display"] or "-", _fmt(real, digits=3), where,
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
        s = _summary_of(root / sweep.RUNS / c["folder"]) if st == "finished" else {}
        values = [_fmt(agg.metric_value(s, m), digits=3) if s else "-" for m in agg.METRICS]
        rows.append([c["name"], c["arm"], c["config"].get("seed"), st, *values, note])
    header = ["cell", "arm", "seed", "status", *(STATE_TITLES[m] for m in agg.METRICS), "note"]
    return markdown_table(header, rows)


def curve_values_table(curves: dict[str, dict]) -> str:
    rows = []
    for label, c in curves.items():
        for i, step in enumerate(c["step"]):
            rows.append([
                label, step, c["n"][i],
                *(_fmt(c[k]["mean"][i], digits=3) for k in CURVE_KEYS),
            ])  # fmt: skip
    if not rows:
        return "(no periodic evaluations logged)"
    header = ["arm", "update", "seeds", *(STATE_TITLES[k] for k in CURVE_KEYS)]
    return markdown_table(header, rows)


# --------------------------------------------------------------------------------- classifier
def classify_tables(
    groups: dict[str, dict], n_resamples: int, level: float = 0.95
) -> tuple[str, int, int]:
    """The offline classifier analysis aggregated over each group's classified runs.

    Returns (Markdown, runs with classify.json, finished runs). Each cell is the mean over runs
    [95% bootstrap interval] of one metric on the evaluation half (`classify.py`), for one direction
    source at one feature site; `skip` when the source could not be built in any run, `n/a` when
    every run lacks a class."""
    from vgrout.experiments.classify import (
        METRIC_TITLES,
        SITE_TITLES,
        SITES,
        SOURCE_TITLES,
        SOURCES,
    )

    docs: dict[str, list[dict]] = {}
    n_done = n_found = 0
    for name, info in groups.items():
        for d in info["finished_dirs"]:
            n_done += 1
            path = d / CLASSIFY_FILE
            if path.is_file():
                try:
                    docs.setdefault(name, []).append(json.loads(path.read_text()))
                    n_found += 1
                except (OSError, ValueError):
                    pass
    if not docs:
        return "", 0, n_done
    out = []
    for m in CLASSIFY_METRICS:
        rows = []
        for name, ds in docs.items():
            sites = [s for s in SITES if any(s in d.get("results", {}) for d in ds)]
            for site in sites:
                cells = []
                for source in SOURCES:
                    entries = [d["results"].get(site, {}).get(source, {}) for d in ds]
                    vals = [e["eval"].get(m) for e in entries if "eval" in e]
                    vals = [v for v in vals if not missing(v)]
                    if vals:
                        st = agg.mean_with_ci(vals, n_resamples, 0, level)
                        cells.append(_fmt(st["mean"], (st["lo"], st["hi"])) + _of(len(vals), ds))
                    elif entries and all("skipped" in e for e in entries):
                        cells.append("skip")
                    else:
                        cells.append("n/a")
                p95 = [
                    d["results"].get(site, {}).get("haar", {}).get("eval", {}).get(m, {})
                    for d in ds
                ]
                p95 = [b.get("p95") for b in p95 if not missing(b.get("p95"))]
                cells.append(_fmt(sum(p95) / len(p95)) if p95 else "n/a")
                rows.append([groups[name]["display"], SITE_TITLES.get(site, site), len(ds), *cells])
        header = ["arm", "site", "runs", *(SOURCE_TITLES[s] for s in SOURCES), "Haar p95"]
        out += [f"**{METRIC_TITLES[m]}**", "", markdown_table(header, rows), ""]
    return "\n".join(out), n_found, n_done


def _of(k: int, docs: list) -> str:
    return "" if k == len(docs) else f" ({k}/{len(docs)})"


def classify_missing(
    root: Path,
    cells: list[dict],
    log: Callable[[str], None] = print,
    arms: Sequence[str] | None = None,
) -> list:
    """Run `vgrout classify` on every finished run (of `arms`, default all) that has no
    classify.json; returns the errors (cell name, message) of runs it could not classify (the
    others still run)."""
    from vgrout.experiments.classify import classify_run

    errors = []
    for c in cells:
        d = root / sweep.RUNS / c["folder"]
        if arms is not None and c["arm"] not in arms:
            continue
        if not RunFolder(d).summary.is_file() or (d / CLASSIFY_FILE).is_file():
            continue
        log(f"[report] classify {c['name']}")
        try:
            classify_run(d)
        except Exception as e:  # one run's failure must not stop the report
            errors.append((c["name"], f"{type(e).__name__}: {e}"))
    return errors


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
    seconds = [_summary_of(d).get("seconds") for g in groups.values() for d in g["finished_dirs"]]
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
        + f". Training time summed over finished runs: {sum(seconds):.0f} s.",
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
        f"Differences A - B per seed (same seed, same other grid fields), mean over seeds "
        f"[{level}% bootstrap interval]. `*` = the interval excludes 0 with at least "
        f"{summary.get('min_seeds')} paired seeds; `~` = not tested (fewer paired seeds).",
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
        _gate_table({g["display"]: g["finished_dirs"] for g in groups.values()}),
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
        time_table({g["display"]: g["finished_dirs"] for g in groups.values()}),
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


RUNS_CSV = "runs.csv"
CSV_COLUMNS: tuple[str, ...] = (
    "arm", "seed", "overrides", "deployed_hack", "deployed_solve", "as_trained_hack",
    "as_trained_solve", "n", "commit", "threads",
)  # fmt: skip
"""One row per finished run. `overrides`: the `field=value` settings beyond the preset
(`;`-separated, empty for defaults), so a row re-runs with `vgrout train --preset P --arm ARM
--seed SEED --threads THREADS --set ...` on its `commit` (`-dirty` marks a run whose src/ was
edited: not reproducible from the commit alone)."""


def run_overrides(config: dict, preset: str) -> str:
    """`field=value;...` of a run's config beyond its preset, as `--set` parses them. The arm and
    seed have their own columns; a placebo arm's conventional Haar seed (1000 + seed) is implied
    by the arm name (`vgrout train --arm routeV_placebo` expands it the same way)."""
    import dataclasses

    from vgrout.config import TrainConfig, load_preset

    cfg = TrainConfig.from_dict(config)
    base = load_preset(preset)
    label = sweep.arm_label(cfg)
    implied = {"arm", "seed", "preset", "notes"}
    if label.endswith(sweep.PLACEBO_SUFFIX) and cfg.placebo_seed == (
        sweep.PLACEBO_SEED_OFFSET + cfg.seed
    ):
        implied.add("placebo_seed")
    parts = []
    for f in dataclasses.fields(TrainConfig):
        a, b = getattr(cfg, f.name), getattr(base, f.name)
        if f.name in implied or a == b:
            continue
        parts.append(f"{f.name}={_set_text(a)}")
    return ";".join(parts)


def _set_text(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple | list):
        return ",".join(_set_text(x) for x in v)
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True)
    return str(v)


def runs_csv(root: Path, doc: dict, status: dict[str, tuple[str, str]]) -> str:
    """runs.csv (CSV_COLUMNS) of a sweep's finished runs, in grid order."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    preset = doc.get("spec", {}).get("preset", "toy")
    for c in doc["cells"]:
        if status[c["name"]][0] != "finished":
            continue
        d = root / sweep.RUNS / c["folder"]
        s = _summary_of(d)
        prov = _json_or_empty(RunFolder(d).provenance)
        commit = prov.get("commit") or "unknown"
        if prov.get("dirty"):
            commit += "-dirty"
        dep, tr = s.get("deployed", {}), s.get("as_trained", {})
        w.writerow([
            c["arm"], c["config"]["seed"], run_overrides(c["config"], preset),
            dep.get("hack"), dep.get("solve"), tr.get("hack"), tr.get("solve"), dep.get("n"),
            commit, prov.get("torch_threads", ""),
        ])  # fmt: skip
    return buf.getvalue()


def _json_or_empty(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def publish_report(root: Path, dest: Path) -> None:
    """Copy report.md, its PNGs and runs.csv into `dest` (created), each file written whole."""
    dest.mkdir(parents=True, exist_ok=True)
    for src in [root / "report.md", root / RUNS_CSV, *sorted(root.glob("*.png"))]:
        tmp = dest / f".{src.name}.tmp"
        tmp.write_bytes(src.read_bytes())
        tmp.replace(dest / src.name)


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
        f"seeds excludes 0 and at least {summary.get('min_seeds')} seeds pair up."
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
