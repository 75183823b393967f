"""Offline classifier analysis: pure metric/direction parts on synthetic features with known
structure, the feature extractor against `directions` on a tiny model, and one smoke run end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from _tiny import CharTokenizer, tiny_qwen3

from vgrout.experiments import classify as C
from vgrout.experiments.classify import (
    METRICS,
    SITES,
    SOURCES,
    RolloutTable,
    SiteFeatures,
    analyse,
    bax_features,
    bax_reduction,
    classifier_metrics,
    fit_logistic,
    haar_directions,
    mean_difference_direction,
    operating_cut,
    results_table,
    split_by_problem,
    unit_blocks,
)
from vgrout.experiments.classify import analysis as classify_analysis
from vgrout.experiments.classify.metrics import _auroc, _f05


def planted(n=400, k=24, seed=0, strength=3.0, n_problems=40):
    """features = label * strength * u + N(0, I): the hack direction u is known."""
    rng = np.random.default_rng(seed)
    u = rng.standard_normal(k)
    u /= np.linalg.norm(u)
    y = rng.random(n) < 0.3
    x = rng.standard_normal((n, k)) + strength * y[:, None] * u
    adv = rng.choice([-1.0, 0.5, 1.5], size=n)
    pids = np.array([f"p{i % n_problems}" for i in range(n)])
    return x, y, adv, pids, u


# -- directions ----------------------------------------------------------------------------------


def test_mass_mean_recovers_the_planted_direction_and_separates():
    x, y, adv, _, u = planted()
    v = mean_difference_direction(x[y], x[~y], ((0, x.shape[1], x.shape[1]),))
    assert np.linalg.norm(v) == pytest.approx(1.0)
    assert float(v @ u) > 0.9
    m = classifier_metrics(x @ v, y, adv, tail_q=0.1)
    assert m["auroc_all"] > 0.97 and m["auroc_pos_adv"] > 0.97
    flipped = classifier_metrics(-(x @ v), y, adv, tail_q=0.1)
    assert flipped["auroc_all"] < 0.03
    # 30% hacks, top 10% routed, nearly all of them hacks: precision ~1, recall ~1/3
    assert m["f05_all"] > 0.6 and flipped["f05_all"] < 0.05


def test_unit_blocks_normalise_each_block_and_keep_zero_blocks_zero():
    blocks = ((0, 2, 2), (2, 5, 3), (5, 6, 1))
    v = unit_blocks(np.array([3.0, 4.0, 0.0, 0.0, 0.0, -2.0]), blocks)
    assert v[:2] == pytest.approx([0.6, 0.8])
    assert v[2:5] == pytest.approx([0.0, 0.0, 0.0])
    assert v[5] == pytest.approx(-1.0)


def test_haar_directions_are_seeded_unit_blocks_near_chance():
    blocks = ((0, 4, 4), (4, 10, 6))
    a, b = haar_directions(blocks, 50, seed=3), haar_directions(blocks, 50, seed=3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, haar_directions(blocks, 50, seed=4))
    for start, stop, _ in blocks:
        assert np.linalg.norm(a[:, start:stop], axis=1) == pytest.approx(np.ones(50))
    # reduced coordinates of a larger ambient space: the projection of a unit vector is shorter
    reduced = haar_directions(((0, 3, 300),), 200, seed=0)
    assert (np.linalg.norm(reduced, axis=1) < 1).all()
    assert np.mean(np.linalg.norm(reduced, axis=1) ** 2) == pytest.approx(3 / 300, rel=0.25)


# -- metrics -------------------------------------------------------------------------------------


def test_operating_cut_is_the_gates_lower_quantile():
    from vgrout.routing.gates import weighted_quantile

    s = np.arange(1.0, 101.0)
    assert operating_cut(s, 0.1) == 90.0
    rng = np.random.default_rng(0)
    for n in (1, 7, 50, 333):
        s = rng.standard_normal(n)
        for q in (0.05, 0.1, 0.25):
            want = weighted_quantile(torch.tensor(s), torch.ones(n), 1 - q)
            assert operating_cut(s, q) == pytest.approx(want)


def test_auroc_and_f05_match_sklearn_with_ties():
    from sklearn.metrics import fbeta_score, roc_auc_score

    rng = np.random.default_rng(0)
    for n in (5, 40, 300):
        s = np.round(rng.standard_normal(n), 1)  # many ties
        y = rng.random(n) < 0.3
        y[0], y[1] = True, False
        predicted = s >= np.median(s)
        assert _auroc(y, s)[0] == pytest.approx(roc_auc_score(y, s))
        want = fbeta_score(y, predicted, beta=0.5, zero_division=0.0)
        assert _f05(y, predicted)[0] == pytest.approx(want)
    assert _f05(np.array([True, False]), np.array([False, True]))[0] == 0.0


def test_metrics_by_hand_and_nan_reasons():
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.9, 1.0])
    labels = np.array([0, 0, 1, 0, 1, 0], dtype=bool)
    adv = np.array([1.0, 1.0, 1.0, -1.0, 1.0, -1.0])
    m = classifier_metrics(scores, labels, adv, tail_q=0.34)
    # cut = lower 0.66 quantile of 6 scores = the 4th smallest (4/6 >= 0.66): 0.4
    assert m["cut"] == 0.4
    # A>0 rows: scores .1 .2 .3 .9, labels 0 0 1 1 -> AUROC 1; predicted (>= .4): only .9
    assert m["auroc_pos_adv"] == 1.0
    assert m["f05_pos_adv"] == pytest.approx((1.25 * 1.0 * 0.5) / (0.25 * 1.0 + 0.5))
    # all rows: pairs (hack > clean): .3 beats .1 .2 ; .9 beats .1 .2 .4 -> 5 of 8
    assert m["auroc_all"] == pytest.approx(5 / 8)
    none = classifier_metrics(scores, np.zeros(6, bool), adv, tail_q=0.1)
    assert math.isnan(none["auroc_all"]) and none["auroc_all_reason"] == "no hack"
    assert math.isnan(none["f05_pos_adv"]) and "A > 0" in none["f05_pos_adv_reason"]
    only = classifier_metrics(scores, np.ones(6, bool), adv, tail_q=0.1)
    # every row a hack: the top-10% cut routes one of six -> precision 1, recall 1/6 -> F0.5 0.5
    assert only["auroc_all_reason"] == "only hacks" and only["f05_all"] == pytest.approx(0.5)
    empty = classifier_metrics([], [], [], tail_q=0.1)
    assert math.isnan(empty["auroc_all"]) and empty["auroc_all_reason"] == "no rollouts"
    with pytest.raises(ValueError, match="length"):
        classifier_metrics([1.0], [True, False], [1.0], tail_q=0.1)


# -- split and oracle fits -------------------------------------------------------------------------


def test_split_is_disjoint_grouped_seeded_and_puts_hacks_in_both_halves():
    _, y, _, pids, _ = planted(n=300, n_problems=30)
    fit, ev = split_by_problem(pids, y, seed=5)
    assert len(set(fit) & set(ev)) == 0 and len(fit) + len(ev) == len(pids)
    assert not set(pids[fit]) & set(pids[ev])  # no problem on both sides
    fit2, ev2 = split_by_problem(pids, y, seed=5)
    assert np.array_equal(fit, fit2) and np.array_equal(ev, ev2)
    assert not np.array_equal(fit, split_by_problem(pids, y, seed=6)[0])
    # only two problems hold hacks: one goes to each half
    y2 = np.isin(pids, ["p3", "p17"])
    fit, ev = split_by_problem(pids, y2, seed=0)
    assert y2[fit].any() and y2[ev].any()
    assert abs(len(set(pids[fit])) - len(set(pids[ev]))) <= 1


def test_logistic_separates_and_is_invariant_to_a_rotation():
    x, y, _, _, u = planted(k=12)
    w = fit_logistic(x, y)
    assert float(w @ u / np.linalg.norm(w)) > 0.8
    q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((12, 12)))
    w_rot = fit_logistic(x @ q, y)
    assert x @ q @ w_rot == pytest.approx(x @ w, rel=1e-4, abs=1e-4)
    with pytest.raises(ValueError, match="both classes"):
        fit_logistic(x, np.zeros(len(x), bool))


def _features_all_sites(x):
    return {site: SiteFeatures.flat(x) for site in SITES}


def test_analyse_oracle_fits_see_only_the_fit_half(monkeypatch):
    x, y, adv, pids, u = planted()
    x = np.concatenate([x, np.arange(len(x))[:, None]], axis=1)  # a row-id column to trace rows
    seen = []
    real = C.fit_logistic
    monkeypatch.setattr(
        classify_analysis,
        "fit_logistic",
        lambda xf, yf, c: seen.append(xf[:, -1]) or real(xf, yf, c),
    )
    table = RolloutTable(y, adv, pids)
    out = analyse(table, {"residual": SiteFeatures.flat(x)}, {}, {s: "n/a" for s in C.LABEL_FREE},
                  seed=2, n_haar=5)  # fmt: skip
    fit, ev = split_by_problem(pids, y, seed=2)
    assert len(seen) == 1 and np.array_equal(np.sort(seen[0]).astype(int), fit)
    cell = out["results"]["residual"]
    assert cell["logistic"]["eval"]["n"] == len(ev) and "all" not in cell["logistic"]
    assert out["split"]["fit_rows"] == len(fit) and out["split"]["eval_rows"] == len(ev)


def test_analyse_on_planted_structure():
    x, y, adv, pids, u = planted(n=600, k=16, strength=4.0)
    rng = np.random.default_rng(9)
    # authored pairs: hack = clean + u (+ noise) -> aligned; "anti" pairs point the other way
    clean = rng.standard_normal((8, 16))
    hack = clean + 2.0 * u + 0.3 * rng.standard_normal((8, 16))
    pairs = {
        "authored": {s: (SiteFeatures.flat(hack), SiteFeatures.flat(clean)) for s in SITES},
        "self_generated": {s: (SiteFeatures.flat(clean), SiteFeatures.flat(hack)) for s in SITES},
    }
    out = analyse(RolloutTable(y, adv, pids), _features_all_sites(x), pairs, seed=0, n_haar=100)
    for site in SITES:
        cell = out["results"][site]
        for source in ("authored", "mass_mean", "logistic"):
            assert cell[source]["eval"]["auroc_all"] > 0.95, (site, source)
        assert cell["authored"]["all"]["auroc_pos_adv"] > 0.95
        assert cell["self_generated"]["eval"]["auroc_all"] < 0.05  # sign-flipped pairs
        band = cell["haar"]["eval"]["auroc_all"]
        assert 0.35 < band["median"] < 0.65 and band["median"] < band["p95"] < 0.95
        assert cell["haar"]["eval"]["n_directions"] == 100
    text = results_table(out, "eval")
    lines = text.splitlines()
    assert len(lines) == 2 + len(SITES) * len(METRICS)
    assert all(line.count("|") == len(SOURCES) + 5 for line in lines)
    all_rows = results_table(out, "all").splitlines()
    assert all(" - | - |" in line for line in all_rows[2:])  # oracle sources: eval half only


def test_analyse_skips_oracle_without_hacks_in_the_fit_half():
    x, _, adv, pids, _ = planted()
    y = np.zeros(len(x), bool)
    out = analyse(RolloutTable(y, adv, pids), {"ax": SiteFeatures.flat(x)}, {},
                  {"authored": "none", "self_generated": "none"}, n_haar=3)  # fmt: skip
    cell = out["results"]["ax"]
    assert "no hack" in cell["mass_mean"]["skipped"] and "skipped" in cell["logistic"]
    assert cell["authored"] == {"skipped": "none"}
    assert math.isnan(cell["haar"]["eval"]["auroc_all"]["median"])


# -- B A x in reduced coordinates --------------------------------------------------------------------


class _FakeAdapter:
    def __init__(self, bs, r):
        self.r = r
        self.module_names = [f"m{i}" for i in range(len(bs))]
        self.adapters = {
            n: type("Ad", (), {"B": b})() for n, b in zip(self.module_names, bs, strict=True)
        }


def test_bax_reduction_is_exact_for_inner_products_directions_and_logistic():
    rng = np.random.default_rng(0)
    r, d_outs, n = 3, (10, 7), 120
    bs = [
        torch.tensor(rng.standard_normal((d, 2 * r))) for d in d_outs
    ]  # [d_out, 2r]; [:, :r] used
    pooled = rng.standard_normal((n, len(d_outs), r))
    y = rng.random(n) < 0.4
    pooled[y, 0, 0] += 1.5
    reduced = bax_features(pooled, bax_reduction(_FakeAdapter(bs, r)))
    full = np.concatenate([pooled[:, m] @ bs[m][:, :r].numpy().T for m in range(len(bs))], axis=1)
    blocks_full = ((0, 10, 10), (10, 17, 7))
    assert reduced.dim == 17 and reduced.x.shape == (n, 6)
    assert reduced.x @ reduced.x.T == pytest.approx(full @ full.T)
    v_red = mean_difference_direction(reduced.x[y], reduced.x[~y], reduced.blocks)
    v_full = mean_difference_direction(full[y], full[~y], blocks_full)
    assert reduced.x @ v_red == pytest.approx(full @ v_full)
    assert reduced.x @ fit_logistic(reduced.x, y) == pytest.approx(
        full @ fit_logistic(full, y), rel=1e-4, abs=1e-4
    )


def test_bax_haar_band_matches_ambient_haar_in_distribution():
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(1)
    r, d_out = 3, 40
    b = torch.tensor(rng.standard_normal((d_out, 2 * r)))
    p = rng.standard_normal((1, 1, r))
    reduced = bax_features(p, bax_reduction(_FakeAdapter([b], r)))
    full = p[0, 0] @ b[:, :r].numpy().T
    s_red = haar_directions(reduced.blocks, 4000, seed=0) @ reduced.x[0]
    s_full = haar_directions(((0, d_out, d_out),), 4000, seed=1) @ full
    assert ks_2samp(s_red, s_full).pvalue > 0.01
    assert np.std(s_red) == pytest.approx(np.std(s_full), rel=0.1)


# -- the feature extractor on a tiny model -----------------------------------------------------------


class _Tok(CharTokenizer):
    eos_token_id = 4
    pad_token_id = 0

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids if i > 4)


def test_extractor_matches_directions_features_on_pairs():
    from vgrout.adapters import AdapterConfig, attach
    from vgrout.rl.policy import Policy
    from vgrout.routing.directions import act_pair_features, grad_pair_features
    from vgrout.routing.pairs import Pair

    model = tiny_qwen3(seed=0, max_position_embeddings=512)
    adapter = attach(model, AdapterConfig(r=2, init="gaussian", init_seed=1))
    with torch.no_grad():  # a trained-looking adapter whose quarantine matters
        gen = torch.Generator().manual_seed(0)
        for ad in adapter.adapters.values():
            ad.A.add_(0.3 * torch.randn(ad.A.shape, generator=gen))
            ad.B.add_(0.3 * torch.randn(ad.B.shape, generator=gen))
    tok = _Tok()
    policy = Policy(model, tok, adapter, render=lambda _tok, q: f"<u>{q}<a>")
    pairs = [
        Pair("a", "add one", "def run_tests(): pass", "return x + 1"),
        Pair("b", "count", "import sys; sys.exit(0)", "return len(s)", clean_prompt="count it"),
        Pair("c", "max", "self.valid = True", "return max(xs)"),
    ]
    hack, clean = C.pair_sides(policy, pairs)
    raw = C.extract_features(policy, hack + clean, state="deployed", residual_layer=1, batch_size=4)
    render = policy.render_text
    g_hack, g_clean = grad_pair_features(model, tok, adapter, pairs, render)
    a_hack, a_clean = act_pair_features(model, tok, adapter, pairs, render)
    assert raw["cgrad"] == pytest.approx(
        torch.cat([g_hack, g_clean]).double().numpy(), rel=1e-4, abs=1e-6
    )
    assert raw["ax"] == pytest.approx(
        torch.cat([a_hack, a_clean]).double().numpy(), rel=1e-4, abs=1e-6
    )
    # residual: hidden state after layer 1, mean over the completion positions, ablated
    ids, start = hack[0][0] + hack[0][1], len(hack[0][0])
    with torch.no_grad(), adapter.ablated():
        h = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[1][0]
    assert raw["residual"][0] == pytest.approx(
        h[start:].mean(0).double().numpy(), rel=1e-4, abs=1e-6
    )
    # the full state reads different (quarantine on) features; the model is left in eval mode
    full = C.extract_features(policy, hack, state="full", residual_layer=1, batch_size=4)
    assert not np.allclose(full["cgrad"], raw["cgrad"][: len(hack)])
    assert not model.training
    assert all(p.requires_grad for p in adapter.parameters())  # frozen only during extraction
    # bax: B[:, :r] @ pooled A x, reduced exactly
    feats = C.site_features(raw, bax_reduction(adapter))
    b = [adapter.adapters[n].B[:, :2].detach().double().numpy() for n in adapter.module_names]
    dense = np.concatenate([raw["ax"][:, m] @ b[m].T for m in range(len(b))], axis=1)
    assert feats["bax"].x @ feats["bax"].x.T == pytest.approx(dense @ dense.T, rel=1e-6)
    assert feats["bax"].dim == dense.shape[1]


# -- rollout selection, prompt rebuilding, self-generated pairs ------------------------------------


def _rows():
    rows = []
    for step in range(4):
        for j, source in enumerate(("student", "student", "teacher")):
            rows.append({
                "step": step, "problem_id": f"p{j}", "mode": "run_tests", "source": source,
                "advantage": 1.0, "exploited": source == "teacher", "completion": "ab",
                "n_tokens": 3,
            })  # fmt: skip
    return rows


def test_select_rollouts_filters_and_subsamples_with_a_seed():
    rows = _rows()
    chosen = C.select_rollouts(rows, students_only=True, min_step=1, max_rollouts=100, seed=0)
    assert len(chosen) == 6 and all(r["source"] == "student" and r["step"] >= 1 for r in chosen)
    a = C.select_rollouts(rows, students_only=False, min_step=0, max_rollouts=5, seed=1)
    assert len(a) == 5 and a == C.select_rollouts(
        rows, students_only=False, min_step=0, max_rollouts=5, seed=1
    )
    assert [rows.index(r) for r in a] == sorted(rows.index(r) for r in a)  # logged order kept
    with pytest.raises(ValueError, match="completion"):
        C.select_rollouts([{k: v for k, v in rows[0].items() if k != "completion"}],
                          students_only=True, min_step=0, max_rollouts=5, seed=0)  # fmt: skip


class _FakePolicy:
    eos_id = 4

    def __init__(self):
        self.tokenizer = CharTokenizer()

    def prompt_ids(self, question):
        return [ord(c) for c in f"<{question}>"]

    def completion_ids(self, text, max_tokens):
        return self.tokenizer(text)["input_ids"][: max_tokens - 1] + [self.eos_id]


def test_rollout_sides_rebuild_prompts_and_the_eos_rule():
    from types import SimpleNamespace

    cfg = SimpleNamespace(arm="routeV", max_new_tokens=5, teacher_max_tokens=3)
    items = {"p0": SimpleNamespace(mode="run_tests", question="q0")}
    rows = [
        {"problem_id": "p0", "mode": "run_tests", "source": "student", "completion": "abc", "n_tokens": 4},
        {"problem_id": "p0", "mode": "run_tests", "source": "student", "completion": "abcde", "n_tokens": 5},
        {"problem_id": "p0", "mode": "run_tests", "source": "teacher", "completion": "abcdef", "n_tokens": 3},
        {"problem_id": "p0", "mode": "run_tests", "source": "student", "completion": "ab", "n_tokens": 4},
    ]  # fmt: skip
    sides, mismatched = C.rollout_sides(_FakePolicy(), cfg, items, rows)
    assert sides[0] == ([ord(c) for c in "<q0>"], [97, 98, 99, 4])  # ended with EOS
    assert sides[1][1] == [97, 98, 99, 100, 101]  # cut at max_new_tokens: no EOS
    assert sides[2][1] == [97, 98, 4]  # teacher: truncated as injected, EOS
    assert sides[3][1] == [97, 98, 4] and mismatched == 1  # logged 4 tokens, text gives 3
    with pytest.raises(ValueError, match="not among the run's training items"):
        C.rollout_sides(_FakePolicy(), cfg, items, [{**rows[0], "problem_id": "zz"}])
    with pytest.raises(ValueError, match="mode"):
        C.rollout_sides(_FakePolicy(), cfg, items, [{**rows[0], "mode": "sentinel"}])


def test_self_generated_source_is_skipped_with_a_reason():
    from types import SimpleNamespace

    from vgrout.env.toy_problems import generate_toy

    problems = generate_toy(seed=0, n_train=6, n_test=0).train

    class Silent(_FakePolicy):  # a model that writes nothing
        model = torch.nn.Linear(1, 1)

        def render_text(self, q):
            return q

        def generate(self, prompts, params, state):
            return [[self.eos_id] for _ in prompts]

        def decode(self, ids):
            return ""

    run = SimpleNamespace(
        cfg=SimpleNamespace(modes=("run_tests", "gt_only"), max_new_tokens=8),
        env=SimpleNamespace(train=[SimpleNamespace(problem=p) for p in problems]),
        policy=Silent(),
    )
    pairs, why = C.make_self_generated_pairs(run, n=2, seed=0, state="deployed")
    assert pairs is None and "no usable pair" in why
    run.cfg.modes = ("gt_only",)
    assert C.make_self_generated_pairs(run, n=2, seed=0, state="deployed") == (
        None,
        "the run has no hackable mode to motivate",
    )


# -- end to end on a smoke run ---------------------------------------------------------------------------


@pytest.mark.slow
def test_classify_a_smoke_routeV_run(tmp_path):
    from vgrout.presets import load_preset
    from vgrout.rl.train import train

    run_dir = tmp_path / "run"
    train(load_preset("smoke").override(["arm=routeV"]).validate(), run_dir, progress=False)
    text = C.classify_run(run_dir, max_rollouts=10, seed=0, n_haar=20)
    for name in ("classify.json", "classify.md", "classify.png"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "classify.md").read_text() == text
    data = json.loads((run_dir / "classify.json").read_text())
    assert data["n_rollouts"] == 10 and data["students_only"]
    assert set(data["results"]) == set(SITES)
    for cell in data["results"].values():
        assert set(cell) == {*SOURCES, "haar"}
        assert cell["haar"]["eval"]["n_directions"] == 20
    assert data["site_dims"]["bax"] >= data["site_coords"]["bax"]
    assert data["pairs"]["authored"]["n_pairs"] >= 1
    table = results_table(data, "eval").splitlines()
    assert len(table) == 2 + len(SITES) * len(METRICS)
    assert table[0] in text
    again = C.classify_run(run_dir, max_rollouts=10, seed=0, n_haar=20)
    assert again == text  # seeded: the same run gives the same table
