"""The README's claims, each re-computed from the published runs and corrected for their number.

`docs/evidence/claims.toml` lists every claim the README's evidence summary makes, each as one
paired contrast between two published configurations:

    [[claim]]
    text = "absorb leaves less hack than none"    # what the README says
    a = "absorb"                                  # arm, or "arm;field=value;..." (runs.csv form)
    b = "none"
    metric = "deployed.hack"                      # state.metric (aggregate.METRICS)
    direction = "lower"                           # a - b claimed: lower | higher | tie

`vgrout index` computes each from `all-runs.csv` (every distinct published run) and writes
CLAIMS.md. Why a second reading next to each folder's report:

- Pooling: a configuration run by several folders (a re-made seed set, a copied reference cell)
  counts every seed it has, so a claim made on seeds 0-4 and re-made on 5-9 is tested on 10.
- Pairing: runs pair by draw (CPU kernels, toy base) and seed, because a seed fixes prompts,
  sampling and init only within a draw; pairs of several draws are pooled (each is an independent
  replicate). Draws that did not record their kernels and base are left out, as in INDEX.md.
- Testing: a paired Student t-test per claim (a percentile bootstrap over 5 seeds is narrower
  than it should be) and Holm's correction over every directional claim in the file (the
  family-wise error stays at 5% however many the README makes). A `tie` claim is not tested for a
  difference (no test proves equality): it reports its unadjusted 95% t interval, the range of
  differences the seeds leave open, and says when that interval excludes 0.
"""

from __future__ import annotations

import csv
import io
import math
import tomllib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vgrout.experiments.aggregate import METRICS
from vgrout.experiments.report.common import markdown_table, seed_ranges
from vgrout.experiments.stats import format_p, holm_adjust, paired_t_pvalue, t_interval

CLAIMS_TOML = "claims.toml"
CLAIMS_MD = "CLAIMS.md"
DIRECTIONS = ("lower", "higher", "tie")
ALPHA = 0.05


# --------------------------------------------------------------------------------- configurations
def _value(v: str):
    """ "0.45" and "0.450" are one value; strings compare as written."""
    try:
        return float(v)
    except ValueError:
        return v.strip()


def parse_overrides(text: str) -> frozenset:
    """runs.csv's `field=value;field=value` as a set of (field, value) (order-free)."""
    items = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        field, sep, value = part.partition("=")
        if not sep or not field.strip():
            raise ValueError(f"override {part!r} is not `field=value`")
        items.append((field.strip(), _value(value)))
    return frozenset(items)


def parse_configuration(text: str) -> tuple[str, frozenset]:
    """`absorb` or `routeA;band_keep_q=0;band_tail_q=0.45` -> (arm, overrides)."""
    arm, _, rest = text.strip().partition(";")
    if not arm.strip() or "=" in arm:
        raise ValueError(f"configuration {text!r} must start with an arm name")
    return arm.strip(), parse_overrides(rest)


def describe(arm: str, overrides: frozenset) -> str:
    rest = ", ".join(f"{f}={_shown(v)}" for f, v in sorted(overrides, key=str))
    return f"{arm} [{rest}]" if rest else arm


def _shown(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


# --------------------------------------------------------------------------------- claims file
def load_claims(path: Path) -> list[dict]:
    """The claims of a claims.toml, validated: each with text, a, b (parsed), metric, direction."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path} is not valid TOML: {e}") from e
    claims = doc.get("claim")
    if not isinstance(claims, list) or not claims:
        raise ValueError(f"{path} holds no [[claim]] table")
    out = []
    for i, c in enumerate(claims, 1):
        where = f"{path}, claim {i}"
        missing = [k for k in ("text", "a", "b", "metric", "direction") if k not in c]
        if missing:
            raise ValueError(f"{where} lacks {', '.join(missing)}")
        unknown = set(c) - {"text", "a", "b", "metric", "direction"}
        if unknown:
            raise ValueError(f"{where} has unknown keys {sorted(unknown)}")
        if c["metric"] not in METRICS:
            raise ValueError(f"{where}: metric {c['metric']!r} is not one of {', '.join(METRICS)}")
        if c["direction"] not in DIRECTIONS:
            raise ValueError(
                f"{where}: direction {c['direction']!r} is not one of {', '.join(DIRECTIONS)}"
            )
        try:
            a, b = parse_configuration(c["a"]), parse_configuration(c["b"])
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from e
        out.append({**c, "a": a, "b": b})
    return out


# --------------------------------------------------------------------------------- statistics
def by_configuration(runs: Sequence[dict]) -> dict[tuple[str, frozenset], list[dict]]:
    """The runs of recorded draws grouped by configuration (arm, overrides), each row's overrides
    parsed once."""
    groups: dict[tuple[str, frozenset], list[dict]] = {}
    for r in runs:
        if r["cpu"] and r["base"]:
            groups.setdefault((r["arm"], parse_overrides(r["overrides"])), []).append(r)
    return groups


def per_draw_seed(rows: Sequence[dict], metric: str) -> dict:
    """{(cpu, base, seed): value} of one configuration's rows (a seed made more than once, e.g. at
    several commits, is averaged)."""
    column = metric.replace(".", "_")
    values: dict[tuple, list[float]] = {}
    for r in rows:
        if r[column] not in ("", None):
            values.setdefault((r["cpu"], r["base"], int(r["seed"])), []).append(float(r[column]))
    return {k: float(np.mean(v)) for k, v in values.items()}


def evaluate_claims(claims: Sequence[dict], runs: Sequence[dict]) -> list[dict]:
    """Each claim with its pairs, mean difference, t interval, p, Holm p (directional claims,
    one family) and verdict. A claim whose configurations have no recorded-draw run, or share no
    (draw, seed), is an error naming it: the file asks for evidence that is not published."""
    configs = by_configuration(runs)
    results = []
    for c in claims:
        a = per_draw_seed(configs.get(c["a"], []), c["metric"])
        b = per_draw_seed(configs.get(c["b"], []), c["metric"])
        for side, vals in (("a", a), ("b", b)):
            if not vals:
                raise ValueError(
                    f"claim {c['text']!r}: no published run of {describe(*c[side])} in a "
                    "recorded draw (see INDEX.md's configurations; overrides must match exactly)"
                )
        common = sorted(set(a) & set(b))
        if len(common) < 2:
            raise ValueError(
                f"claim {c['text']!r}: {describe(*c['a'])} and {describe(*c['b'])} share "
                f"{len(common)} (draw, seed) pair(s); a paired test needs at least 2"
            )
        diffs = [a[k] - b[k] for k in common]
        draws: dict[str, list[tuple[int, float]]] = {}
        for k, d in zip(common, diffs, strict=True):
            draws.setdefault(f"{k[0]} {k[1][:6]}", []).append((k[2], d))
        lo, hi = t_interval(diffs)
        results.append({
            **c,
            "n": len(diffs),
            "mean": float(np.mean(diffs)),
            "lo": lo,
            "hi": hi,
            "p": paired_t_pvalue(diffs),
            "draws": {
                k: (seed_ranges(s for s, _ in v), float(np.mean([d for _, d in v])))
                for k, v in draws.items()
            },
        })  # fmt: skip
    directional = [r for r in results if r["direction"] != "tie"]
    for r, p_holm in zip(directional, holm_adjust([r["p"] for r in directional]), strict=True):
        r["p_holm"] = p_holm
    for r in results:
        r["verdict"] = verdict(r, len(directional))
    return results


def verdict(r: dict, family: int) -> str:
    if r["direction"] == "tie":
        if r["lo"] <= 0 <= r["hi"]:
            return "no difference detected"
        return "**a difference**: the interval excludes 0"
    claimed = -1 if r["direction"] == "lower" else 1
    if r["p_holm"] < ALPHA:
        if math.copysign(1, r["mean"]) == claimed:
            return "**holds** after correction"
        return "**opposite sign**, significant after correction"
    if r["p"] < ALPHA and math.copysign(1, r["mean"]) == claimed:
        return f"p < {ALPHA} alone, **not after correction** for {family} claims"
    return "**not established**"


def claims_page(root: Path, all_runs_csv: str, shown_root: str) -> str | None:
    """CLAIMS.md's text for ROOT/claims.toml over all-runs.csv's text; None without a claims file."""
    path = Path(root) / CLAIMS_TOML
    if not path.is_file():
        return None
    runs = list(csv.DictReader(io.StringIO(all_runs_csv)))
    return claims_markdown(evaluate_claims(load_claims(path), runs), shown_root)


# --------------------------------------------------------------------------------- the page
def claims_markdown(results: Sequence[dict], shown_root: str) -> str:
    n_dir = sum(r["direction"] != "tie" for r in results)
    holding = sum(r["verdict"].startswith("**holds") for r in results)
    rows = []
    for i, r in enumerate(results, 1):
        p_holm = "-" if r["direction"] == "tie" else format_p(r["p_holm"])
        rows.append([
            i,
            r["text"],
            f"{describe(*r['a'])} - {describe(*r['b'])}",
            r["metric"],
            r["direction"],
            f"{r['n']} ({_seed_words(r)})",
            f"{r['mean']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}]",
            format_p(r["p"]),
            p_holm,
            r["verdict"],
        ])  # fmt: skip
    header = [
        "#", "claim", "A - B", "metric", "claimed", "pairs (draw: seeds, mean)",
        "mean [95% t interval]", "p", "Holm p", "verdict",
    ]  # fmt: skip
    return "\n".join(
        [
            "# The README's claims, re-computed and corrected",
            "",
            f"Generated by `vgrout index {shown_root}` from `{CLAIMS_TOML}` and `all-runs.csv`; "
            "do not edit by hand (a test checks that it is current). Each claim the README's "
            "evidence summary makes is one paired contrast A - B between two published "
            "configurations. Runs pair by draw (CPU kernels, toy base) and seed, every seed any "
            "published folder holds (so a claim re-made on fresh seeds is tested on all of them), "
            "pairs of several draws pooled; draws that did not record their kernels and base are "
            "left out. *p*: two-sided paired t-test; *Holm p*: Holm's correction over the "
            f"{n_dir} directional claims (family-wise error 5%); the interval is Student's t, "
            "wider than the reports' percentile bootstrap over the same seeds. A *tie* claim is "
            "not a test (no test shows equality): its interval is the range of differences the "
            "seeds leave open.",
            "",
            f"**{holding} of {n_dir} directional claims hold after correction.**",
            "",
            markdown_table(header, rows),
            "",
        ]
    )


def _seed_words(r: dict) -> str:
    return "; ".join(f"{d} seeds {seeds}: {m:+.3f}" for d, (seeds, m) in r["draws"].items())
