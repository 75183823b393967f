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


def claim(a, b, direction="lower", metric="deployed.hack", text=None):
    return {
        "text": text or f"{a} vs {b}",
        "a": parse_configuration(a),
        "b": parse_configuration(b),
        "metric": metric,
        "direction": direction,
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
