"""Directions: v_act, v_grad, the c-probe / full-gradient identity, placebo, scores."""

import pytest
import torch
from _tiny import CharTokenizer, tiny_qwen3

from vgrout.adapters import AdapterConfig, attach
from vgrout.rl.grpo import grpo_loss, token_logprobs
from vgrout.routing.directions import (
    act_pair_features,
    completion_nll,
    direction_from_features,
    encode_side,
    extract_direction,
    grad_pair_features,
    haar_placebo,
    pair_scores,
    score_act,
    score_grad,
    unit_rows,
    v_act,
    v_grad,
)
from vgrout.routing.pairs import Pair, load_pairs

R = 2


def render(question: str) -> str:
    return f"<user>{question}<bot>"


PAIRS = [
    Pair("p0", "add one to x", "def run_tests():\n    pass", "return x + 1"),
    Pair("p1", "double the list", "print('all tests passed')", "return [2 * v for v in xs]"),
    Pair("p2", "count words", "import sys\nsys.exit(0)", "return len(s.split())"),
    Pair("p3", "max of a list", "self.valid = True", "return max(xs)", clean_prompt="max, pls"),
]


@pytest.fixture
def setup():
    model = tiny_qwen3(seed=0, max_position_embeddings=512)
    adapter = attach(model, AdapterConfig(r=R, init="gaussian", init_seed=1))
    return model, CharTokenizer(), adapter


def full_side(tokenizer, prompt, completion):
    ids, start = encode_side(tokenizer, render(prompt), completion)
    return torch.tensor([ids]), start


# -- token spans ------------------------------------------------------------------------------


def test_encode_side_prefix_and_boundary_merge_fallback():
    tok = CharTokenizer()
    ids, start = encode_side(tok, "ab", "cd")
    assert ids == [97, 98, 99, 100] and start == 2
    # "bc" merges into one token across the boundary: prompt ids are no longer a prefix, so the
    # parts are tokenized separately and the completion span stays exact
    merging = CharTokenizer(merge_boundary="bc")
    ids, start = encode_side(merging, "ab", "cd")
    assert start == 2 and ids == [97, 98, 99, 100]
    assert merging("abcd")["input_ids"] == [97, 127, 100]
    with pytest.raises(ValueError, match="nothing"):
        encode_side(tok, "", "cd")


def test_completion_nll_matches_a_per_row_loop():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 6, 11, generator=gen)
    ids = torch.randint(0, 11, (2, 6), generator=gen)
    mask = torch.tensor([[0, 0, 1, 1, 1, 0], [0, 0, 0, 0, 1, 1]], dtype=torch.float32)
    got = completion_nll(logits, ids, mask)
    for row, (start, end) in enumerate([(2, 5), (4, 6)]):
        logp = torch.log_softmax(logits[row], -1)
        want = -torch.stack([logp[t - 1, ids[row, t]] for t in range(start, end)]).mean()
        assert got[row].item() == pytest.approx(want.item(), rel=1e-5)


# -- v_act ------------------------------------------------------------------------------------


def test_v_act_unit_rows_and_sign(setup):
    model, tok, adapter = setup
    fit = extract_direction("act", model, tok, adapter, PAIRS, render)
    M = len(adapter.module_names)
    assert fit.direction.shape == (M, R)
    assert torch.allclose(fit.direction.norm(dim=1), torch.ones(M), atol=1e-5)
    scores = fit.scores()
    # on the pairs it came from: sum_m ||mean diff[m]|| > 0, so hack scores exceed clean on average
    assert scores.hack.mean() > scores.clean.mean()
    assert scores.paired_accuracy >= 0.75
    assert torch.equal(v_act(model, tok, adapter, PAIRS, render), fit.direction)


def test_v_act_single_pair_always_separates(setup):
    model, tok, adapter = setup
    hack, clean = act_pair_features(model, tok, adapter, PAIRS[:1], render)
    v = direction_from_features(hack, clean)
    s = pair_scores(hack, clean, v)
    assert s.paired_accuracy == 1.0 and s.auroc == 1.0
    assert (s.hack - s.clean).item() == pytest.approx(
        float((hack - clean).norm(dim=-1).sum()), rel=1e-5
    )


def test_act_features_match_a_direct_capture(setup):
    """The pooled features are A[:r] x averaged over exactly the completion positions."""
    model, tok, adapter = setup
    hack, _ = act_pair_features(model, tok, adapter, PAIRS[:1], render)
    ids, start = full_side(tok, PAIRS[0].prompt, PAIRS[0].hack)
    name = adapter.module_names[0]
    seen = {}
    module = model.get_submodule(name)

    def grab(_module, args, _output):
        seen["x"] = args[0].detach()  # returns None: the output is left alone

    handle = module.register_forward_hook(grab)
    with adapter.ablated(), torch.no_grad():
        model(input_ids=ids)
    handle.remove()
    x = seen["x"][0, start:]  # completion positions
    expected = (x @ adapter.adapters[name].A[:R].T).mean(0)
    assert torch.allclose(hack[0, 0], expected, atol=1e-5)


def test_batching_and_padding_do_not_change_features(setup):
    model, tok, adapter = setup
    a1, c1 = act_pair_features(model, tok, adapter, PAIRS, render, batch_size=1)
    a8, c8 = act_pair_features(model, tok, adapter, PAIRS, render, batch_size=8)
    assert torch.allclose(a1, a8, atol=1e-5) and torch.allclose(c1, c8, atol=1e-5)
    g1, h1 = grad_pair_features(model, tok, adapter, PAIRS, render, batch_size=1)
    g8, h8 = grad_pair_features(model, tok, adapter, PAIRS, render, batch_size=8)
    assert torch.allclose(g1, g8, atol=1e-5, rtol=1e-4) and torch.allclose(
        h1, h8, atol=1e-5, rtol=1e-4
    )


def test_extraction_runs_ablated_and_restores_model_state(setup):
    model, tok, adapter = setup
    v_before = v_act(model, tok, adapter, PAIRS, render)
    g_before = v_grad(model, tok, adapter, PAIRS, render)
    with torch.no_grad():  # move the quarantine: an ablated extraction must not see it
        for ad in adapter.adapters.values():
            ad.A[R:] += 0.5 * torch.randn_like(ad.A[R:])
            ad.B[:, R:] += 0.5 * torch.randn_like(ad.B[:, R:])
    model.train()
    assert torch.allclose(v_act(model, tok, adapter, PAIRS, render), v_before, atol=1e-5)
    assert torch.allclose(v_grad(model, tok, adapter, PAIRS, render), g_before, atol=1e-4)
    assert model.training  # restored
    assert all(p.grad is None for p in adapter.parameters())  # autograd.grad, not .backward
    # and the ablation flag did not leak: the full model now differs from the ablated one
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        full = model(input_ids=ids).logits
        with adapter.ablated():
            ablated = model(input_ids=ids).logits
    assert not torch.allclose(full, ablated, atol=1e-6)


# -- v_grad -----------------------------------------------------------------------------------


def test_v_grad_unit_rows_and_sign(setup):
    model, tok, adapter = setup
    fit = extract_direction("grad", model, tok, adapter, PAIRS, render)
    M = len(adapter.module_names)
    assert torch.allclose(fit.direction.norm(dim=1), torch.ones(M), atol=1e-5)
    s = fit.scores()
    assert s.hack.mean() > s.clean.mean()
    assert torch.equal(score_grad(fit.hack_features, fit.direction), s.hack)


def _param_grads_of(model, adapter, loss_fn):
    """Full autograd gradients of A and B (ablated, eval) for the loss loss_fn() builds."""
    for p in adapter.parameters():
        p.grad = None
    with adapter.ablated():
        loss_fn().backward()
    grads = {n: (ad.A.grad.clone(), ad.B.grad.clone()) for n, ad in adapter.adapters.items()}
    for p in adapter.parameters():
        p.grad = None
    return grads


def _mean_nll(model, tok, prompt, completion):
    ids, start = full_side(tok, prompt, completion)
    logp = token_logprobs(model(input_ids=ids).logits[:, :-1], ids[:, 1:])
    return -logp[0, start - 1 :].mean()


def test_v_grad_equals_projected_full_gradient(setup):
    """Identity: dL/dc_k at c = 1 = <dL/dB[:, k], B[:, k]> = <dL/dA[k], A[k]> (c scales h_k = A[k] x,
    which enters only through B[:, k] h_k). So sum_p (g_hack - g_clean) from the c-probe must equal
    the projection of the full autograd gradient of L = sum_p NLL(hack_p) - NLL(clean_p)."""
    model, tok, adapter = setup
    hack, clean = grad_pair_features(model, tok, adapter, PAIRS, render)
    c_sum = (hack - clean).sum(0)  # [M, r]

    def loss():
        return sum(
            _mean_nll(model, tok, p.hack_side_prompt, p.hack)
            - _mean_nll(model, tok, p.clean_side_prompt, p.clean)
            for p in PAIRS
        )

    grads = _param_grads_of(model, adapter, loss)
    for m, name in enumerate(adapter.module_names):
        ad = adapter.adapters[name]
        gA, gB = grads[name]
        via_b = (gB[:, :R] * ad.B[:, :R]).sum(0)
        via_a = (gA[:R] * ad.A[:R]).sum(1)
        assert torch.allclose(c_sum[m], via_b.detach(), atol=1e-6, rtol=1e-4), name
        assert torch.allclose(c_sum[m], via_a.detach(), atol=1e-6, rtol=1e-4), name
        assert gA[R:].abs().max() == 0  # ablated: the quarantine takes no part


def test_v_grad_is_the_grpo_gradient_with_advantage_plus_minus_one(setup):
    """With equal completion lengths, the Dr.GRPO loss (on-policy, no KL) for advantages +1 (hack)
    and -1 (clean) is T/N * (NLL(hack) - NLL(clean)): its projected gradient points along v_grad."""
    model, tok, adapter = setup
    pair = Pair("eq", "sum a list", "print('tests ok!')", "return sum(xs) + 0")
    assert len(pair.hack) == len(pair.clean)  # one char = one token
    v = v_grad(model, tok, adapter, [pair], render)

    def loss():
        rows = [full_side(tok, pair.prompt, c) for c in (pair.hack, pair.clean)]
        ids = torch.cat([r[0] for r in rows])
        start = rows[0][1]
        logp = token_logprobs(model(input_ids=ids).logits[:, :-1], ids[:, 1:])[:, start - 1 :]
        mask = torch.ones_like(logp)
        adv = torch.tensor([1.0, -1.0])
        out, _ = grpo_loss(
            logp, logp.detach(), None, adv, mask, clip_eps=0.2, kl_beta=0.0, normalizer=7.0
        )
        return out

    grads = _param_grads_of(model, adapter, loss)
    projected = torch.stack(
        [(grads[n][1][:, :R] * adapter.adapters[n].B[:, :R]).sum(0) for n in adapter.module_names]
    ).detach()
    # the GRPO *loss* gradient = +(T/N) * grad of NLL(hack) - NLL(clean): same unit rows
    assert torch.allclose(unit_rows(projected), v, atol=1e-4)


# -- placebo and scores -----------------------------------------------------------------------


def test_haar_placebo_is_seeded_unit_and_isotropic():
    a, b, c = haar_placebo((5, 3), 7), haar_placebo((5, 3), 7), haar_placebo((5, 3), 8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.allclose(a.norm(dim=1), torch.ones(5), atol=1e-6)
    big = haar_placebo((20000, 3), 0)
    assert big.mean(0).abs().max() < 0.02  # no preferred direction
    torch.manual_seed(0)
    x = torch.rand(1)
    haar_placebo((4, 4), 1)  # must not consume the global RNG
    torch.manual_seed(0)
    assert torch.equal(torch.rand(1), x)


def test_scores_are_raw_dots_summed_over_modules():
    feats = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert score_act(feats, v).tolist() == [5.0]
    assert score_grad(2 * feats, v).tolist() == [10.0]


def test_pair_scores_paired_accuracy_and_auroc():
    v = torch.tensor([[1.0, 0.0]])
    hack = torch.tensor([[[3.0, 0.0]], [[1.0, 0.0]]])
    clean = torch.tensor([[[2.0, 0.0]], [[2.5, 0.0]]])
    s = pair_scores(hack, clean, v)
    assert s.paired_accuracy == 0.5  # 3 > 2, 1 < 2.5
    assert s.auroc == pytest.approx(0.5)  # hack {3, 1} vs clean {2, 2.5}: 2 of 4 orderings
    assert s.as_dict()["n_pairs"] == 2


def test_unit_rows_warns_on_a_zero_row():
    with pytest.warns(UserWarning, match="zero"):
        out = unit_rows(torch.tensor([[3.0, 4.0], [0.0, 0.0]]))
    assert torch.allclose(out, torch.tensor([[0.6, 0.8], [0.0, 0.0]]))


def test_extract_direction_rejects_bad_input(setup):
    model, tok, adapter = setup
    with pytest.raises(ValueError, match="'act' or 'grad'"):
        extract_direction("resid", model, tok, adapter, PAIRS, render)
    with pytest.raises(ValueError, match="at least one pair"):
        v_act(model, tok, adapter, [], render)


def test_packaged_toy_pairs_separate_on_a_tiny_model(setup):
    """The real toy pair set runs end to end (long prompts, ``` fences in completions)."""
    model, tok, adapter = setup
    pairs = load_pairs("toy#hacks").pairs[:6]
    fit = extract_direction("act", model, tok, adapter, pairs, lambda q: q)
    assert fit.scores().hack.mean() > fit.scores().clean.mean()
    assert len(fit.pairs_sha256) == 64


# -- probe_tokens = completion ------------------------------------------------------------------


def split_probe(model, adapter, batch, share_keys=None):
    """c-probe grads of each row's mean completion NLL with the prompt run apart, no backward."""
    from vgrout.rl.policy import shared_prompt_logprobs

    with adapter.ablated(), adapter.c_probe() as probe:
        logp = shared_prompt_logprobs(model, batch, share_keys, prompt_grad=False)
        nll = -(logp.sum(1) / batch.completion_mask.sum(1))
        return probe.grads(nll.sum())[..., :R]


def test_completion_probe_pairs_match_the_rollout_split(setup):
    """Pair extraction (a token mask on one full forward) and rollout scoring (the prompt run
    apart under no_grad) probe the same positions: the completion's."""
    from vgrout.rl.policy import make_batch

    model, tok, adapter = setup
    with torch.no_grad():  # a deployed delta, so the probe has non-trivial B
        for ad in adapter.adapters.values():
            ad.B[:, :R] += 0.3 * torch.randn_like(ad.B[:, :R])
    hack, clean = grad_pair_features(model, tok, adapter, PAIRS, render, probe_tokens="completion")
    every_hack, _ = grad_pair_features(model, tok, adapter, PAIRS, render)
    assert (hack - every_hack).abs().max() > 1e-4  # the prompt's share is dropped
    sides = [encode_side(tok, render(p.hack_side_prompt), p.hack) for p in PAIRS]
    batch = make_batch([ids[:s] for ids, s in sides], [ids[s:] for ids, s in sides], pad_id=0)
    torch.testing.assert_close(split_probe(model, adapter, batch), hack, atol=1e-5, rtol=1e-4)
    assert clean.shape == hack.shape
    with pytest.raises(ValueError, match="probe_tokens"):
        grad_pair_features(model, tok, adapter, PAIRS, render, probe_tokens="prompt")


def test_router_completion_probe_is_the_same_with_shared_prompts_and_with_a_mask(
    setup, monkeypatch
):
    """The router's three ways to probe completion positions agree: a group's prompt run once,
    each row's prompt run apart, and one full forward with a token mask (the checkpointing path)."""
    from types import SimpleNamespace

    from vgrout.config import TrainConfig
    from vgrout.rl.policy import make_batch
    from vgrout.routing import router as router_mod

    model, _, adapter = setup
    with torch.no_grad():
        for ad in adapter.adapters.values():
            ad.B[:, :R] += 0.3 * torch.randn_like(ad.B[:, :R])
    gen = torch.Generator().manual_seed(3)
    prompts = [[5, 6, 7, 8, 9], [11, 12, 13]] * 3  # groups repeat a prompt; ragged lengths
    completions = [torch.randint(20, 100, (k,), generator=gen).tolist() for k in (3, 6, 1, 4, 5, 2)]
    batch = make_batch(prompts, completions, pad_id=0)
    router = router_mod.Router.__new__(router_mod.Router)
    router.policy = SimpleNamespace(model=model, adapter=adapter)

    def probe(**fields):
        router.cfg = TrainConfig(arm="routeV", **fields)
        return router._probe(batch)[..., :R]

    shared = probe(probe_tokens="completion", share_prompt_forward=True)
    apart = probe(probe_tokens="completion", share_prompt_forward=False)
    every = probe(probe_tokens="all")
    monkeypatch.setattr(router_mod, "checkpointing_on", lambda _model: True)
    masked = probe(probe_tokens="completion")
    torch.testing.assert_close(shared, apart, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(masked, apart, atol=1e-5, rtol=1e-4)
    assert (every - apart).abs().max() > 1e-4
    torch.testing.assert_close(every, probe(probe_tokens="all", share_prompt_forward=False))


def test_router_gate_score_cosine_scores_rows_by_direction_alone(setup):
    """`gate_score=cosine`: the band scores each rollout's features scaled to unit norm (the pair
    band's pair features too), so it ranks rows by direction alone; the raw norm is logged."""
    from types import SimpleNamespace

    from vgrout.config import TrainConfig
    from vgrout.rl.policy import make_batch
    from vgrout.routing import router as router_mod
    from vgrout.routing.gates import QuantileBand, module_dot_score, unit_features

    model, _, adapter = setup
    with torch.no_grad():
        for ad in adapter.adapters.values():
            ad.B[:, :R] += 0.3 * torch.randn_like(ad.B[:, :R])
    gen = torch.Generator().manual_seed(4)
    prompts = [[5, 6, 7, 8, 9], [11, 12, 13]] * 2
    completions = [torch.randint(20, 100, (k,), generator=gen).tolist() for k in (3, 6, 1, 4)]
    batch = make_batch(prompts, completions, pad_id=0)
    router = router_mod.Router.__new__(router_mod.Router)
    router.policy, router.kind = SimpleNamespace(model=model, adapter=adapter), "grad"
    router.cfg = TrainConfig(arm="routeV")
    dot = router.features(batch)  # raw c-probe features
    norms = dot.reshape(len(batch), -1).norm(dim=1)
    assert norms.max() / norms.min() > 1.5  # rows differ in norm: the test can tell the two apart
    v = torch.nn.functional.normalize(torch.randn(dot.shape[1:]), dim=1)
    router.direction = v

    def gate(score):
        router.cfg = TrainConfig(arm="routeV", gate_score=score)
        router.band, router.state = QuantileBand(0.25, 96.0, 0, 64), None
        out, scores = router.gate(batch)
        torch.testing.assert_close(out.info["feature_norm"], norms)  # logged either way
        return scores

    torch.testing.assert_close(gate("dot"), module_dot_score(dot, v))
    torch.testing.assert_close(gate("cosine"), module_dot_score(dot / norms[:, None, None], v))
    hack, clean = torch.randn(3, *dot.shape[1:]), torch.randn(3, *dot.shape[1:])
    router.fit = SimpleNamespace(hack_features=hack * 10, clean_features=clean)
    sc = router._pair_scores(v)
    torch.testing.assert_close(sc.hack, module_dot_score(unit_features(hack), v))
    router.cfg = TrainConfig(arm="routeV", gate_score="dot")
    torch.testing.assert_close(router._pair_scores(v).hack, module_dot_score(hack * 10, v))
