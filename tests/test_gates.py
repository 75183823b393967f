"""Gates: arms -> (m, d) masks, band gates, the label firewall, gate metrics."""

import inspect
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vgrout.routing import gates
from vgrout.routing.gates import (
    ABSORB,
    KEEP,
    ROUT,
    PairBand,
    PairBandState,
    QuantileBand,
    QuantileBandState,
    direction_gate,
    gate_for_arm,
    gate_metrics,
    masks_from_zones,
    module_dot_score,
    oracle_gate,
    pair_band_state,
    qmass,
    quantile_band_gate,
    unit_features,
    weighted_quantile,
    zones_from_edges,
)

M, R = 3, 2


def feats_with_scores(scores) -> tuple[torch.Tensor, torch.Tensor]:
    """Features [G, M, r] whose module-dot score against the returned direction equals `scores`."""
    scores = torch.as_tensor(scores, dtype=torch.float32)
    direction = torch.zeros(M, R)
    direction[:, 0] = 1.0
    feats = torch.zeros(len(scores), M, R)
    feats[:, 0, 0] = scores
    feats[:, 1, 1] = 5.0  # orthogonal to the direction: must not move the score
    return feats, direction


def assert_d_implies_m(out):
    assert out.m is not None and out.d is not None
    assert not bool((out.d & ~out.m).any()), "a (m=0, d=1) rollout would train nothing"


# -- zones and masks --------------------------------------------------------------------------


def test_masks_from_zones_table():
    m, d = masks_from_zones(torch.tensor([KEEP, ABSORB, ROUT]))
    assert m.tolist() == [False, True, True]
    assert d.tolist() == [False, False, True]
    with pytest.raises(ValueError, match="zones must be"):
        masks_from_zones(torch.tensor([3]))


def test_zone_rule_plain_band():
    z = zones_from_edges(torch.tensor([-1.0, 0.0, 0.5, 1.0, 2.0]), lo=0.0, hi=1.0)
    assert z.tolist() == [KEEP, KEEP, ABSORB, ROUT, ROUT]


def test_equal_or_crossed_edges_absorb_the_ambiguous_scores():
    # lo == hi: the predecessor produced (m=0, d=1) here; ours absorbs
    z = zones_from_edges(torch.tensor([-1.0, 0.0, 1.0]), lo=0.0, hi=0.0)
    assert z.tolist() == [KEEP, ABSORB, ROUT]
    # crossed edges (lo > hi): scores in [hi, lo] are ambiguous
    z = zones_from_edges(torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0]), lo=1.0, hi=-1.0)
    assert z.tolist() == [KEEP, ABSORB, ABSORB, ABSORB, ROUT]


@settings(max_examples=200, deadline=None)
@given(
    scores=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=0, max_size=40),
    lo=st.floats(-1e6, 1e6, allow_nan=False),
    hi=st.floats(-1e6, 1e6, allow_nan=False),
)
def test_property_edges_never_give_m0_d1(scores, lo, hi):
    zones = zones_from_edges(torch.tensor(scores, dtype=torch.float64), lo, hi)
    m, d = masks_from_zones(zones)
    assert not bool((d & ~m).any())
    if lo < hi:  # the plain band: every score lands where the rule says
        s = torch.tensor(scores, dtype=torch.float64)
        assert torch.equal(zones == KEEP, s <= lo)
        assert torch.equal(zones == ROUT, s >= hi)


# -- scores -----------------------------------------------------------------------------------


def test_module_dot_score_sums_over_modules_and_rejects_nan():
    feats = torch.arange(12.0).reshape(2, 3, 2)
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    expected = torch.tensor([0 + 3 + 4 + 5, 6 + 9 + 10 + 11], dtype=torch.float64)
    assert torch.equal(module_dot_score(feats, v), expected)
    feats[1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        module_dot_score(feats, v)
    with pytest.raises(ValueError, match="must be"):
        module_dot_score(torch.zeros(2, 4, 2), v)


def test_unit_features_score_is_scaled_cosine_and_ignores_row_norms():
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(5, M, R, generator=gen)
    v = torch.nn.functional.normalize(torch.randn(M, R, generator=gen), dim=1)  # unit rows
    unit = unit_features(feats)
    torch.testing.assert_close(unit.reshape(5, -1).norm(dim=1), torch.ones(5))
    cos = torch.nn.functional.cosine_similarity(feats.reshape(5, -1), v.reshape(1, -1))
    torch.testing.assert_close(module_dot_score(unit, v).float(), cos * math.sqrt(M))
    scaled = feats * torch.tensor([1e-3, 1.0, 7.0, 1e3, 0.5])[:, None, None]
    assert not torch.allclose(module_dot_score(feats, v), module_dot_score(scaled, v))  # raw moves
    torch.testing.assert_close(
        module_dot_score(unit_features(scaled), v), module_dot_score(unit, v)
    )
    zero = unit_features(torch.zeros(2, M, R))
    assert torch.equal(zero, torch.zeros(2, M, R))


# -- quantile band ----------------------------------------------------------------------------


def test_weighted_quantile_unweighted_and_weighted():
    v = torch.arange(10.0)
    w = torch.ones(10)
    assert weighted_quantile(v, w, 0.1) == 0.0
    assert weighted_quantile(v, w, 0.9) == 8.0
    assert weighted_quantile(v, w, 1.0) == 9.0
    # all the weight on the last element: every quantile is that element
    w2 = torch.zeros(10)
    w2[-1] = 1.0
    assert weighted_quantile(v, w2, 0.1) == 9.0


def test_quantile_band_warmup_absorbs_and_keeps_raw_features():
    cfg = QuantileBand(tail_q=0.1, halflife=None, warmup=10)
    feats, v = feats_with_scores([0.0, 1.0, 2.0, 3.0])
    out = quantile_band_gate(feats, v, QuantileBandState(), cfg)
    assert out.zones.tolist() == [ABSORB] * 4 and out.info["warmup"]
    assert math.isnan(out.info["lo"])
    assert len(out.state) == 4 and out.state.seen == 4
    assert torch.equal(out.state.features, feats)  # raw features, not scores
    assert_d_implies_m(out)


def test_quantile_band_routes_the_tails_with_current_batch_included():
    cfg = QuantileBand(tail_q=0.1, halflife=None, warmup=10)
    feats, v = feats_with_scores(torch.arange(20.0))
    out = quantile_band_gate(feats, v, QuantileBandState(), cfg)
    assert out.info["lo"] == 1.0 and out.info["hi"] == 17.0
    zones = out.zones.tolist()
    assert zones[:2] == [KEEP, KEEP] and zones[17:] == [ROUT] * 3
    assert set(zones[2:17]) == {ABSORB}
    assert_d_implies_m(out)


def test_quantile_band_keep_tail_apart_from_the_rout_tail():
    # scores 0..19, rout tail 0.1 (17, 18, 19) in each case; the keep tail alone changes
    feats, v = feats_with_scores(torch.arange(20.0))
    wide = QuantileBand(tail_q=0.1, halflife=None, warmup=10, keep_q=0.3)
    zones = quantile_band_gate(feats, v, QuantileBandState(), wide).zones.tolist()
    assert zones[:6] == [KEEP] * 6 and set(zones[6:17]) == {ABSORB} and zones[17:] == [ROUT] * 3
    none_kept = QuantileBand(tail_q=0.1, halflife=None, warmup=10, keep_q=0.0)
    out = quantile_band_gate(feats, v, QuantileBandState(), none_kept)
    assert out.info["lo"] == -math.inf
    assert set(out.zones.tolist()[:17]) == {ABSORB} and out.zones.tolist()[17:] == [ROUT] * 3
    assert_d_implies_m(out)
    with pytest.raises(ValueError, match="keep_q must be in"):
        QuantileBand(keep_q=0.5)


def test_quantile_band_rescores_history_with_a_new_direction():
    cfg = QuantileBand(tail_q=0.25, halflife=None, warmup=1)
    feats, v = feats_with_scores(torch.arange(8.0))
    state = quantile_band_gate(feats, v, QuantileBandState(), cfg).state
    probe, _ = feats_with_scores([-3.5])
    # same direction: history scores 0..7, the probe (-3.5) is below everything -> keep
    assert quantile_band_gate(probe, v, state, cfg).zones.tolist() == [KEEP]
    # a re-extracted direction with the opposite sign re-scores the history to 0..-7 and the
    # probe to +3.5: now it tops the buffer -> rout (a stale score buffer would say keep)
    out = quantile_band_gate(probe, -v, state, cfg)
    assert out.info["hi"] <= 3.5 and out.zones.tolist() == [ROUT]


def test_quantile_band_recency_weighting_follows_the_recent_scores():
    old, v = feats_with_scores(torch.full((200,), 100.0))
    cfg_flat = QuantileBand(tail_q=0.1, halflife=None, warmup=1)
    cfg_recent = QuantileBand(tail_q=0.1, halflife=2.0, warmup=1)
    new, _ = feats_with_scores(torch.linspace(0.0, 1.0, 20))
    for cfg, expect_hi_is_old in ((cfg_flat, True), (cfg_recent, False)):
        state = quantile_band_gate(old, v, QuantileBandState(), cfg).state
        out = quantile_band_gate(new, v, state, cfg)
        assert (out.info["hi"] == 100.0) == expect_hi_is_old
    # halflife 2: the 200 old rollouts (age 20) weigh 2^-10 each (1% of the total), so the band
    # sits on the new batch and its top scores are routed
    assert (out.zones == ROUT).any() and (out.zones == KEEP).any()


def test_quantile_band_buffer_is_bounded_and_seen_counts_everything():
    cfg = QuantileBand(warmup=1, buffer_size=5)
    state = QuantileBandState()
    for k in range(4):
        feats, v = feats_with_scores(torch.arange(3.0) + k)
        state = quantile_band_gate(feats, v, state, cfg).state
    assert len(state) == 5 and state.seen == 12
    assert state.stamps.tolist() == [9, 9, 12, 12, 12]


def test_quantile_band_batch_larger_than_the_buffer():
    cfg = QuantileBand(tail_q=0.1, halflife=None, warmup=1, buffer_size=4)
    feats, v = feats_with_scores(torch.arange(10.0))
    out = quantile_band_gate(feats, v, QuantileBandState(), cfg)
    assert len(out.state) == 4 and out.zones.shape == (10,)
    assert out.info["lo"] == 6.0 and out.info["hi"] == 9.0  # edges from the kept (latest) 4
    assert (out.zones[:7] == KEEP).all() and out.zones[9] == ROUT


def test_quantile_band_constant_scores_absorb():
    cfg = QuantileBand(warmup=1)
    feats, v = feats_with_scores(torch.full((16,), 2.5))
    out = quantile_band_gate(feats, v, QuantileBandState(), cfg)
    assert out.info["lo"] == out.info["hi"] == 2.5
    assert out.zones.tolist() == [ABSORB] * 16


def test_quantile_band_all_hack_and_all_clean_batches_move_with_history():
    """An all-clean batch after a mixed history sits in the low tail; an all-hack one in the high."""
    cfg = QuantileBand(tail_q=0.1, halflife=None, warmup=1)
    hist, v = feats_with_scores(torch.randn(200, generator=torch.Generator().manual_seed(0)))
    state = quantile_band_gate(hist, v, QuantileBandState(), cfg).state
    clean, _ = feats_with_scores(torch.full((8,), -10.0))
    hack, _ = feats_with_scores(torch.full((8,), 10.0))
    assert quantile_band_gate(clean, v, state, cfg).zones.tolist() == [KEEP] * 8
    assert quantile_band_gate(hack, v, state, cfg).zones.tolist() == [ROUT] * 8


def test_quantile_band_config_validation():
    with pytest.raises(ValueError, match="tail_q"):
        QuantileBand(tail_q=0.5)
    with pytest.raises(ValueError, match="halflife"):
        QuantileBand(halflife=0.0)


@settings(max_examples=60, deadline=None)
@given(
    batches=st.lists(
        st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=12),
        min_size=1,
        max_size=6,
    ),
    q=st.floats(0.01, 0.49),
    halflife=st.one_of(st.none(), st.floats(0.5, 100.0)),
    warmup=st.integers(0, 30),
)
def test_property_quantile_band_never_gives_m0_d1(batches, q, halflife, warmup):
    cfg = QuantileBand(tail_q=q, halflife=halflife, warmup=warmup, buffer_size=25)
    state = QuantileBandState()
    for scores in batches:
        feats, v = feats_with_scores(scores)
        out = quantile_band_gate(feats, v, state, cfg)
        assert_d_implies_m(out)
        if not out.info["warmup"]:
            assert out.info["lo"] <= out.info["hi"]
        state = out.state


# -- pair band --------------------------------------------------------------------------------


def test_pair_band_edges_are_p75_of_each_side():
    st_ = pair_band_state([1.0, 2.0, 3.0, 4.0, 5.0], [-4.0, -3.0, -2.0, -1.0, 0.0], PairBand())
    assert st_.hi == pytest.approx(4.0) and st_.lo == pytest.approx(-1.0)
    feats, v = feats_with_scores([-2.0, -1.0, 0.0, 3.9, 4.0, 9.0])
    out = direction_gate(feats, v, st_, PairBand())
    assert out.zones.tolist() == [KEEP, KEEP, ABSORB, ABSORB, ROUT, ROUT]
    assert out.state is st_
    assert_d_implies_m(out)


def test_pair_band_that_does_not_separate_never_pins_ambiguous_scores():
    st_ = pair_band_state([0.0, 0.0], [0.0, 0.0], PairBand())
    feats, v = feats_with_scores([-1.0, 0.0, 1.0])
    out = direction_gate(feats, v, st_, PairBand())
    assert out.zones.tolist() == [KEEP, ABSORB, ROUT]
    with pytest.raises(ValueError, match="PairBandState"):
        direction_gate(feats, v, None, PairBand())
    with pytest.raises(ValueError, match="at least one"):
        pair_band_state([], [1.0], PairBand())


# -- arms and the label firewall --------------------------------------------------------------


def test_direction_gate_and_band_functions_take_no_labels():
    for fn in (
        direction_gate,
        gates.quantile_band_gate,
        gates.pair_band_gate,
        gates.zones_from_edges,
        gates.absorb_gate,
        gates.none_gate,
        gates.plain_gate,
    ):
        params = inspect.signature(fn).parameters
        assert not any("label" in p for p in params), fn.__name__


def test_dispatcher_refuses_labels_for_non_oracle_arms():
    labels = torch.tensor([True, False])
    feats, v = feats_with_scores([0.0, 1.0])
    for arm in ("none", "plain", "absorb", "routeA", "routeV"):
        with pytest.raises(ValueError, match="must not see labels"):
            gate_for_arm(arm, 2, features=feats, direction=v, band=QuantileBand(), labels=labels)
    with pytest.raises(ValueError, match="pass labels"):
        gate_for_arm("oracle", 2)
    with pytest.raises(ValueError, match="unknown arm"):
        gate_for_arm("routeZ", 2)


def test_arms_none_plain_and_absorb():
    out = gate_for_arm("none", 3)  # pinned keep (0,0): only the deployed block trains
    assert out.m.tolist() == [False] * 3 and out.d.tolist() == [False] * 3
    assert out.zones.tolist() == [gates.KEEP] * 3
    out = gate_for_arm("plain", 3)  # unmasked: the whole rank-2r adapter trains
    assert out.m is None and out.d is None
    out = gate_for_arm("absorb", 3)
    assert out.m.tolist() == [True] * 3 and out.d.tolist() == [False] * 3


def test_route_arms_dispatch_to_the_band():
    feats, v = feats_with_scores(torch.arange(20.0))
    out = gate_for_arm("routeV", 20, features=feats, direction=v, band=QuantileBand(warmup=1))
    assert (out.zones == ROUT).any() and (out.zones == KEEP).any()
    with pytest.raises(ValueError, match="needs features"):
        gate_for_arm("routeA", 20, direction=v, band=QuantileBand())


def test_oracle_routes_by_label():
    out = gate_for_arm("oracle", 4, labels=[True, False, True, False])
    assert out.zones.tolist() == [ROUT, KEEP, ROUT, KEEP]
    assert out.m.tolist() == out.d.tolist() == [True, False, True, False]
    assert out.info["uses_labels"]
    with pytest.raises(ValueError, match="oracle_recall"):
        gate_for_arm("oracle", 4, labels=[True] * 4, recall=0.5)


def test_oracle_trains_unflagged_rows_in_the_zone_asked_for():
    out = gate_for_arm("oracle", 3, labels=[True, False, False], unflagged="absorb")
    assert out.zones.tolist() == [ROUT, ABSORB, ABSORB]
    assert out.m.tolist() == [True, True, True] and out.d.tolist() == [True, False, False]
    with pytest.raises(ValueError, match="unflagged zone must be 'keep' or 'absorb'"):
        oracle_gate([True], unflagged="rout")


def test_oracle_recall_is_seeded_and_keeps_about_p():
    labels = torch.ones(4000, dtype=torch.bool)
    a = gate_for_arm("oracle_recall", 4000, labels=labels, recall=0.3, seed=1, step=5)
    b = gate_for_arm("oracle_recall", 4000, labels=labels, recall=0.3, seed=1, step=5)
    c = gate_for_arm("oracle_recall", 4000, labels=labels, recall=0.3, seed=1, step=6)
    assert torch.equal(a.zones, b.zones) and not torch.equal(a.zones, c.zones)
    assert 0.27 < float((a.zones == ROUT).float().mean()) < 0.33
    # negatives are never routed, whatever the draw
    neg = oracle_gate(torch.zeros(50, dtype=torch.bool), recall=0.5, seed=3)
    assert (neg.zones == KEEP).all()
    assert (oracle_gate(labels[:10], recall=0.0).zones == KEEP).all()


# -- metrics ----------------------------------------------------------------------------------


def test_qmass():
    assert qmass(3.0, 1.0) == 0.25
    assert qmass(0.0, 0.0) == 0.0
    assert qmass(0.0, 2.0) == 1.0
    with pytest.raises(ValueError):
        qmass(-1.0, 1.0)


def test_gate_metrics_on_positive_advantage_rollouts():
    scores = [0.9, 0.8, 0.1, 0.2, 5.0, -5.0]
    zones = [ROUT, ABSORB, KEEP, ROUT, KEEP, ROUT]
    labels = [True, True, False, False, True, False]
    adv = [1.0, 1.0, 1.0, 1.0, -1.0, 0.0]  # the last two are outside the A > 0 contrast
    out = gate_metrics(scores, zones, labels, adv)
    assert out["share_rout"] == pytest.approx(0.5) and out["share_keep"] == pytest.approx(1 / 3)
    assert out["n_pos_adv"] == 4 and out["n_hack_pos_adv"] == 2
    assert out["auroc"] == pytest.approx(1.0)
    # routed on A>0: rows 0 (hack) and 3 (clean): precision 1/2, recall 1/2
    assert out["precision"] == pytest.approx(0.5) and out["recall"] == pytest.approx(0.5)
    assert out["f05"] == pytest.approx(0.5)


def test_gate_metrics_nan_with_reason_when_a_class_is_absent():
    out = gate_metrics([0.1, 0.2], [KEEP, ROUT], [False, False], [1.0, 1.0])
    assert math.isnan(out["auroc"]) and "no hack" in out["auroc_reason"]
    assert math.isnan(out["f05"]) and "no hack" in out["f05_reason"]
    out = gate_metrics([0.1, 0.2], [KEEP, KEEP], [True, False], [1.0, 1.0])
    assert out["f05"] == 0.0 and math.isnan(out["precision"])  # hacks exist, none routed
    out = gate_metrics([0.1], [KEEP], [True], [-1.0])
    assert "no rollouts" in out["auroc_reason"]
    with pytest.raises(ValueError, match="equal length"):
        gate_metrics([0.1], [KEEP, KEEP], [True], [1.0])


def test_gate_metrics_accepts_numpy_and_torch():
    a = gate_metrics(np.array([0.1, 0.9]), np.array([KEEP, ROUT]), [False, True], [1, 1])
    b = gate_metrics(torch.tensor([0.1, 0.9]), torch.tensor([KEEP, ROUT]), [False, True], [1, 1])
    assert a == b and a["f05"] == 1.0


def test_pair_band_state_is_immutable():
    s = PairBandState(lo=0.0, hi=1.0)
    with pytest.raises(AttributeError):
        s.lo = 2.0  # type: ignore[misc]


def test_router_band_takes_the_keep_tail_from_the_config(monkeypatch):
    from vgrout.config import TrainConfig
    from vgrout.routing import router as router_mod

    monkeypatch.setattr(router_mod.Router, "extract", lambda self: None)  # no model needed
    cfg = TrainConfig(arm="routeA", band_tail_q=0.2, band_keep_q=0.0, band_warmup=5)
    band = router_mod.Router(cfg, None, None).band
    assert (band.tail_q, band.keep_q, band.warmup) == (0.2, 0.0, 5)
    assert router_mod.Router(TrainConfig(arm="routeA"), None, None).band.keep_q is None
