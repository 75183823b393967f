"""Sweep aggregation on fixed inputs: means, bootstrap intervals, paired contrasts, placebo band."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from vgrout.experiments.aggregate import (
    aggregate,
    bootstrap_ci,
    holm_adjust,
    load_runs,
    metric_value,
    paired_difference,
    paired_t_pvalue,
    placebo_band,
    significance_sentences,
)


def run(arm, seed, hack, solve, as_hack=None, as_solve=None, **fields):
    summary = {
        "deployed": {"hack": hack, "solve": solve, "n": 10},
        "as_trained": {
            "hack": hack if as_hack is None else as_hack,
            "solve": solve if as_solve is None else as_solve,
            "n": 10,
        },
    }
    return {"arm": arm, "seed": seed, "fields": dict(fields), "summary": summary}


# 3 seeds x 2 arms, numbers chosen by hand:
#   none   deployed hack 0.5 0.6 0.7  (mean 0.6)   solve 0.40 0.50 0.60 (mean 0.5)
#   routeV deployed hack 0.1 0.3 0.2  (mean 0.2)   solve 0.45 0.45 0.55 (mean 0.483)
#   routeV - none per seed: hack -0.4 -0.3 -0.5 (mean -0.4); solve +0.05 -0.05 -0.05
NONE = [
    run("none", s, h, v)
    for s, h, v in zip((0, 1, 2), (0.5, 0.6, 0.7), (0.4, 0.5, 0.6), strict=True)
]
ROUTE = [
    run("routeV", s, h, v, as_hack=0.9)
    for s, h, v in zip((0, 1, 2), (0.1, 0.3, 0.2), (0.45, 0.45, 0.55), strict=True)
]


def by_name(items, name):
    return next(x for x in items if x["name"] == name)


def test_bootstrap_of_two_values_is_their_range():
    # Means of 2-value resamples are 0, 0.5, 1 with probability 1/4, 1/2, 1/4: the 2.5% and 97.5%
    # quantiles are exactly 0 and 1.
    assert bootstrap_ci([0.0, 1.0], n_resamples=10_000, seed=0) == (0.0, 1.0)


def test_bootstrap_of_three_values_matches_enumeration():
    # With 3 values each of the 27 resamples has probability 1/27 > 2.5%, so the exact percentile
    # interval is [smallest resample mean, largest] = [min, max] of the values.
    values = [0.2, 0.5, 0.9]
    means = sorted(np.mean(c) for c in itertools.product(values, repeat=3))
    assert bootstrap_ci(values, n_resamples=10_000, seed=3) == pytest.approx((means[0], means[-1]))


def test_bootstrap_is_seeded_and_shrinks_to_a_point():
    values = [0.1, 0.4, 0.35, 0.8, 0.2]
    assert bootstrap_ci(values, seed=7) == bootstrap_ci(values, seed=7)
    lo, hi = bootstrap_ci(values, seed=7)
    assert lo < np.mean(values) < hi
    assert bootstrap_ci([0.3, 0.3, 0.3]) == pytest.approx((0.3, 0.3))
    assert all(np.isnan(bootstrap_ci([])))


def test_metric_value_reads_the_summary_and_marks_missing_as_nan():
    assert metric_value(NONE[0]["summary"], "deployed.hack") == 0.5
    assert np.isnan(metric_value({"deployed": {}}, "deployed.hack"))


def test_group_means_are_exact_and_intervals_bracket_them():
    agg = aggregate(NONE + ROUTE, n_resamples=2_000)
    none = by_name(agg["groups"], "arm=none")["metrics"]
    route = by_name(agg["groups"], "arm=routeV")["metrics"]
    assert none["deployed.hack"]["mean"] == pytest.approx(0.6)
    assert route["deployed.hack"]["mean"] == pytest.approx(0.2)
    assert route["deployed.solve"]["mean"] == pytest.approx((0.45 + 0.45 + 0.55) / 3)
    assert route["as_trained.hack"]["mean"] == pytest.approx(0.9)
    for m in ("deployed.hack", "deployed.solve"):
        s = route[m]
        assert s["lo"] <= s["mean"] <= s["hi"]
        assert s["n"] == 3
    # three values: the interval is their range (see the enumeration test)
    assert (none["deployed.hack"]["lo"], none["deployed.hack"]["hi"]) == pytest.approx((0.5, 0.7))
    # every seed agrees: the interval is a point
    assert route["as_trained.hack"]["lo"] == pytest.approx(0.9)
    assert route["as_trained.hack"]["hi"] == pytest.approx(0.9)


def test_paired_difference_is_computed_per_seed():
    agg = aggregate(NONE + ROUTE, n_resamples=2_000)
    (c,) = agg["vs_none"]
    assert c["a"] == "arm=routeV" and c["b"] == "arm=none"
    hack = c["metrics"]["deployed.hack"]
    assert [p["value"] for p in hack["per_seed"]] == pytest.approx([-0.4, -0.3, -0.5])
    assert hack["mean"] == pytest.approx(-0.4)
    assert (hack["lo"], hack["hi"]) == pytest.approx((-0.5, -0.3))
    assert hack["significant"] is True
    solve = c["metrics"]["deployed.solve"]
    assert [p["value"] for p in solve["per_seed"]] == pytest.approx([0.05, -0.05, -0.05])
    assert solve["significant"] is False  # the interval [-0.05, 0.05] includes 0


def test_too_few_paired_seeds_are_not_tested():
    d = paired_difference(
        ROUTE[:2], NONE, "deployed.hack", n_resamples=500, seed=0, level=0.95, min_seeds=3
    )
    assert d["n"] == 2 and d["unpaired_seeds"] == [2]
    assert d["significant"] is None
    assert d["mean"] == pytest.approx(-0.35)


def test_placebo_runs_pair_by_seed_and_form_a_band():
    # two Haar seeds per training seed: the per-seed placebo value is their mean
    placebo = [
        run("routeV_placebo", s, h, 0.5, placebo_seed=p)
        for (s, p), h in zip(
            [(0, 10), (0, 11), (1, 10), (1, 11), (2, 10), (2, 11)],
            (0.3, 0.5, 0.4, 0.6, 0.35, 0.45),
            strict=True,
        )
    ]
    routes = [dict(r, fields={"placebo_seed": -1}) for r in ROUTE]
    nones = [dict(r, fields={"placebo_seed": -1}) for r in NONE]
    agg = aggregate(nones + routes + placebo, n_resamples=2_000)
    assert agg["group_by"] == ["arm"]  # placebo_seed is a replication axis, not a group
    (rp,) = agg["real_vs_placebo"]
    assert rp["a"] == "arm=routeV" and rp["b"] == "arm=routeV_placebo"
    hack = rp["metrics"]["deployed.hack"]
    # placebo per seed: 0.4, 0.5, 0.4 ; routeV 0.1, 0.3, 0.2
    assert [p["value"] for p in hack["per_seed"]] == pytest.approx([-0.3, -0.2, -0.2])
    assert hack["significant"] is True
    (band,) = agg["placebo_band"]
    b = band["metrics"]["deployed.hack"]
    assert b["n"] == 6
    assert (b["min"], b["median"], b["max"]) == pytest.approx((0.3, 0.425, 0.6))
    assert b["real_mean"] == pytest.approx(0.2)
    assert b["placebo_at_or_below_real"] == 0
    assert placebo_band(placebo, [], "deployed.hack")["placebo_at_or_below_real"] is None


def test_grouping_by_a_grid_field_pairs_within_it():
    runs = [
        run(arm, s, hack + (0.1 if init == "scorda" else 0.0), 0.5, init=init)
        for arm, hack in (("none", 0.6), ("routeV", 0.2))
        for init in ("gaussian", "scorda")
        for s in (0, 1, 2)
    ]
    agg = aggregate(runs, n_resamples=1_000)
    names = sorted(g["name"] for g in agg["groups"])
    assert names == [
        "arm=none,init=gaussian", "arm=none,init=scorda",
        "arm=routeV,init=gaussian", "arm=routeV,init=scorda",
    ]  # fmt: skip
    pairs = sorted((c["a"], c["b"]) for c in agg["vs_none"])
    assert pairs == [
        ("arm=routeV,init=gaussian", "arm=none,init=gaussian"),
        ("arm=routeV,init=scorda", "arm=none,init=scorda"),
    ]
    pooled = aggregate(runs, group_by=[], n_resamples=1_000)
    assert by_name(pooled["groups"], "arm=none")["metrics"]["deployed.hack"][
        "mean"
    ] == pytest.approx(0.65)


def test_significance_sentences_say_which_contrasts_hold():
    placebo = [run("routeV_placebo", s, 0.45, 0.5) for s in (0, 1, 2)]
    agg = aggregate(NONE + ROUTE + placebo, n_resamples=2_000)
    lines = significance_sentences(agg)
    hack = next(x for x in lines if x.startswith("routeV vs none") and "deployed hack" in x)
    assert "-0.400" in hack and "significant, the interval excludes 0" in hack
    solve = next(x for x in lines if x.startswith("routeV vs none") and "deployed solve" in x)
    assert "not significant, the interval includes 0" in solve
    assert any(x.startswith("routeV vs routeV_placebo") for x in lines)
    band = next(x for x in lines if "placebo runs" in x or "placebo run" in x)
    assert "below every placebo run" in band
    few = significance_sentences(aggregate(NONE[:2] + ROUTE[:2], n_resamples=500))
    assert all("not tested, 2 seeds paired, need at least 3" in x for x in few)


def test_paired_t_pvalue_matches_the_t_distribution_by_hand():
    # diffs 1, 2, 3: t = 2 / (1 / sqrt 3) = 2 sqrt 3 with 2 degrees of freedom, whose two-sided
    # tail is 1 - t / sqrt(t^2 + 2) in closed form.
    t = 2 * np.sqrt(3)
    assert paired_t_pvalue([1.0, 2.0, 3.0]) == pytest.approx(1 - t / np.sqrt(t**2 + 2))
    assert paired_t_pvalue([-1.0, -2.0, -3.0]) == pytest.approx(paired_t_pvalue([1.0, 2.0, 3.0]))
    assert paired_t_pvalue([0.0, 0.0, 0.0]) == 1.0  # nothing changed
    # a constant shift: no spread for t, so the exact sign-flip p of 3 seeds on one side, 1/4
    assert paired_t_pvalue([0.1, 0.1, 0.1]) == 0.25
    assert np.isnan(paired_t_pvalue([0.3]))  # one value has no spread to test against


def test_holm_adjust_steps_down_and_stays_monotone():
    # sorted: 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> raised to 0.06
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjust([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm_adjust([]) == []


def test_holm_correction_spans_every_contrast_tested_on_a_metric():
    """routeV - none is significant alone (p = 0.020), but the report also tests two arms that
    change nothing, so Holm multiplies its p by 3 and it no longer holds; a declared contrast
    repeating an automatic one is counted once; an untested contrast is left out of the family."""
    noise = (0.1, -0.1, 0.0)
    flat = [
        run(arm, s, 0.6 + 0.1 * s + d, 0.5)
        for arm in ("absorb", "oracle")
        for s, d in zip((0, 1, 2), noise, strict=True)
    ]
    few = [run("plain", s, 0.9, 0.1) for s in (0, 1)]  # 2 seeds: not tested
    declared = [{"a": {"arm": "routeV", "fields": {}}, "b": {"arm": "none", "fields": {}}}]
    alone = aggregate(NONE + ROUTE, n_resamples=500)
    (c,) = alone["vs_none"]
    t = 4 * np.sqrt(3)  # -0.4 / (0.1 / sqrt 3)
    hack = c["metrics"]["deployed.hack"]
    assert hack["p"] == pytest.approx(1 - t / np.sqrt(t**2 + 2))
    assert hack["holm_family"] == 1 and hack["significant_holm"] is True
    agg = aggregate(NONE + ROUTE + flat + few, n_resamples=500, declared=declared)
    hack = by_name(agg["vs_none"], "arm=routeV - arm=none")["metrics"]["deployed.hack"]
    assert hack["significant"] is True  # the bootstrap interval still excludes 0
    assert hack["holm_family"] == 3  # routeV, absorb, oracle vs none; declared = automatic
    assert hack["p_holm"] == pytest.approx(3 * hack["p"])
    assert hack["significant_holm"] is False
    (d,) = agg["declared"]
    assert d["metrics"]["deployed.hack"]["p_holm"] == hack["p_holm"]
    untested = by_name(agg["vs_none"], "arm=plain - arm=none")["metrics"]["deployed.hack"]
    assert untested["significant"] is None and untested["p_holm"] is None
    line = next(
        x
        for x in significance_sentences(agg)
        if x.startswith("routeV vs none (paired") and "deployed hack" in x
    )
    assert "Holm-adjusted over 3 contrasts" in line and "does not hold after correction" in line


def test_load_runs_reads_finished_cells_of_a_sweep(tmp_path):
    cells = []
    for arm, seed in (("none", 0), ("routeV", 0)):
        folder = f"arm={arm},seed={seed}_0000"
        cfg = {"arm": arm, "seed": seed, "init": "gaussian", "placebo_seed": -1}
        cells.append({"name": f"arm={arm},seed={seed}", "folder": folder, "arm": arm,
                      "fields": {"arm": arm, "seed": seed}, "config": cfg})  # fmt: skip
    (tmp_path / "sweep.json").write_text(json.dumps({"cells": cells}))
    d = tmp_path / "runs" / cells[0]["folder"]
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps(NONE[0]["summary"]))
    runs, missing = load_runs(tmp_path)
    assert missing == ["arm=routeV,seed=0"]
    assert len(runs) == 1 and runs[0]["arm"] == "none" and runs[0]["fields"] == {"seed": 0}
    with pytest.raises(FileNotFoundError, match="no sweep.json"):
        load_runs(tmp_path / "elsewhere")


def test_every_arm_is_contrasted_with_both_vanilla_controls():
    plain = [run("plain", s, h, 0.5) for s, h in zip((0, 1, 2), (0.9, 0.8, 0.7), strict=True)]
    agg = aggregate(NONE + ROUTE + plain, n_resamples=500)
    assert sorted(c["name"] for c in agg["vs_none"]) == [
        "arm=plain - arm=none",
        "arm=routeV - arm=none",
    ]
    # the two controls are contrasted once (plain - none), not again as none - plain
    assert sorted(c["name"] for c in agg["vs_plain"]) == ["arm=routeV - arm=plain"]
    d = by_name(agg["vs_plain"], "arm=routeV - arm=plain")["metrics"]["deployed.hack"]
    assert d["mean"] == pytest.approx(np.mean([0.1 - 0.9, 0.3 - 0.8, 0.2 - 0.7]))
    assert any(s.startswith("routeV vs plain (paired by seed") for s in significance_sentences(agg))


def test_ablation_contrasts_change_one_field_against_its_default():
    """absorb [gdf=0] - absorb [gdf=0.25] and absorb [init=scorda] - absorb [init=gaussian]; never
    a contrast between two non-default groups, nor one that changes two fields at once."""
    rows = []
    for s in (0, 1, 2):
        rows += [
            run("absorb", s, 0.10, 0.5, gen_deploy_frac=0.25, init="gaussian"),
            run("absorb", s, 0.30 + 0.01 * s, 0.5, gen_deploy_frac=0.0, init="gaussian"),
            run("absorb", s, 0.05, 0.5, gen_deploy_frac=0.25, init="scorda"),
            run("absorb", s, 0.20, 0.5, gen_deploy_frac=0.25, init="scorda_rev"),
            run("absorb", s, 0.50, 0.5, gen_deploy_frac=0.0, init="scorda"),
        ]
    defaults = {"gen_deploy_frac": 0.25, "init": "gaussian", "arm": "none"}
    agg = aggregate(rows, n_resamples=500, defaults=defaults)
    names = sorted((c["field"], c["name"]) for c in agg["ablations"])
    base = "arm=absorb,gen_deploy_frac=0.25,init=gaussian"
    assert names == [
        ("gen_deploy_frac", f"arm=absorb,gen_deploy_frac=0.0,init=gaussian - {base}"),
        ("init", f"arm=absorb,gen_deploy_frac=0.25,init=scorda - {base}"),
        ("init", f"arm=absorb,gen_deploy_frac=0.25,init=scorda_rev - {base}"),
    ]
    gdf = next(c for c in agg["ablations"] if c["field"] == "gen_deploy_frac")
    assert gdf["metrics"]["deployed.hack"]["mean"] == pytest.approx(0.21)
    assert gdf["metrics"]["deployed.hack"]["significant"] is True
    # without defaults there is no way to tell which side is the reference: no ablations
    assert aggregate(rows, n_resamples=100)["ablations"] == []


def test_automatic_contrasts_need_a_seed_in_common():
    """Groups on seeds 5-7 against a control, placebo or default on seeds 0-2 share no seed: no
    automatic contrast is listed for them (it would be an n = 0 row of n/a), while pairs with seeds
    in common still are; a contrast declared by name is listed even with n = 0."""

    def arm(name, seeds, hack, tail=0.1):
        return [run(name, s, hack + 0.01 * s, 0.5, band_tail_q=tail) for s in seeds]

    rows = arm("none", (0, 1, 2), 0.5) + arm("routeV_placebo", (0, 1, 2), 0.3)
    rows += arm("routeV", (5, 6, 7), 0.2) + arm("routeV", (5, 6, 7), 0.1, tail=0.45)
    rows += arm("routeV_placebo", (5, 6, 7), 0.4, tail=0.45)
    declared = [{"a": {"arm": "routeV", "fields": {"band_tail_q": 0.1}},
                 "b": {"arm": "none", "fields": {"band_tail_q": 0.1}}, "why": "asked for"}]  # fmt: skip
    agg = aggregate(rows, n_resamples=200, defaults={"band_tail_q": 0.1}, declared=declared)
    listed = {k: [c["name"] for c in agg[k]] for k in ("vs_none", "ablations", "real_vs_placebo")}
    v, p = "arm=routeV,band_tail_q=", "arm=routeV_placebo,band_tail_q="
    assert listed == {
        "vs_none": [f"{p}0.1 - arm=none,band_tail_q=0.1"],  # routeV (5-7) - none (0-2): left out
        "ablations": [f"{v}0.45 - {v}0.1"],  # the placebo's 0.45 (5-7) - 0.1 (0-2): left out
        "real_vs_placebo": [f"{v}0.45 - {p}0.45"],  # at 0.1: routeV 5-7, placebo 0-2
    }
    (c,) = agg["declared"]
    assert c["metrics"]["deployed.hack"]["n"] == 0


def test_declared_contrast_pairs_two_groups_that_differ_in_several_fields():
    """plain [rank=2] - none [rank=4]: two fields differ, so no automatic contrast exists; the
    declared one pairs the groups by seed and is listed (and worded) first."""
    rows = []
    for s in (0, 1, 2):
        rows += [
            run("none", s, 0.20 + 0.1 * s, 0.5, rank=4),
            run("none", s, 0.50, 0.5, rank=8),
            run("plain", s, 0.25 + 0.1 * s + 0.01 * s, 0.4, rank=2),
            run("plain", s, 0.60, 0.3, rank=4),
        ]
    declared = [
        {"a": {"arm": "plain", "fields": {"rank": 2, "lr": 1.0}},
         "b": {"arm": "none", "fields": {"rank": 4, "lr": 1.0}}, "why": "4 trained slots"},
        {"a": {"arm": "plain", "fields": {"rank": 3}},  # no such group: left out
         "b": {"arm": "none", "fields": {"rank": 4}}, "why": "absent"},
    ]  # fmt: skip
    agg = aggregate(rows, n_resamples=500, defaults={"rank": 4, "arm": "none"}, declared=declared)
    (c,) = agg["declared"]
    assert c["name"] == "arm=plain,rank=2 - arm=none,rank=4"
    assert c["why"] == "4 trained slots"
    hack = c["metrics"]["deployed.hack"]
    assert [d["value"] for d in hack["per_seed"]] == pytest.approx([0.05, 0.06, 0.07])
    assert hack["mean"] == pytest.approx(0.06) and hack["significant"] is True
    assert c["metrics"]["deployed.solve"]["mean"] == pytest.approx(-0.1)
    sentences = significance_sentences(agg)
    assert sentences[0].startswith("plain [rank=2] vs none (declared in the sweep spec")
    assert aggregate(rows, n_resamples=100)["declared"] == []
