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
- Replication: the pooled test counts the seeds a claim was made from, and seeds added because a
  claim fell short are a second look, so pooling alone flatters. `made_on` (the file's default,
  a claim may override it) names the seeds each claim was stated from; the same test on the
  other seeds alone, corrected by Holm over the claims re-tested, is the replication: a test the
  claim could have failed. A claim stated (or re-worded) after its later seeds came in names
  them in its `made_on`, and has no replication. A seed set counts on every draw; a table
  (`{ "AVX512 6185c1" = "0-4" }`, draws as CLAIMS.md names them) names the seeds of each draw a
  claim was read from, so another draw's runs of the same seeds, made later, are fresh.
"""

from __future__ import annotations

import csv
import io
import math
import re
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
ZERO = 1e-9  # |mean difference| below this is 0 (equal rates summed in another order)


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
    unknown = set(doc) - {"claim", "made_on"}
    if unknown:
        raise ValueError(f"{path} has unknown top-level keys {sorted(unknown)}")
    made_on = parse_made_on(doc["made_on"], f"{path}, made_on") if "made_on" in doc else None
    out = []
    for i, c in enumerate(claims, 1):
        where = f"{path}, claim {i}"
        missing = [k for k in ("text", "a", "b", "metric", "direction") if k not in c]
        if missing:
            raise ValueError(f"{where} lacks {', '.join(missing)}")
        unknown = set(c) - {"text", "a", "b", "metric", "direction", "made_on"}
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
        own = parse_made_on(c["made_on"], f"{where}, made_on") if "made_on" in c else made_on
        out.append({**c, "a": a, "b": b, "made_on": own})
    return out


def parse_made_on(value, where: str) -> frozenset[int] | dict[str, frozenset[int]]:
    """A seed set (every draw), or a table {draw: seed set} of the draws a claim was read from."""
    if isinstance(value, dict):
        if not value:
            raise ValueError(
                f'{where}: an empty table; name draws like {{ "AVX512 6185c1" = "0-4" }}'
            )
        return {str(k): parse_seeds(v, f"{where}, {k}") for k, v in value.items()}
    return parse_seeds(value, where)


def _made_on_draw(made_on, draw: str) -> frozenset[int]:
    """The seeds of DRAW a claim was made on (none for a table that does not name it)."""
    return made_on.get(draw, frozenset()) if isinstance(made_on, dict) else made_on


def made_on_words(made_on) -> str:
    if isinstance(made_on, dict):
        return "; ".join(f"{draw}: {seed_ranges(s)}" for draw, s in made_on.items())
    return seed_ranges(made_on)


def _draw(cpu: str, base: str) -> str:
    """A draw as CLAIMS.md names it: CPU kernels and the toy base's first 6 hex digits."""
    return f"{cpu} {base[:6]}"


def parse_seeds(value, where: str) -> frozenset[int]:
    """`"0-4"`, `"0-4, 7"` or `[0, 1, 2]` -> the seeds; anything else is an error naming WHERE."""
    if isinstance(value, list) and value and all(type(v) is int and v >= 0 for v in value):
        return frozenset(value)
    if isinstance(value, str) and value.strip():
        seeds: set[int] = set()
        for part in value.split(","):
            lo, dash, hi = part.strip().partition("-")
            try:
                first, last = int(lo), int(hi if dash else lo)
            except ValueError:
                break
            if first < 0 or last < first:
                break
            seeds.update(range(first, last + 1))
        else:
            return frozenset(seeds)
    raise ValueError(
        f'{where}: {value!r} is not a seed set; write it like "0-4", "0-4, 7" or [0, 1, 2]'
    )


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
    one family) and verdict, and, for a claim with `made_on` seeds, `replication`: the same over
    its other seeds alone (None when fewer than 2 pairs), Holm over the claims re-tested. A claim
    whose configurations have no recorded-draw run, or share no (draw, seed), is an error naming
    it: the file asks for evidence that is not published."""
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
        diffs = {k: a[k] - b[k] for k in sorted(set(a) & set(b))}
        if len(diffs) < 2:
            raise ValueError(
                f"claim {c['text']!r}: {describe(*c['a'])} and {describe(*c['b'])} share "
                f"{len(diffs)} (draw, seed) pair(s); a paired test needs at least 2"
            )
        made_on = c.get("made_on")
        draws = {_draw(cpu, base) for cpu, base, _ in diffs}
        if isinstance(made_on, dict) and set(made_on) - draws:
            raise ValueError(
                f"claim {c['text']!r}: made_on names draw(s) {sorted(set(made_on) - draws)} "
                f"that none of its pairs is on; its draws: {', '.join(sorted(draws))}"
            )
        fresh = {
            k: d
            for k, d in diffs.items()
            if made_on is not None and k[2] not in _made_on_draw(made_on, _draw(k[0], k[1]))
        }
        results.append({
            **c,
            **paired_test(diffs),
            "replication": (
                {**paired_test(fresh), "direction": c["direction"]} if len(fresh) >= 2 else None
            ),
        })  # fmt: skip
    _correct(results)
    for r in results:
        r["verdict"] = verdict(r, _family(results))
    retested = [r["replication"] for r in results if r["replication"] is not None]
    _correct(retested)
    for rep in retested:
        rep["verdict"] = replication_verdict(rep, _family(retested))
    return results


def paired_test(diffs: dict[tuple, float]) -> dict:
    """n, mean, Student-t interval, two-sided p and per-draw (seeds, mean) of {(cpu, base,
    seed): a - b}."""
    values = list(diffs.values())
    draws: dict[str, list[tuple[int, float]]] = {}
    for (cpu, base, seed), d in diffs.items():
        draws.setdefault(_draw(cpu, base), []).append((seed, d))
    lo, hi = t_interval(values)
    return {
        "n": len(values),
        "mean": float(np.mean(values)),
        "lo": lo,
        "hi": hi,
        "p": paired_t_pvalue(values),
        "draws": {
            k: (seed_ranges(s for s, _ in v), float(np.mean([d for _, d in v])))
            for k, v in draws.items()
        },
    }


def _correct(results: list[dict]) -> None:
    """Holm's p over the directional ones of RESULTS (one family), in place."""
    directional = [r for r in results if r["direction"] != "tie"]
    for r, p_holm in zip(directional, holm_adjust([r["p"] for r in directional]), strict=True):
        r["p_holm"] = p_holm


def _family(results: Sequence[dict]) -> int:
    return sum(r["direction"] != "tie" for r in results)


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


def replication_verdict(r: dict, family: int) -> str:
    """A claim on the seeds it was not made on. "Alone": p < 0.05 with the claimed sign, the usual
    replication criterion (Open Science Collaboration 2015); "after correction": Holm over every
    claim re-tested."""
    if r["direction"] == "tie":
        return verdict(r, family)
    if abs(r["mean"]) < ZERO:
        return "**no difference** (mean 0)"
    claimed = -1 if r["direction"] == "lower" else 1
    same = math.copysign(1, r["mean"]) == claimed
    if not same:
        if r["p_holm"] < ALPHA:
            return "**reversed**, significant after correction"
        return "**opposite sign**" + (f", p < {ALPHA} alone" if r["p"] < ALPHA else "")
    if r["p_holm"] < ALPHA:
        return "**replicated**, after correction"
    if r["p"] < ALPHA:
        return f"replicated alone (p < {ALPHA}), not after correction for {family}"
    return "same sign, not significant"


def claims_page(root: Path, all_runs_csv: str, shown_root: str) -> str | None:
    """CLAIMS.md's text for ROOT/claims.toml over all-runs.csv's text; None without a claims file."""
    path = Path(root) / CLAIMS_TOML
    if not path.is_file():
        return None
    runs = list(csv.DictReader(io.StringIO(all_runs_csv)))
    return claims_markdown(evaluate_claims(load_claims(path), runs), shown_root)


# --------------------------------------------------------------------------------- the page
def claims_markdown(results: Sequence[dict], shown_root: str) -> str:
    n_dir = _family(results)
    holding = sum(r["verdict"].startswith("**holds") for r in results)
    rows = []
    for i, r in enumerate(results, 1):
        rows.append([
            i,
            r["text"],
            f"{describe(*r['a'])} - {describe(*r['b'])}",
            r["metric"],
            r["direction"],
            *_test_cells(r),
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
            *_replication_section(results),
        ]
    )


def _test_cells(r: dict) -> list:
    p_holm = "-" if r["direction"] == "tie" else format_p(r["p_holm"])
    return [
        f"{r['n']} ({_seed_words(r)})",
        f"{r['mean']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}]",
        format_p(r["p"]),
        p_holm,
        r["verdict"],
    ]


def _replication_section(results: Sequence[dict]) -> list[str]:
    """The claims on the seeds they were not made on; nothing when the file names no made_on."""
    if all(r.get("made_on") is None for r in results):
        return []
    retested = [(i, r) for i, r in enumerate(results, 1) if r["replication"] is not None]
    reps = [r["replication"] for _, r in retested]
    n_dir = _family(reps)
    after = sum(x["verdict"].startswith("**replicated") for x in reps)
    alone = after + sum(x["verdict"].startswith("replicated alone") for x in reps)
    same = alone + sum(x["verdict"].startswith("same sign") for x in reps)
    zero = sum(x["verdict"].startswith("**no difference") for x in reps)
    ties_open = sum(x["direction"] == "tie" and x["lo"] <= 0 <= x["hi"] for x in reps)
    not_retested = [str(i) for i, r in enumerate(results, 1) if r["replication"] is None]
    few = sum(x["n"] <= 5 for x in reps)
    if few:
        pairs = (
            f"{few} of the {len(reps)} claims re-tested have 5 fresh pairs or fewer: a t-test "
            "on 4 degrees of freedom, which Holm's correction over many claims leaves little power."
        )
    elif reps:
        fewest = min(x["n"] for x in reps)
        pairs = f"Each of the {len(reps)} claims re-tested has at least {fewest} fresh pairs."
    else:
        pairs = "No claim has a fresh pair of seeds yet."
    rows = [
        [i, r["text"], made_on_words(r["made_on"]), *_test_cells(r["replication"])]
        for i, r in retested
    ]
    header = [
        "#", "claim", "made on seeds", "fresh pairs (draw: seeds, mean)",
        "mean [95% t interval]", "p", "Holm p", "verdict on fresh seeds",
    ]  # fmt: skip
    lines = [
        "## Replication: each claim on the seeds it was not made on",
        "",
        "The table above pools every seed, including those a claim was stated from, and seeds "
        "that were added because a claim fell short (a second look that pooling alone "
        "flatters). Here each claim is tested on the seeds it was not made on alone "
        f"(`made_on` in `{CLAIMS_TOML}`): a test it could have failed. Same paired t-test, "
        "two-sided; Holm's correction over the directional claims re-tested. A claim stated or "
        "re-worded after its later seeds came in names them in `made_on` and is not re-tested.",
        "",
        f"**Of {n_dir} directional claims re-tested, {same} keep their sign on fresh seeds, "
        f"{alone} with p < {ALPHA} alone (the usual replication criterion), {after} after "
        f"Holm's correction over the {n_dir}; {n_dir - same - zero} take the other sign"
        + (f", {zero} with a mean difference of exactly 0" if zero else "")
        + ".** "
        f"{ties_open} of {len(reps) - n_dir} ties re-tested leave intervals that include 0. "
        + pairs,
        "",
        markdown_table(header, rows),
        "",
    ]
    if not_retested:
        lines += [
            f"Not re-tested (no fresh pair of seeds): {', '.join(not_retested)}.",
            "",
        ]
    return lines


def claims_summaries(text: str) -> list[str]:
    """CLAIMS.md's bold verdict counts (pooled; replication when there is one), without the
    asterisks: what `vgrout index` prints and the README quotes."""
    return re.findall(
        r"^\*\*(\d+ of \d+ directional claims hold[^*]*|Of \d+ directional claims re-tested[^*]*)\*\*",
        text,
        re.M,
    )


def _seed_words(r: dict) -> str:
    return "; ".join(f"{d} seeds {seeds}: {m:+.3f}" for d, (seeds, m) in r["draws"].items())
