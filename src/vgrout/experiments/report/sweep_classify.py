"""The sweep report's offline classifier section: `vgrout classify` outputs (classify.json in each
run folder) aggregated over each group's runs, and classifying the runs that lack one."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from vgrout.experiments import aggregate as agg
from vgrout.experiments import sweep
from vgrout.experiments.report.common import format_number, markdown_table, missing
from vgrout.runfolder import RunFolder

CLASSIFY_FILE = "classify.json"
CLASSIFY_METRICS: tuple[str, ...] = ("auroc_pos_adv", "f05_pos_adv")
"""Offline classifier metrics shown per source x site (advantage > 0 rollouts, evaluation half)."""


def classify_tables(
    groups: dict[str, dict], n_resamples: int, level: float = 0.95
) -> tuple[str, int, int]:
    """The offline classifier analysis aggregated over each group's classified runs.

    Returns (Markdown, runs with classify.json, finished runs). Each cell is the mean over runs
    [95% bootstrap interval] of one metric on the evaluation half (`vgrout.experiments.classify`),
    for one direction source at one feature site; `skip` when the source could not be built in any
    run, `n/a` when every run lacks a class."""
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
                        cells.append(
                            format_number(st["mean"], (st["lo"], st["hi"])) + _of(len(vals), ds)
                        )
                    elif entries and all("skipped" in e for e in entries):
                        cells.append("skip")
                    else:
                        cells.append("n/a")
                p95 = [
                    d["results"].get(site, {}).get("haar", {}).get("eval", {}).get(m, {})
                    for d in ds
                ]
                p95 = [b.get("p95") for b in p95 if not missing(b.get("p95"))]
                cells.append(format_number(sum(p95) / len(p95)) if p95 else "n/a")
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
