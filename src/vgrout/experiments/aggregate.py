"""Pool a sweep's runs into evidence: means over seeds, bootstrap intervals, paired contrasts.

Everything here is a pure function of run records (no torch, no files) except `load_runs`, which
reads a sweep folder. A run record is a small dict:

    {"arm": "routeV_placebo", "seed": 1, "fields": {"init": "scorda"}, "summary": {...}}

`arm` is the arm *label* (a placebo run of routeV is `routeV_placebo`), `fields` holds the other
grid fields the runs may be grouped by, and `summary` is the run's `summary.json`
(`summary["deployed"]["hack"]` etc.).

The statistics, and why:
- The unit of replication is the training seed: runs of one group that share a seed (e.g. several
  placebo Haar seeds) are averaged first, then the mean over seeds gets a 95% percentile-bootstrap
  interval (resampling seeds with replacement; seeded, so the numbers are reproducible).
- Contrasts are paired by seed (same seed, same other fields), because a seed fixes prompts,
  sampling and adapter init: pairing removes that shared noise. `X - none` (and `X - plain`) for
  every arm X, `real - placebo` (e.g. routeV - routeV_placebo), one-field ablations against the
  arm's default, and any contrast the sweep spec declares (two named groups).
- A placebo band: the spread of the placebo runs' deployed hack over every placebo run (one Haar
  direction each), so a reader sees whether the real direction falls outside chance.
- A contrast is called significant only if its interval excludes 0 *and* it has at least
  `min_seeds` paired seeds: a percentile bootstrap over 1-2 seeds is a point or the two values,
  not evidence.
- A report tests many contrasts at once, and a percentile bootstrap over 5 seeds is narrower than
  a Student-t interval (it ignores the n/(n-1) variance factor and the t tails), so each tested
  contrast also gets a paired t-test p-value and a Holm-adjusted one, the family being every
  contrast tested on that metric in the aggregate (Holm 1979: controls the family-wise error rate
  under any dependence between the tests). `significant_holm` is the stricter reading: a claim
  that rests on a contrast without it is one a reader should want replicated on fresh seeds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from vgrout.experiments.stats import (
    bootstrap_ci,
    format_p,
    holm_adjust,
    isnan,
    paired_t_pvalue,
)

__all__ = [
    "bootstrap_ci",
    "holm_adjust",
    "paired_t_pvalue",
]  # re-exported: the statistics live in stats

METRICS: tuple[str, ...] = (
    "deployed.hack",
    "deployed.solve",
    "as_trained.hack",
    "as_trained.solve",
)
"""`state.metric` keys into a run's summary.json (summary[state][metric])."""
SENTENCE_METRICS: tuple[str, ...] = ("deployed.hack", "deployed.solve")
PLACEBO_SUFFIX = "_placebo"
REFERENCE_ARM = "none"
REFERENCE_ARMS: tuple[str, ...] = ("none", "plain")
"""Every arm is contrasted with each vanilla control present: `none` (structure-matched: only the
deployed block trains) and `plain` (capacity-matched: rank-2r, no masks)."""
CONTRAST_KINDS: tuple[tuple[str, str], ...] = (
    ("declared", "declared in the sweep spec, paired by seed"),
    ("vs_none", "paired by seed"),
    ("vs_plain", "paired by seed"),
    ("real_vs_placebo", "real minus placebo, paired by seed"),
    ("ablations", "one setting changed, paired by seed"),
)
"""Keys of the aggregate's contrast lists, with how each pairs its runs (for sentences)."""


# --------------------------------------------------------------------------------- statistics
def mean_with_ci(values: Sequence[float], n_resamples: int, seed: int, level: float) -> dict:
    clean = [float(v) for v in values if not isnan(v)]
    lo, hi = bootstrap_ci(clean, n_resamples, seed, level)
    return {
        "mean": float(np.mean(clean)) if clean else math.nan,
        "lo": lo,
        "hi": hi,
        "n": len(clean),
    }


def metric_value(summary: dict, metric: str) -> float:
    """summary["deployed"]["hack"] for metric "deployed.hack"; NaN when the run lacks it."""
    state, name = metric.split(".", 1)
    try:
        return float(summary[state][name])
    except (KeyError, TypeError, ValueError):
        return math.nan


# --------------------------------------------------------------------------------- grouping
def group_key(run: dict, group_by: Sequence[str]) -> tuple:
    """(("arm", label), (field, value), ...): the arm label always comes first."""
    fields = run.get("fields", {})
    return (("arm", run["arm"]),) + tuple((f, _hashable(fields.get(f))) for f in group_by)


def group_name(key: tuple) -> str:
    return ",".join(f"{f}={format_value(v)}" for f, v in key)


def display_name(key: tuple, defaults: dict | None = None) -> str:
    """`routeV` or `routeV [init=scorda]` for sentences; fields at their `defaults` value (the
    sweep's base config) are left out, so the arm's default configuration reads as the arm."""
    arm = dict(key)["arm"]
    defaults = defaults or {}
    rest = [
        (f, v) for f, v in key if f != "arm" and not (f in defaults and v == _hashable(defaults[f]))
    ]
    return arm if not rest else f"{arm} [{group_name(tuple(rest))}]"


def format_value(v) -> str:
    if isinstance(v, list | tuple):
        return "+".join(format_value(x) for x in v)
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _hashable(v):
    return tuple(_hashable(x) for x in v) if isinstance(v, list | tuple) else v


def default_group_by(runs: Iterable[dict]) -> list[str]:
    """Every field the runs carry except seed and placebo_seed (the replication axes)."""
    seen: list[str] = []
    for r in runs:
        for f in r.get("fields", {}):
            if f not in ("arm", "seed", "placebo_seed") and f not in seen:
                seen.append(f)
    return seen


def per_seed_values(runs: Sequence[dict], metric: str) -> dict[int, float]:
    """{seed: value}, averaging the runs that share a seed (e.g. several placebo seeds)."""
    by_seed: dict[int, list[float]] = {}
    for r in runs:
        v = metric_value(r["summary"], metric)
        if not isnan(v):
            by_seed.setdefault(int(r["seed"]), []).append(v)
    return {s: float(np.mean(vs)) for s, vs in sorted(by_seed.items())}


def _with_arm(key: tuple, arm: str) -> tuple:
    return tuple((f, arm if f == "arm" else v) for f, v in key)


def _one_changed_field(a_key: tuple, b_key: tuple, defaults: dict) -> str | None:
    """The field in which group `a` departs from group `b` of the same arm, if it is the only
    field that differs and `b` is the arm's default configuration (every field at its default);
    else None."""
    a, b = dict(a_key), dict(b_key)
    if a["arm"] != b["arm"]:
        return None
    if any(f in defaults and v != _hashable(defaults[f]) for f, v in b.items() if f != "arm"):
        return None
    diff = [f for f in a if f != "arm" and a[f] != b.get(f)]
    return diff[0] if len(diff) == 1 and diff[0] in defaults else None


# --------------------------------------------------------------------------------- the summary
def summarize_group(
    runs: Sequence[dict], metrics: Sequence[str], n_resamples: int, seed: int, level: float
) -> dict:
    out = {}
    for m in metrics:
        values = per_seed_values(runs, m)
        stats = mean_with_ci(list(values.values()), n_resamples, seed, level)
        stats["per_seed"] = [{"seed": s, "value": v} for s, v in values.items()]
        out[m] = stats
    return out


def paired_difference(
    runs: Sequence[dict],
    reference: Sequence[dict],
    metric: str,
    *,
    n_resamples: int,
    seed: int,
    level: float,
    min_seeds: int,
) -> dict:
    """`runs - reference` per seed (seeds present in both), mean and bootstrap interval over seeds.

    `significant` is True/False when at least `min_seeds` seeds pair up, else None (not tested)."""
    a, b = per_seed_values(runs, metric), per_seed_values(reference, metric)
    common = sorted(set(a) & set(b))
    diffs = [a[s] - b[s] for s in common]
    stats = mean_with_ci(diffs, n_resamples, seed, level)
    stats["per_seed"] = [{"seed": s, "value": a[s] - b[s]} for s in common]
    stats["unpaired_seeds"] = sorted(set(a) ^ set(b))
    stats["significant"] = (
        None if len(common) < min_seeds else bool(stats["lo"] > 0 or stats["hi"] < 0)
    )
    stats["p"] = paired_t_pvalue(diffs)
    return stats


def apply_holm(contrasts: Iterable[dict], metrics: Sequence[str], level: float) -> None:
    """Add `p_holm`, `holm_family` and `significant_holm` to every tested contrast's metric stats,
    in place. One family per metric: every contrast tested on it (at least `min_seeds` paired
    seeds), each pair of groups counted once (a declared contrast may repeat an automatic one).
    Untested contrasts get None."""
    contrasts = list(contrasts)
    alpha = 1.0 - level
    for m in metrics:
        family: dict[tuple[str, str], list[dict]] = {}
        for c in contrasts:
            s = c["metrics"].get(m)
            if s is None:
                continue
            if s.get("significant") is None or isnan(s.get("p")):
                s.update(p_holm=None, holm_family=None, significant_holm=None)
                continue
            family.setdefault((c["a"], c["b"]), []).append(s)
        keys = list(family)
        adjusted = holm_adjust([family[k][0]["p"] for k in keys])
        for k, p_adj in zip(keys, adjusted, strict=True):
            for s in family[k]:
                s.update(p_holm=p_adj, holm_family=len(keys), significant_holm=bool(p_adj < alpha))


def placebo_band(placebo_runs: Sequence[dict], real_runs: Sequence[dict], metric: str) -> dict:
    """Spread of `metric` over every placebo run (one Haar direction each) and where the real
    arm's mean over seeds falls in it."""
    values = np.asarray(
        [v for v in (metric_value(r["summary"], metric) for r in placebo_runs) if not isnan(v)],
        dtype=float,
    )
    real = list(per_seed_values(real_runs, metric).values())
    real_mean = float(np.mean(real)) if real else math.nan
    band = {"n": int(values.size), "real_mean": real_mean}
    if values.size:
        p5, median, p95 = np.percentile(values, [5, 50, 95])
        band.update(
            min=float(values.min()), p5=float(p5), median=float(median),
            p95=float(p95), max=float(values.max()),
        )  # fmt: skip
        band["placebo_at_or_below_real"] = (
            int((values <= real_mean).sum()) if not math.isnan(real_mean) else None
        )
    return band


def aggregate(
    runs: Sequence[dict],
    *,
    group_by: Sequence[str] | None = None,
    metrics: Sequence[str] = METRICS,
    n_resamples: int = 10_000,
    seed: int = 0,
    level: float = 0.95,
    min_seeds: int = 3,
    defaults: dict | None = None,
    declared: Sequence[dict] = (),
) -> dict:
    """The sweep summary: per group means + intervals, paired contrasts, placebo bands.

    `defaults` ({field: value} of the sweep's base config) turns on ablation contrasts: a group
    that differs in exactly one field from its arm's default configuration is contrasted with it
    (e.g. absorb [gen_deploy_frac=0] - absorb [gen_deploy_frac=0.25]). `declared` holds the
    spec's own contrasts, {"a": record, "b": record, "why": text} with run-like records
    ({"arm", "fields"}) naming the two groups; one whose groups have no finished runs is left out."""
    group_by = list(default_group_by(runs) if group_by is None else group_by)
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault(group_key(r, group_by), []).append(r)
    kw = dict(n_resamples=n_resamples, seed=seed, level=level)

    out = {
        "group_by": ["arm", *group_by],
        "metrics": list(metrics),
        "n_resamples": n_resamples,
        "bootstrap_seed": seed,
        "level": level,
        "min_seeds": min_seeds,
        "n_runs": len(runs),
        "groups": [],
        "declared": [],
        "vs_none": [],
        "vs_plain": [],
        "real_vs_placebo": [],
        "ablations": [],
        "placebo_band": [],
    }
    seeds = {key: {int(r["seed"]) for r in rs} for key, rs in groups.items()}
    for key, rs in groups.items():
        out["groups"].append({
            "name": group_name(key),
            "display": display_name(key, defaults),
            "fields": dict(key),
            "seeds": sorted(seeds[key]),
            "n_runs": len(rs),
            "metrics": summarize_group(rs, metrics, **kw),
        })  # fmt: skip

    def contrast(a_key: tuple, b_key: tuple) -> dict:
        return {
            "name": f"{group_name(a_key)} - {group_name(b_key)}",
            "a": group_name(a_key),
            "b": group_name(b_key),
            "a_display": display_name(a_key, defaults),
            "b_display": display_name(b_key, defaults),
            "metrics": {
                m: paired_difference(groups[a_key], groups[b_key], m, min_seeds=min_seeds, **kw)
                for m in metrics
            },
        }

    def paired(a_key: tuple, b_key: tuple) -> bool:
        """Both groups ran and share a seed: an automatic contrast on disjoint seeds (e.g. one
        group on seeds 0-4, the other on 5-9) has nothing to pair and is left out."""
        return bool(seeds.get(a_key, set()) & seeds.get(b_key, set()))

    for d in declared:  # asked for by name: listed even with no seed in common (n = 0, n/a)
        a_key, b_key = group_key(d["a"], group_by), group_key(d["b"], group_by)
        if a_key in groups and b_key in groups:
            out["declared"].append({**contrast(a_key, b_key), "why": d.get("why", "")})
    for key, rs in groups.items():
        arm = dict(key)["arm"]
        for i, ref in enumerate(REFERENCE_ARMS):
            ref_key = _with_arm(key, ref)
            if arm in REFERENCE_ARMS[: i + 1]:  # itself, or the earlier control (plain - none once)
                continue
            if paired(key, ref_key):
                out[f"vs_{ref}"].append(contrast(key, ref_key))
        for other in groups:
            changed = _one_changed_field(key, other, defaults or {})
            if changed is not None and paired(key, other):
                out["ablations"].append({**contrast(key, other), "field": changed})
        if not arm.endswith(PLACEBO_SUFFIX):
            continue
        real_key = _with_arm(key, arm[: -len(PLACEBO_SUFFIX)])
        real = groups.get(real_key, [])
        if paired(real_key, key):
            out["real_vs_placebo"].append(contrast(real_key, key))
        out["placebo_band"].append({
            "placebo": group_name(key),
            "real": group_name(real_key) if real else None,
            "placebo_display": display_name(key, defaults),
            "real_display": display_name(real_key, defaults) if real else None,
            "metrics": {m: placebo_band(rs, real, m) for m in metrics},
        })  # fmt: skip
    apply_holm((c for kind, _ in CONTRAST_KINDS for c in out[kind]), metrics, level)
    return out


# --------------------------------------------------------------------------------- sentences
def significance_sentences(agg: dict, metrics: Sequence[str] = SENTENCE_METRICS) -> list[str]:
    """Plain statements of which contrasts are significant (interval excludes 0) and which not."""
    pct = round(100 * agg.get("level", 0.95))
    need = agg.get("min_seeds", 3)
    lines = []
    for kind, how in CONTRAST_KINDS:
        for c in agg.get(kind, []):
            for m in metrics:
                s = c["metrics"].get(m)
                if s is None:
                    continue
                head = (
                    f"{c['a_display']} vs {c['b_display']} ({how}, {_seeds(s['n'])}): "
                    f"{_metric_words(m)} difference"
                )
                if s["significant"] is None:
                    lines.append(
                        f"{head} {_num(s['mean'])}: not tested, {_seeds(s['n'])} paired, "
                        f"need at least {need}."
                    )
                    continue
                ci = f"({pct}% CI {_num(s['lo'])} to {_num(s['hi'])})"
                verdict = (
                    "significant, the interval excludes 0"
                    if s["significant"]
                    else "not significant, the interval includes 0"
                )
                lines.append(f"{head} {_num(s['mean'])} {ci}: {verdict}{_holm_words(s)}.")
    for band in agg.get("placebo_band", []):
        b = band["metrics"].get("deployed.hack")
        if b is None or not b["n"] or band["real"] is None:
            continue
        where = band_position(b)
        lines.append(
            f"{band['real_display']} deployed hack {_num(b['real_mean'])} against "
            f"{b['n']} {band['placebo_display']} runs (min {_num(b['min'])}, median "
            f"{_num(b['median'])}, max {_num(b['max'])}): {where}."
        )
    return lines


def _holm_words(s: dict) -> str:
    """`; paired t-test p = 0.004, Holm-adjusted over 12 contrasts 0.048: holds after correction`
    (or nothing for an untested contrast, or stats that predate the correction)."""
    if s.get("p_holm") is None:
        return ""
    verdict = (
        "holds after correction" if s["significant_holm"] else "does not hold after correction"
    )
    return (
        f"; paired t-test p = {format_p(s['p'])}, Holm-adjusted over {s['holm_family']} "
        f"contrasts {format_p(s['p_holm'])}: {verdict}"
    )


def band_position(b: dict) -> str:
    real, n, k = b["real_mean"], b["n"], b["placebo_at_or_below_real"]
    if real < b["min"]:
        return "below every placebo run"
    if real > b["max"]:
        return "above every placebo run"
    return f"inside the placebo band ({k} of {n} placebo runs are at or below it)"


def _seeds(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def _metric_words(metric: str) -> str:
    state, name = metric.split(".", 1)
    return f"{state.replace('_', '-')} {name}"


def _num(x: float) -> str:
    return "nan" if isnan(x) else f"{x:+.3f}" if x < 0 else f"{x:.3f}"


# --------------------------------------------------------------------------------- files
def load_runs(sweep_dir: Path) -> tuple[list[dict], list[str]]:
    """Run records of a sweep's finished cells (summary.json present), and the unfinished names.

    Reads `sweep.json` (the expanded grid written by `vgrout.experiments.sweep`); the grouping fields of a
    run are its grid fields, taken from the run's resolved config."""
    sweep_dir = Path(sweep_dir)
    spec_path = sweep_dir / "sweep.json"
    if not spec_path.is_file():
        raise FileNotFoundError(
            f"{sweep_dir} holds no sweep (no sweep.json); run `vgrout sweep` first"
        )
    sweep = json.loads(spec_path.read_text())
    # Every run carries every grid axis of the sweep (a sweep may join several grids), valued
    # from its own resolved config, so grouping is consistent across grids.
    axes = []
    for cell in sweep["cells"]:
        axes += [f for f in cell["fields"] if f != "arm" and f not in axes]
    runs, missing = [], []
    for cell in sweep["cells"]:
        summary_path = sweep_dir / "runs" / cell["folder"] / "summary.json"
        if not summary_path.is_file():
            missing.append(cell["name"])
            continue
        config = cell["config"]
        fields = {f: config.get(f) for f in axes}
        runs.append({
            "name": cell["name"],
            "folder": cell["folder"],
            "arm": cell["arm"],
            "seed": int(config["seed"]),
            "fields": fields,
            "summary": json.loads(summary_path.read_text()),
        })  # fmt: skip
    return runs, missing
