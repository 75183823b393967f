"""Init schemes (gaussian, pissa, corda, scorda, scorda_rev) and the calibration they read."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from _tiny import PAIRS, CharTokenizer, Pair, tiny_qwen3

from vgrout.adapters import AdapterConfig, Calibration, attach, calibrate, completion_token_ids
from vgrout.adapters.inits import (
    corda_init,
    gaussian_init,
    init_blocks,
    module_seed,
    pissa_init,
    scorda_init,
    signed_axes,
)

R = 4


def random_weight(d_out=24, d_in=20, seed=0):
    return torch.randn(d_out, d_in, generator=torch.Generator().manual_seed(seed))


def random_deltas(p=5, d_in=20, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(p, d_in, generator=gen) + 2.0 * torch.randn(1, d_in, generator=gen)


def assert_unit(a0, b0, atol=1e-5):
    torch.testing.assert_close(a0.norm(dim=1), torch.ones(a0.shape[0]), atol=atol, rtol=0)
    torch.testing.assert_close(b0.norm(dim=0), torch.ones(b0.shape[1]), atol=atol, rtol=0)


# -- calibration ----------------------------------------------------------------------------------


def test_completion_span_from_token_ids_prefix_and_boundary_merge():
    ids, start = completion_token_ids(CharTokenizer(), "ab", "cd")
    assert ids == [97, 98, 99, 100] and start == 2
    # "bc" merges into one token across the boundary: fall back to tokenising the parts.
    merging = CharTokenizer(merge_boundary="bc")
    assert merging("abcd")["input_ids"] == [97, 127, 100]
    ids, start = completion_token_ids(merging, "ab", "cd")
    assert ids == [97, 98, 99, 100] and start == 2
    with pytest.raises(ValueError, match="no tokens"):
        completion_token_ids(merging, "ab", "")


def test_calibrate_pools_each_target_input_over_completion_tokens():
    model = tiny_qwen3(0)
    cal = calibrate(model, CharTokenizer(), PAIRS, ("q_proj", "down_proj"))
    assert sorted(cal.deltas) == [
        f"model.layers.{i}.{m}" for i in (0, 1) for m in ("mlp.down_proj", "self_attn.q_proj")
    ]
    assert cal.num_pairs == 3 and cal.deltas["model.layers.0.mlp.down_proj"].shape == (3, 64)
    # Recompute one row by hand.
    name = "model.layers.1.self_attn.q_proj"
    seen = {}
    hook = model.get_submodule(name).register_forward_pre_hook(
        lambda _m, args: seen.__setitem__("x", args[0][0].detach())
    )

    def pooled(completion):
        ids, start = completion_token_ids(CharTokenizer(), PAIRS[1].prompt, completion)
        with torch.no_grad():
            model(torch.tensor([ids]))
        return seen["x"][start:].mean(0)

    expected = pooled(PAIRS[1].hack) - pooled(PAIRS[1].clean)
    hook.remove()
    torch.testing.assert_close(cal.deltas[name][1], expected)
    assert cal.deltas[name].abs().max() > 0
    with pytest.raises(ValueError, match="at least one pair"):
        calibrate(model, CharTokenizer(), [])


@dataclass
class SelfGeneratedPair(Pair):
    clean_prompt: str | None = None


def test_calibrate_reads_the_base_model_and_the_clean_side_prompt():
    model = tiny_qwen3(0)
    base = calibrate(model, CharTokenizer(), PAIRS, ("v_proj",))
    lora = attach(model, AdapterConfig(r=R))
    with torch.no_grad():
        for ad in lora.adapters.values():
            ad.A.add_(0.5)  # a trained adapter must not leak into the calibration
    under_adapter = calibrate(model, CharTokenizer(), PAIRS, ("v_proj",))
    for name, d in base.deltas.items():
        torch.testing.assert_close(under_adapter.deltas[name], d)
    same = [SelfGeneratedPair(p.prompt, p.hack, p.clean, clean_prompt=None) for p in PAIRS]
    other = [
        SelfGeneratedPair(p.prompt, p.hack, p.clean, clean_prompt="# no hint\n") for p in PAIRS
    ]
    name = "model.layers.1.self_attn.v_proj"
    torch.testing.assert_close(
        calibrate(model, CharTokenizer(), same, ("v_proj",)).deltas[name], base.deltas[name]
    )
    moved = calibrate(model, CharTokenizer(), other, ("v_proj",)).deltas[name]
    assert (moved - base.deltas[name]).abs().max() > 1e-4


def test_calibration_from_dict_checks_input():
    with pytest.raises(ValueError, match=r"\[P, d_in\]"):
        Calibration.from_dict({"m": torch.zeros(4)})
    with pytest.raises(ValueError, match="non-finite"):
        Calibration.from_dict({"m": torch.full((2, 3), float("nan"))})
    with pytest.raises(KeyError, match="no data for module"):
        Calibration.from_dict({"m": torch.ones(2, 3)}).for_module("other")


# -- gaussian, pissa, corda -----------------------------------------------------------------------


def test_gaussian_is_scale_matched_and_seeded():
    a0, b0 = gaussian_init(d_out=1024, d_in=768, r=8, seed=3)
    assert a0.shape == (16, 768) and b0.shape == (1024, 16)
    assert 0.95 < a0.norm(dim=1).mean() < 1.05
    assert 0.95 < b0.norm(dim=0).mean() < 1.05  # columns unit (the predecessor's were ~8 here)
    again = gaussian_init(1024, 768, 8, seed=3)
    assert torch.equal(a0, again[0]) and torch.equal(b0, again[1])
    assert not torch.equal(a0, gaussian_init(1024, 768, 8, seed=4)[0])
    assert module_seed(0, "a.q_proj") != module_seed(0, "a.k_proj")
    assert module_seed(0, "a.q_proj") == module_seed(0, "a.q_proj")


def test_pissa_takes_top_components_unit_and_disjoint():
    w = random_weight()
    a0, b0 = pissa_init(w, R)
    assert_unit(a0, b0)
    u, _s, vh = torch.linalg.svd(w, full_matrices=False)
    # deployed = even ranks 0,2,4,6; quarantine = odd ranks 1,3,5,7 (up to sign, exact here)
    torch.testing.assert_close(a0[:R], vh[0:8:2])
    torch.testing.assert_close(a0[R:], vh[1:8:2])
    torch.testing.assert_close(b0[:, R:], u[:, 1:8:2])
    torch.testing.assert_close(a0 @ a0.T, torch.eye(2 * R), atol=1e-5, rtol=0)


def test_corda_closed_form_matches_explicit_square_root():
    w, d = random_weight().double(), random_deltas().double()
    a0, b0 = corda_init(w, d, R)
    assert_unit(a0.float(), b0.float())
    # Explicit C^{1/2} for a small d_in.
    p, d_in = d.shape
    ridge = 1e-3 * (d.square().sum() / p) / d_in
    c = d.T @ d / p + ridge * torch.eye(d_in, dtype=torch.float64)
    evals, evecs = torch.linalg.eigh(c)
    c_half = (evecs * evals.sqrt()) @ evecs.T
    _u, _s, q = torch.linalg.svd(w @ c_half, full_matrices=False)
    a_ref = q[: 2 * R] @ c_half
    a_ref = a_ref / a_ref.norm(dim=1, keepdim=True)
    order = [0, 2, 4, 6, 1, 3, 5, 7]
    signs = torch.sign((a0 * a_ref[order]).sum(1))  # SVD signs are arbitrary
    torch.testing.assert_close(a0, signs[:, None] * a_ref[order], atol=1e-9, rtol=0)
    assert (a0[:R] @ a0[R:].T).abs().mean() < 0.9  # disjoint components, not one shared basis
    assert not torch.allclose(a0, pissa_init(w, R)[0], atol=1e-3)
    assert corda_init(w.float(), d.float(), R)[0].dtype == torch.float32  # the contrast matters


def test_inits_validate_rank_and_calibration():
    with pytest.raises(ValueError, match="exceeds min"):
        pissa_init(random_weight(6, 20), R)
    with pytest.raises(ValueError, match="needs calibration"):
        init_blocks("scorda", random_weight(), R)
    with pytest.raises(ValueError, match="all zero"):
        corda_init(random_weight(), torch.zeros(3, 20), R)
    with pytest.raises(ValueError, match="d_in"):
        init_blocks("corda", random_weight(), R, deltas=torch.ones(3, 7))
    with pytest.raises(ValueError, match="unknown init"):
        AdapterConfig(init="lora")
    with pytest.raises(ValueError, match="needs calibration"):
        attach(tiny_qwen3(0), AdapterConfig(r=R, init="corda"))


# -- signed CorDA ---------------------------------------------------------------------------------


def test_scorda_seeds_the_first_quarantine_slot_with_the_signed_axis():
    w, d = random_weight(), random_deltas()
    a0, b0 = scorda_init(w, d, R)
    u_in, u_out = signed_axes(w, d)
    assert_unit(a0, b0)
    assert a0[R] @ u_in > 0.999 and b0[:, R] @ u_out > 0.999  # polarity: the hack end
    others = [k for k in range(2 * R) if k != R]
    assert (a0[others] @ u_in).abs().max() < 1e-5  # deployed (and other quarantine) blind
    assert (b0[:, others].T @ u_out).abs().max() < 1e-5
    # the other slots are W's top components in order, with the axis projected out
    _u, _s, vh = torch.linalg.svd(w, full_matrices=False)
    first = vh[0] - (vh[0] @ u_in) * u_in
    torch.testing.assert_close(a0[0], first / first.norm())


def test_scorda_rev_puts_the_seed_in_the_deployed_block():
    w, d = random_weight(), random_deltas()
    a0, b0 = init_blocks("scorda_rev", w, R, deltas=d)
    u_in, u_out = signed_axes(w, d)
    assert a0[0] @ u_in > 0.999 and b0[:, 0] @ u_out > 0.999
    assert (a0[R:] @ u_in).abs().max() < 1e-5


def test_sign_of_the_pairs_sets_the_polarity():
    w, d = random_weight(), random_deltas()
    a_pos, _ = scorda_init(w, d, R)
    a_neg, _ = scorda_init(w, -d, R)  # hack and clean swapped
    torch.testing.assert_close(a_neg[R], -a_pos[R])


@pytest.mark.parametrize("init", ["scorda", "scorda_rev"])
def test_scorda_on_a_model_checks_every_module(init):
    model = tiny_qwen3(0)
    cal = calibrate(model, CharTokenizer(), PAIRS)
    lora = attach(model, AdapterConfig(r=R, init=init), cal)
    seed, blind = (R, slice(0, R)) if init == "scorda" else (0, slice(R, 2 * R))
    for name in lora.module_names:
        ad = lora.adapters[name]
        weight = model.get_submodule(name).weight
        u_in, u_out = signed_axes(weight, cal.for_module(name))
        assert ad.A0[seed] @ u_in > 0.999 and ad.B0[:, seed] @ u_out > 0.999, name
        assert (ad.A0[blind] @ u_in).abs().max() < 1e-5, name


def test_pissa_and_corda_on_a_model_are_unit():
    model = tiny_qwen3(0)
    cal = calibrate(model, CharTokenizer(), PAIRS)
    for init in ("pissa", "corda"):
        lora = attach(model, AdapterConfig(r=R, init=init), cal)
        for ad in lora.adapters.values():
            assert_unit(ad.A0, ad.B0, atol=1e-4)
        lora.detach()
