"""docs/evidence/claims.toml -> CLAIMS.md: each README claim re-computed from all-runs.csv, paired
by (draw, seed), tested with a paired t-test and corrected by Holm over the directional claims."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest

from vgrout.experiments.report.claims import (
    claims_page,
    claims_summaries,
    evaluate_claims,
    load_claims,
    parse_configuration,
)
from vgrout.experiments.report.evidence_index import ALL_RUNS_COLUMNS, write_evidence_index
from vgrout.experiments.report.runs_csv import CSV_COLUMNS
from vgrout.experiments.stats import t_interval

AVX, PORT = ("AVX512", "6185c18ccbcc"), ("DEFAULT", "481e8f63a64d")


def rec(arm, seed, hack, overrides="", draw=AVX, commit="a" * 40, solve=0.5):
    return {
        "arm": arm, "seed": str(seed), "overrides": overrides,
        "deployed_hack": str(hack), "deployed_solve": str(solve),
        "as_trained_hack": str(hack), "as_trained_solve": str(solve), "n": "120",
        "commit": commit, "threads": "1", "cpu": draw[0], "base": draw[1], "folders": "x",
    }  # fmt: skip


def claim(a, b, direction="lower", metric="deployed.hack", text=None, made_on=None):
    return {
        "text": text or f"{a} vs {b}",
        "a": parse_configuration(a),
        "b": parse_configuration(b),
        "metric": metric,
        "direction": direction,
        "made_on": made_on,
    }


def test_configurations_compare_as_sets_of_values():
    assert parse_configuration("routeA;band_tail_q=0.45;band_keep_q=0") == parse_configuration(
        " routeA ; band_keep_q=0.0;band_tail_q=0.450"
    )
    assert parse_configuration("routeA") != parse_configuration("routeA;band_keep_q=0")
    for bad in ("band_keep_q=0", "", "routeA;band_keep_q"):
        with pytest.raises(ValueError):
            parse_configuration(bad)


def test_pairs_are_made_by_draw_and_seed_and_pooled_over_draws():
    # AVX512 seeds 0, 1 (seed 1's routeA made twice, at two commits: averaged); DEFAULT seed 0;
    # a run with no recorded draw is left out; none's seed 2 has no partner.
    runs = [
        rec("none", 0, 0.5), rec("none", 1, 0.6), rec("none", 2, 0.9),
        rec("none", 0, 0.4, draw=PORT),
        rec("routeA", 0, 0.2), rec("routeA", 1, 0.2), rec("routeA", 1, 0.4, commit="b" * 40),
        rec("routeA", 0, 0.3, draw=PORT),
        rec("routeA", 3, 0.0, draw=("", "")), rec("none", 3, 0.9, draw=("", "")),
        rec("routeA", 0, 0.9, overrides="band_keep_q=0.0"),  # another configuration
    ]  # fmt: skip
    (r,) = evaluate_claims([claim("routeA", "none")], runs)
    diffs = [0.2 - 0.5, 0.3 - 0.6, 0.3 - 0.4]
    assert r["n"] == 3 and r["mean"] == pytest.approx(np.mean(diffs))
    assert r["draws"] == {
        "AVX512 6185c1": ("0-1", pytest.approx(-0.3)),
        "DEFAULT 481e8f": ("0", pytest.approx(-0.1)),
    }
    # t interval: mean +- t(0.975, 2) * sd / sqrt(3), with t(0.975, 2) = 4.302653 (tables)
    half = 4.302653 * np.std(diffs, ddof=1) / np.sqrt(3)
    assert (r["lo"], r["hi"]) == pytest.approx((np.mean(diffs) - half, np.mean(diffs) + half))
    assert np.isnan(t_interval([0.1])[0])


def test_holm_runs_over_directional_claims_and_verdicts_say_what_holds():
    # per seed differences by hand; 6 seeds each
    seeds = range(6)
    base = [rec("none", s, 0.5) for s in seeds]

    def arm(name, diffs):
        return [rec(name, s, 0.5 + d) for s, d in zip(seeds, diffs, strict=True)]

    strong = [-0.30, -0.31, -0.29, -0.30, -0.32, -0.28]  # p ~ 1e-7
    weak = [-0.02, -0.05, -0.01, -0.03, 0.00, -0.02]  # p = 0.027 alone, x2 under Holm
    flat = [0.01, -0.01, 0.02, -0.02, 0.00, 0.00]  # p = 1
    runs = base + arm("absorb", strong) + arm("oracle", weak) + arm("plain", flat)
    claims = [
        claim("absorb", "none"),
        claim("oracle", "none"),
        claim("plain", "none"),
        claim("absorb", "none", direction="higher", text="wrong way"),
        claim("plain", "none", direction="tie"),
        claim("absorb", "none", direction="tie", text="a tie that is not"),
    ]
    res = evaluate_claims(claims, runs)
    p = [r["p"] for r in res[:4]]
    assert p[0] < 1e-5 and 0.025 < p[1] < 0.05 and p[2] == pytest.approx(1.0)
    # Holm over the 4 directional claims: the two equal smallest p x4 and x3, raised to 4p to stay
    # monotone; oracle's x2; the flat one x1
    assert [r["p_holm"] for r in res[:4]] == pytest.approx(
        [4 * p[0], min(1, 2 * p[1]), 1.0, 4 * p[3]], rel=1e-9, abs=0
    )
    assert "p_holm" not in res[4] and "p_holm" not in res[5]  # ties are not in the family
    verdicts = [r["verdict"] for r in res]
    assert verdicts[0] == "**holds** after correction"
    assert verdicts[1] == "p < 0.05 alone, **not after correction** for 4 claims"
    assert verdicts[2] == "**not established**"
    assert verdicts[3] == "**opposite sign**, significant after correction"
    assert verdicts[4] == "no difference detected"
    assert verdicts[5] == "**a difference**: the interval excludes 0"


def test_a_claim_without_published_evidence_is_an_error_naming_it():
    runs = [rec("none", s, 0.5) for s in range(3)] + [rec("routeA", 0, 0.1)]
    with pytest.raises(ValueError, match="no published run of absorb"):
        evaluate_claims([claim("absorb", "none", text="absorb wins")], runs)
    with pytest.raises(ValueError, match="share 1 .draw, seed. pair"):
        evaluate_claims([claim("routeA", "none")], runs)


@pytest.mark.parametrize(
    "body, message",
    [
        ("", "holds no \\[\\[claim\\]\\] table"),
        ('[[claim]]\ntext = "x"\na = "absorb"\nb = "none"\nmetric = "deployed.hack"\n', "lacks"),
        (
            '[[claim]]\ntext="x"\na="absorb"\nb="none"\nmetric="hack"\ndirection="lower"\n',
            "metric 'hack' is not one of",
        ),
        (
            '[[claim]]\ntext="x"\na="absorb"\nb="none"\nmetric="deployed.hack"\ndirection="less"\n',
            "direction 'less'",
        ),
        (
            '[[claim]]\ntext="x"\na="absorb"\nb="none"\nmetric="deployed.hack"\n'
            'direction="lower"\nwhy="y"\n',
            "unknown keys",
        ),
        ("[[claim]\n", "not valid TOML"),
    ],
)
def test_a_bad_claims_file_says_what_is_wrong(tmp_path, body, message):
    path = tmp_path / "claims.toml"
    path.write_text(body)
    with pytest.raises(ValueError, match=message):
        load_claims(path)


def write_published(root: Path, rows: list[dict]) -> None:
    (root / "f").mkdir(parents=True)
    with open(root / "f" / "runs.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        for r in rows:
            w.writerow([r[c] for c in CSV_COLUMNS])


def test_index_writes_claims_md_and_nothing_when_a_claim_fails(tmp_path):
    (tmp_path / "sweeps").mkdir()
    root = tmp_path / "docs" / "evidence"
    write_published(root, [rec("none", s, 0.5 + 0.01 * s) for s in range(4)]
                    + [rec("absorb", s, 0.1 + 0.02 * s) for s in range(4)])  # fmt: skip
    good = '[[claim]]\ntext="absorb wins"\na="absorb"\nb="none"\nmetric="deployed.hack"\n'
    (root / "claims.toml").write_text(good + 'direction="lower"\n')
    paths = write_evidence_index(root)
    assert [p.name for p in paths] == ["INDEX.md", "all-runs.csv", "CLAIMS.md"]
    text = (root / "CLAIMS.md").read_text()
    assert "**1 of 1 directional claims hold after correction.**" in text
    assert (
        "| 1 | absorb wins | absorb - none | deployed.hack | lower | 4 (AVX512 6185c1 seeds 0-3:"
        in text
    )
    table = (root / "all-runs.csv").read_text()
    assert list(csv.reader(io.StringIO(table)))[0] == list(ALL_RUNS_COLUMNS)
    assert claims_page(root, table, "docs/evidence") == text
    # a claim naming an unpublished configuration: an error, and no file is rewritten
    for p in paths:
        p.write_text("old")
    (root / "claims.toml").write_text(good.replace('"absorb"', '"oracle"') + 'direction="lower"\n')
    with pytest.raises(ValueError, match="no published run of oracle"):
        write_evidence_index(root)
    assert all(p.read_text() == "old" for p in paths)


# --------------------------------------------------------------------------------- replication
def test_made_on_reads_seed_sets_and_refuses_anything_else(tmp_path):
    body = '[[claim]]\ntext="x"\na="absorb"\nb="none"\nmetric="deployed.hack"\ndirection="lower"\n'
    path = tmp_path / "claims.toml"
    path.write_text('made_on = "0-2, 7"\n' + body + body + "made_on = [0, 1]\n")
    first, second = load_claims(path)
    assert first["made_on"] == {0, 1, 2, 7} and second["made_on"] == {0, 1}
    path.write_text(body)
    assert load_claims(path)[0]["made_on"] is None
    for bad in ('"4-0"', '"a-b"', '""', "[-1]", "[]", "3"):
        path.write_text(f"made_on = {bad}\n" + body)
        with pytest.raises(ValueError, match="made_on: .* is not a seed set; write it like"):
            load_claims(path)
    path.write_text('made_on = { "AVX512 6185c1" = "0-4", "DEFAULT 481e8f" = [1] }\n' + body)
    assert load_claims(path)[0]["made_on"] == {
        "AVX512 6185c1": {0, 1, 2, 3, 4},
        "DEFAULT 481e8f": {1},
    }
    for bad, match in (
        ("{}", "an empty table"),
        ('{ "AVX512 6185c1" = "x" }', "6185c1: 'x' is not"),
    ):
        path.write_text(f"made_on = {bad}\n" + body)
        with pytest.raises(ValueError, match=match):
            load_claims(path)
    path.write_text('made_from = "0-4"\n' + body)
    with pytest.raises(ValueError, match="unknown top-level keys \\['made_from'\\]"):
        load_claims(path)


def test_replication_tests_each_claim_on_the_seeds_it_was_not_made_on():
    # seeds 0-4 (made on): a strong effect for every arm; seeds 5-9 (fresh): strong for absorb,
    # weak for oracle, the other way (not significantly) for plain; routeA has no fresh seed, and
    # a claim made on 0-9 none.
    made, fresh = range(5), range(5, 10)
    runs = [rec("none", s, 0.5) for s in range(10)]
    for name, later in (
        ("absorb", [-0.30, -0.31, -0.29, -0.30, -0.32]),
        ("oracle", [-0.05, -0.01, -0.04, 0.00, -0.03]),
        ("plain", [0.02, -0.01, 0.03, 0.04, -0.02]),
    ):
        runs += [rec(name, s, 0.2 + 0.01 * s) for s in made]
        runs += [rec(name, s, 0.5 + d) for s, d in zip(fresh, later, strict=True)]
    runs += [rec("routeA", s, 0.1) for s in made]
    # equal means summed in another order: a difference of ~1e-17, neither sign
    runs += [rec("gt_screen", s, 0.4) for s in made]
    zero_sum = (0.1, 0.2, -0.3, 0.0, 0.0)
    runs += [rec("gt_screen", s, 0.5 + d) for s, d in zip(fresh, zero_sum, strict=True)]
    claims = [claim(a, "none") for a in ("absorb", "oracle", "plain", "routeA")]
    claims += [claim("absorb", "none", text="restated"), claim("absorb", "none", "tie")]
    for c in claims:
        c["made_on"] = frozenset(made)
    claims[4]["made_on"] = frozenset(range(10))
    claims.append(claim("gt_screen", "none", made_on=frozenset(made)))
    res = evaluate_claims(claims, runs)
    assert res[6]["replication"]["verdict"] == "**no difference** (mean 0)"
    reps = [r["replication"] for r in res]
    assert reps[3] is None and reps[4] is None  # no fresh pair
    absorb, oracle, plain, tie = reps[0], reps[1], reps[2], reps[5]
    assert absorb["n"] == 5 and absorb["draws"] == {"AVX512 6185c1": ("5-9", pytest.approx(-0.304))}
    assert oracle["mean"] == pytest.approx(-0.026) and plain["mean"] == pytest.approx(0.012)
    # the pooled test still counts every seed
    assert res[0]["n"] == 10 and res[0]["verdict"] == "**holds** after correction"
    # Holm over the 4 directional claims re-tested, not over all 6 directional ones
    p = [absorb["p"], oracle["p"], plain["p"]]
    assert p[0] < 1e-4 and 0.025 < p[1] < 0.05 < p[2]  # weak but significant alone
    assert [absorb["p_holm"], oracle["p_holm"], plain["p_holm"]] == pytest.approx(
        [4 * p[0], 3 * p[1], 2 * p[2]], rel=1e-9, abs=0
    )
    assert absorb["verdict"] == "**replicated**, after correction"
    assert oracle["verdict"] == "replicated alone (p < 0.05), not after correction for 4"
    assert plain["verdict"] == "**opposite sign**"
    assert tie["verdict"] == "**a difference**: the interval excludes 0"


def test_made_on_per_draw_leaves_another_draws_same_seeds_fresh():
    """A claim read from seeds 0-4 of one draw: the same seeds of a draw run later are fresh
    pairs; a seed set (every draw) would count them as made on."""
    runs = [rec("none", s, 0.5, draw=d) for s in range(10) for d in (AVX, PORT)]
    runs += [rec("absorb", s, 0.2 + 0.01 * (s % 3), draw=d) for s in range(10) for d in (AVX, PORT)]
    per_draw, every = claim("absorb", "none"), claim("absorb", "none")
    per_draw["made_on"] = {"AVX512 6185c1": frozenset(range(5))}
    every["made_on"] = frozenset(range(5))
    a, b = (r["replication"] for r in evaluate_claims([per_draw, every], runs))
    assert a["n"] == 15 and set(a["draws"]) == {"AVX512 6185c1", "DEFAULT 481e8f"}
    assert a["draws"]["DEFAULT 481e8f"][0] == "0-9" and a["draws"]["AVX512 6185c1"][0] == "5-9"
    assert b["n"] == 10 and b["draws"]["DEFAULT 481e8f"][0] == "5-9"
    per_draw["made_on"] = {"AVX2 9f167d": frozenset(range(5))}  # a draw none of its pairs is on
    with pytest.raises(ValueError, match=r"made_on names draw\(s\) \['AVX2 9f167d'\] that none"):
        evaluate_claims([per_draw], runs)


def test_claims_md_has_a_replication_section_only_when_claims_name_their_seeds(tmp_path):
    root = tmp_path / "docs" / "evidence"
    (tmp_path / "sweeps").mkdir()
    write_published(root, [rec("none", s, 0.5) for s in range(8)]
                    + [rec("absorb", s, 0.2 + 0.01 * (s % 3)) for s in range(8)]
                    + [rec("oracle", s, 0.3 + 0.01 * (s % 2)) for s in range(3)])  # fmt: skip
    body = '[[claim]]\ntext="absorb wins"\na="absorb"\nb="none"\nmetric="deployed.hack"\n'
    body += 'direction="lower"\n'
    other = body.replace("absorb wins", "oracle wins").replace('a="absorb"', 'a="oracle"')
    (root / "claims.toml").write_text(body + other)
    write_evidence_index(root)
    assert "## Replication" not in (root / "CLAIMS.md").read_text()
    assert claims_summaries((root / "CLAIMS.md").read_text()) == [
        "2 of 2 directional claims hold after correction."
    ]
    (root / "claims.toml").write_text('made_on = "0-4"\n' + body + other)
    write_evidence_index(root)
    text = (root / "CLAIMS.md").read_text()
    assert "**Of 1 directional claims re-tested, 1 keep their sign on fresh seeds, 1 with p" in text
    assert "| 1 | absorb wins | 0-4 | 3 (AVX512 6185c1 seeds 5-7: -0.290) |" in text
    assert "1 of the 1 claims re-tested have 5 fresh pairs or fewer" in text
    assert "Not re-tested (no fresh pair of seeds): 2." in text
    pooled, replication = claims_summaries(text)
    assert pooled.startswith("2 of 2 directional claims hold") and replication.startswith("Of 1 ")
    (root / "claims.toml").write_text('made_on = "0-1"\n' + body)
    write_evidence_index(root)
    assert (
        "Each of the 1 claims re-tested has at least 6 fresh pairs."
        in (root / "CLAIMS.md").read_text()
    )
    (root / "claims.toml").write_text('made_on = "0-7"\n' + body)
    write_evidence_index(root)
    assert "No claim has a fresh pair of seeds yet." in (root / "CLAIMS.md").read_text()
