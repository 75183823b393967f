"""BlockLoRA behaviour on a tiny random Qwen3 (and GPT-2): identity, routing, probe, ablation, io."""

from __future__ import annotations

import json

import pytest
import torch
from _tiny import PAIRS, CharTokenizer, random_ids, tiny_gpt2, tiny_qwen3
from safetensors import safe_open

from vgrout.adapters import AdapterConfig, BlockLoRA, attach, calibrate, read_meta
from vgrout.adapters.inits import INITS

R = 4


def logits(model, ids):
    return model(ids).logits


def attached(init="gaussian", seed=0, **cfg):
    model = tiny_qwen3(seed)
    calibration = None
    if init in ("corda", "scorda", "scorda_rev"):
        calibration = calibrate(model, CharTokenizer(), PAIRS, AdapterConfig().targets)
    return model, attach(model, AdapterConfig(r=R, init=init, **cfg), calibration)


@torch.no_grad()
def perturb(lora: BlockLoRA, deployed: bool = True, quarantine: bool = True, scale=0.05, seed=1):
    gen = torch.Generator().manual_seed(seed)
    for ad in lora.adapters.values():
        for p in (ad.A, ad.B):
            noise = scale * torch.randn(p.shape, generator=gen)
            if p is ad.A:
                noise[:R] *= deployed
                noise[R:] *= quarantine
            else:
                noise[:, :R] *= deployed
                noise[:, R:] *= quarantine
            p.add_(noise)


def block_grads(lora: BlockLoRA) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenated deployed and quarantine gradients (zeros where .grad is None)."""
    dep, quar = [], []
    for ad in lora.adapters.values():
        ga = ad.A.grad if ad.A.grad is not None else torch.zeros_like(ad.A)
        gb = ad.B.grad if ad.B.grad is not None else torch.zeros_like(ad.B)
        dep += [ga[:R].flatten(), gb[:, :R].flatten()]
        quar += [ga[R:].flatten(), gb[:, R:].flatten()]
    return torch.cat(dep), torch.cat(quar)


def assert_close_to_scale(actual, expected, rel=1e-5):
    """Equal up to float round-off relative to the tensor's scale (summation order differs)."""
    assert (actual - expected).abs().max() <= rel * expected.abs().max()


def zero_grads(lora):
    for p in lora.parameters():
        p.grad = None


def routed_grads(model, lora, ids, m, d, reduce="sum"):
    zero_grads(lora)
    with lora.route(m, d):
        out = logits(model, ids).square()
        loss = out.sum() if reduce == "sum" else out.mean()
    loss.backward()
    return block_grads(lora)


# -- identity, freezing, targets ------------------------------------------------------------------


@pytest.mark.parametrize("init", INITS)
def test_identity_at_init_for_every_init(init):
    model = tiny_qwen3(0)
    ids = random_ids(2, 12)
    with torch.no_grad():
        base = logits(model, ids)
    model, lora = attached(init)
    with torch.no_grad():
        out = logits(model, ids)
    assert (out - base).abs().max() < 1e-5
    # A, B are non-zero, so gradients are alive at step 0.
    assert all(p.abs().sum() > 0 for p in lora.parameters())


def test_attach_freezes_base_and_targets_every_projection():
    model, lora = attached()
    assert all(not p.requires_grad for p in model.parameters())
    assert all(p.requires_grad for p in lora.parameters())
    assert len(lora.module_names) == 2 * 7
    assert lora.module_names == sorted(lora.module_names)
    assert not any("lm_head" in n or "embed" in n for n in lora.module_names)
    ad = lora.adapters["model.layers.0.self_attn.k_proj"]
    assert ad.A.shape == (2 * R, 32) and ad.B.shape == (16, 2 * R)
    assert ad.A.dtype == torch.float32 and not ad.A0.requires_grad


def test_attach_rejects_bad_targets_and_double_attach():
    model = tiny_qwen3(0)
    with pytest.raises(ValueError, match="lm_head"):
        AdapterConfig(targets=("q_proj", "lm_head"))
    with pytest.raises(ValueError, match="no module matches"):
        attach(model, AdapterConfig(targets=("c_attn",)))
    with pytest.raises(TypeError, match="nn.Linear and transformers Conv1D"):
        attach(model, AdapterConfig(targets=("input_layernorm",)))
    attach(model, AdapterConfig(r=R))
    with pytest.raises(RuntimeError, match="already has a BlockLoRA"):
        attach(model, AdapterConfig(r=R))


def test_detach_restores_the_plain_model():
    model, lora = attached()
    ids = random_ids(2, 8)
    with torch.no_grad():
        with lora.disabled():
            base = logits(model, ids)
        perturb(lora)
        assert (logits(model, ids) - base).abs().max() > 1e-4
        lora.detach()
        assert torch.equal(logits(model, ids), base)
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(RuntimeError, match="detached"), lora.ablated():
        pass
    attach(model, AdapterConfig(r=R))  # attachable again


# -- routing ----------------------------------------------------------------------------------------

ZONES = {"keep": (0, 0), "absorb": (1, 0), "rout": (1, 1)}


@pytest.mark.parametrize("zone", list(ZONES))
def test_uniform_mask_routes_gradient_to_the_right_block(zone):
    model, lora = attached()
    ids = random_ids(2, 10)
    m, d = ZONES[zone]
    dep, quar = routed_grads(model, lora, ids, [m, m], [d, d], reduce="mean")
    deployed_trains = d == 0
    quarantine_trains = m == 1
    assert (dep.norm() > 1e-8) == deployed_trains
    assert (quar.norm() > 1e-8) == quarantine_trains
    if not deployed_trains:
        assert torch.count_nonzero(dep) == 0
    if not quarantine_trains:
        assert torch.count_nonzero(quar) == 0


def test_dead_zone_and_malformed_masks_raise():
    model, lora = attached()
    with pytest.raises(ValueError, match="d => m"), lora.route([1, 0], [0, 1]):
        pass
    with pytest.raises(ValueError, match="only 0/1"), lora.route([0.5, 1], [0, 0]):
        pass
    with pytest.raises(ValueError, match="equal length"), lora.route([1, 1], [0]):
        pass
    with pytest.raises(ValueError, match="rows"), lora.route([1, 1, 1], [0, 0, 0]):
        logits(model, random_ids(2, 6))


def test_mixed_batch_equals_rollouts_alone():
    model, lora = attached()
    perturb(lora)  # so every block shapes the forward
    ids = random_ids(3, 10, seed=3)
    masks = [ZONES["keep"], ZONES["rout"], ZONES["absorb"]]
    mixed_dep, mixed_quar = routed_grads(
        model, lora, ids, [z[0] for z in masks], [z[1] for z in masks]
    )
    solo = [routed_grads(model, lora, ids[g : g + 1], [m], [d]) for g, (m, d) in enumerate(masks)]
    assert torch.count_nonzero(solo[0][1]) == 0 and torch.count_nonzero(solo[1][0]) == 0
    torch.testing.assert_close(mixed_dep, solo[0][0] + solo[2][0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(mixed_quar, solo[1][1] + solo[2][1], atol=1e-5, rtol=1e-4)


def test_routed_blocks_get_the_exact_gradient_of_the_forward_they_see():
    """rout = full-model gradient on the quarantine; keep = ablated-model gradient on deployed.

    (d=1 cuts only the deployed parameters' gradient, not the path through the deployed branch.)
    """
    model, lora = attached()
    perturb(lora)
    ids = random_ids(2, 10, seed=5)

    def unrouted(ablate):
        zero_grads(lora)
        if ablate:
            with lora.ablated():
                loss = logits(model, ids).square().sum()
        else:
            loss = logits(model, ids).square().sum()
        loss.backward()
        return block_grads(lora)

    full_dep, full_quar = unrouted(ablate=False)
    ablated_dep, _ = unrouted(ablate=True)
    _, rout_quar = routed_grads(model, lora, ids, [1, 1], [1, 1])
    keep_dep, _ = routed_grads(model, lora, ids, [0, 0], [0, 0])
    absorb_dep, absorb_quar = routed_grads(model, lora, ids, [1, 1], [0, 0])
    assert_close_to_scale(rout_quar, full_quar)
    assert_close_to_scale(keep_dep, ablated_dep)
    assert_close_to_scale(absorb_dep, full_dep)
    assert_close_to_scale(absorb_quar, full_quar)


def test_route_keeps_the_forward_value_of_its_zone():
    model, lora = attached()
    perturb(lora)
    ids = random_ids(3, 8, seed=2)
    with torch.no_grad():
        full = logits(model, ids)
        with lora.ablated():
            ablated = logits(model, ids)
        with lora.route([0, 1, 1], [0, 1, 0]):
            routed = logits(model, ids)
    torch.testing.assert_close(routed[0], ablated[0], atol=1e-6, rtol=1e-5)  # m=0 == ablation
    torch.testing.assert_close(routed[1:], full[1:], atol=1e-6, rtol=1e-5)
    assert (ablated - full).abs().max() > 1e-4


# -- c-probe ----------------------------------------------------------------------------------------


def probe_grads(model, lora, ids):
    with lora.c_probe() as probe:
        loss = logits(model, ids).square().sum()
        return probe.grads(loss)


def test_c_probe_batched_equals_solo_and_leaves_param_grads_alone():
    model, lora = attached()
    perturb(lora)
    ids = random_ids(3, 9, seed=4)
    batched = probe_grads(model, lora, ids)
    assert batched.shape == (3, len(lora.module_names), 2 * R)
    assert all(p.grad is None for p in lora.parameters())
    for g in range(3):
        solo = probe_grads(model, lora, ids[g : g + 1])
        torch.testing.assert_close(batched[g : g + 1], solo, atol=1e-5, rtol=1e-4)
    assert batched.abs().max() > 1e-6


def test_c_probe_equals_the_weight_gradient_projected_on_each_rank_one_component():
    """sum_g dL/dc[g, k] = <dL/dB[:, k], B[:, k]> = <dL/dA[k], A[k]> (c scales slot k)."""
    model, lora = attached()
    perturb(lora)
    ids = random_ids(2, 7, seed=6)
    probe = probe_grads(model, lora, ids).sum(0)  # [M, 2r]
    zero_grads(lora)
    logits(model, ids).square().sum().backward()
    for i, name in enumerate(lora.module_names):
        ad = lora.adapters[name]
        via_b = (ad.B.grad * ad.B).sum(0)
        via_a = (ad.A.grad * ad.A).sum(1)
        torch.testing.assert_close(probe[i], via_b.detach(), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(probe[i], via_a.detach(), atol=1e-4, rtol=1e-4)


def test_c_probe_under_ablation_has_no_quarantine_signal_and_checks_usage():
    model, lora = attached()
    perturb(lora)
    ids = random_ids(2, 6)
    with lora.ablated():
        grads = probe_grads(model, lora, ids)
    assert torch.count_nonzero(grads[..., R:]) == 0 and grads[..., :R].abs().max() > 0
    with lora.c_probe() as probe, pytest.raises(RuntimeError, match="exactly one"):
        with torch.no_grad():
            loss = logits(model, ids).sum()
        probe.grads(loss)


def masked_probe_grads(model, lora, ids, mask):
    with lora.c_probe(token_mask=mask) as probe:
        loss = logits(model, ids).square().sum()
        return probe.grads(loss)


def test_c_probe_token_mask_probes_only_the_masked_positions():
    """Masked probe = the sum of the per-position contributions it selects: all-ones equals the
    unmasked probe, disjoint masks add up, an empty mask gives zero, values are unchanged."""
    model, lora = attached()
    perturb(lora)
    ids = random_ids(3, 8, seed=9)
    ones = torch.ones(3, 8)
    first = torch.zeros(3, 8)
    first[:, :5] = 1
    full = probe_grads(model, lora, ids)
    torch.testing.assert_close(masked_probe_grads(model, lora, ids, ones), full)
    head = masked_probe_grads(model, lora, ids, first)
    tail = masked_probe_grads(model, lora, ids, 1 - first)
    assert (head - full).abs().max() > 1e-4 and (tail - full).abs().max() > 1e-4
    torch.testing.assert_close(head + tail, full, atol=1e-5, rtol=1e-4)
    assert torch.count_nonzero(masked_probe_grads(model, lora, ids, torch.zeros(3, 8))) == 0
    with torch.no_grad():
        plain = logits(model, ids)
        with lora.c_probe(token_mask=first):
            assert torch.equal(logits(model, ids), plain)  # no leaf, no change under no_grad
    with torch.enable_grad(), lora.c_probe(token_mask=first):
        assert torch.equal(logits(model, ids).detach(), plain)  # c = 1 exactly
    with lora.c_probe(token_mask=torch.ones(3, 7)), pytest.raises(ValueError, match="token_mask"):
        logits(model, ids)
    with pytest.raises(ValueError, match=r"\[G, T\]"), lora.c_probe(token_mask=torch.ones(3)):
        pass


# -- ablation and disable ---------------------------------------------------------------------------


def test_ablation_is_a_noop_at_init_and_removes_and_restores_a_quarantine_perturbation():
    model, lora = attached()
    ids = random_ids(2, 10, seed=7)
    with torch.no_grad():
        init = logits(model, ids)
        with lora.ablated():
            assert (logits(model, ids) - init).abs().max() < 1e-6
        perturb(lora, deployed=False, quarantine=True)
        perturbed = logits(model, ids)
        assert (perturbed - init).abs().max() > 1e-6
        with lora.ablated():
            assert (logits(model, ids) - init).abs().max() < 1e-5
        assert (logits(model, ids) - perturbed).abs().max() < 1e-6


def test_ablation_keeps_the_deployed_block_and_disable_removes_everything():
    model = tiny_qwen3(0)
    ids = random_ids(2, 10, seed=8)
    with torch.no_grad():
        base = logits(model, ids)
    lora = attach(model, AdapterConfig(r=R))
    perturb(lora, deployed=True, quarantine=False)
    with torch.no_grad():
        deployed_only = logits(model, ids)
        perturb(lora, deployed=False, quarantine=True, seed=2)
        with lora.ablated():
            torch.testing.assert_close(logits(model, ids), deployed_only, atol=1e-5, rtol=1e-5)
        with lora.disabled():
            assert (logits(model, ids) - base).abs().max() < 1e-6
    assert (deployed_only - base).abs().max() > 1e-4


def test_contexts_restore_state_when_the_body_raises():
    model, lora = attached()
    perturb(lora)
    ids = random_ids(2, 6)
    with torch.no_grad():
        before = logits(model, ids)
    weights = {n: p.clone() for n, p in model.named_parameters()}
    contexts = [
        lambda: lora.route([0, 1], [0, 1]),
        lora.ablated,
        lora.disabled,
        lora.c_probe,
        lambda: lora.capture_bottleneck(torch.ones(2, 6)),
        lambda: lora.merged(ablate=True),
    ]
    for make in contexts:
        with pytest.raises(KeyError, match="boom"), make():
            raise KeyError("boom")
    state = lora._state
    assert (state.route, state.probe, state.capture) == (None, None, None)
    assert not (state.ablated or state.disabled or state.merged)
    with torch.no_grad():
        assert torch.equal(logits(model, ids), before)
    assert all(torch.equal(p, weights[n]) for n, p in model.named_parameters())


# -- capture --------------------------------------------------------------------------------------


def test_capture_bottleneck_pools_the_deployed_read_over_masked_tokens():
    model, lora = attached()
    perturb(lora)
    ids = random_ids(2, 8, seed=9)
    token_mask = torch.zeros(2, 8)
    token_mask[0, 3:] = 1
    token_mask[1, 5:7] = 1
    inputs = {}
    name = "model.layers.1.mlp.down_proj"
    hook = model.get_submodule(name).register_forward_pre_hook(
        lambda _m, args: inputs.__setitem__("x", args[0].detach())
    )
    with torch.no_grad(), lora.capture_bottleneck(token_mask) as cap:
        logits(model, ids)
    hook.remove()
    pooled = cap.pooled
    assert pooled.shape == (2, len(lora.module_names), R)
    h = inputs["x"] @ lora.adapters[name].A[:R].detach().T
    expected = torch.stack([h[0, 3:].mean(0), h[1, 5:7].mean(0)])
    torch.testing.assert_close(pooled[:, lora.module_names.index(name)], expected)
    with (
        pytest.raises(ValueError, match="select no token"),
        lora.capture_bottleneck(torch.zeros(2, 8)),
    ):
        pass


# -- parameters bookkeeping -----------------------------------------------------------------------


def test_decay_toward_init_shrinks_the_learned_part_and_fixes_the_init():
    model, lora = attached(decay_to_init=0.1)
    before = {n: (ad.A.clone(), ad.B.clone()) for n, ad in lora.adapters.items()}
    lora.decay_toward_init(lr=0.5)
    for n, ad in lora.adapters.items():  # init is a fixed point
        assert torch.equal(ad.A, before[n][0]) and torch.equal(ad.B, before[n][1])
    perturb(lora)
    offsets = {n: (ad.A - ad.A0).clone() for n, ad in lora.adapters.items()}
    lora.decay_toward_init(lr=0.5)  # rate from the config: factor 1 - 0.05
    for n, ad in lora.adapters.items():
        torch.testing.assert_close(ad.A - ad.A0, 0.95 * offsets[n])


def test_delta_norms_and_block_grad_norms():
    model, lora = attached()
    assert lora.delta_norms() == pytest.approx((0.0, 0.0), abs=1e-5)
    perturb(lora, deployed=False, quarantine=True)
    dep, quar = lora.delta_norms()
    dense = sum(
        ad.block_delta_weight(deployed=False).detach().square().sum()
        for ad in lora.adapters.values()
    )
    assert dep == pytest.approx(0.0, abs=1e-5)
    assert quar == pytest.approx(dense.sqrt().item(), rel=1e-4)
    routed_grads(model, lora, random_ids(2, 6), [1, 1], [1, 1])
    g_dep, g_quar = lora.block_grad_norms()
    assert g_dep == 0.0 and g_quar > 0


# -- save / load, merging --------------------------------------------------------------------------


def test_save_load_round_trip_gives_identical_logits(tmp_path):
    model, lora = attached("pissa")
    perturb(lora)
    ids = random_ids(2, 10, seed=10)
    with torch.no_grad():
        expected = logits(model, ids)
        with lora.ablated():
            expected_ablated = logits(model, ids)
    path = tmp_path / "adapter.safetensors"
    lora.save(path, {"step": 7, "arm": "routeV"})
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
        header = f.metadata()
    name = lora.module_names[0]
    assert {f"A/{name}", f"B/{name}", f"A0/{name}", f"B0/{name}"} <= keys
    assert json.loads(header["adapter_config"])["init"] == "pissa"
    assert read_meta(path) == {"step": 7, "arm": "routeV"}

    fresh = tiny_qwen3(0)
    loaded = BlockLoRA.load_into(fresh, path)
    assert loaded.config == lora.config
    with torch.no_grad():
        assert torch.equal(logits(fresh, ids), expected)
        with loaded.ablated():
            assert torch.equal(logits(fresh, ids), expected_ablated)
    for n in lora.module_names:
        assert torch.equal(loaded.adapters[n].A0, lora.adapters[n].A0)
    with pytest.raises(ValueError, match="other modules"):
        BlockLoRA.load_into(tiny_qwen3(0, num_hidden_layers=1), path)
    # resume: load in place into an existing handle (fresh init, same architecture)
    _, resumed = attached("pissa", seed=3)  # other base weights, same adapter config
    params_before = resumed.parameters()
    assert resumed.load_state(path) == {"step": 7, "arm": "routeV"}
    assert all(p is q for p, q in zip(resumed.parameters(), params_before, strict=True))
    with torch.no_grad():
        for n in lora.module_names:
            assert torch.equal(resumed.adapters[n].B, lora.adapters[n].B)
    _, other_init = attached("gaussian")
    with pytest.raises(ValueError, match="different adapter"):
        other_init.load_state(path)
    wider = tiny_qwen3(0, intermediate_size=48)
    with pytest.raises(ValueError, match="do not fit"):
        BlockLoRA.load_into(wider, path)
    assert all(p.requires_grad for p in wider.parameters())  # untouched on error


@pytest.mark.parametrize("ablate", [False, True])
def test_merged_matches_the_hooked_forward_and_restores_weights_exactly(ablate):
    model, lora = attached()
    perturb(lora)
    ids = random_ids(2, 10, seed=11)
    weights = {n: p.clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        if ablate:
            with lora.ablated():
                hooked = logits(model, ids)
        else:
            hooked = logits(model, ids)
        with lora.merged(ablate=ablate):
            merged = logits(model, ids)
            assert any(not torch.equal(p, weights[n]) for n, p in model.named_parameters())
            with pytest.raises(RuntimeError, match="merged"), lora.ablated():
                pass
    torch.testing.assert_close(merged, hooked, atol=1e-5, rtol=1e-5)
    assert all(torch.equal(p, weights[n]) for n, p in model.named_parameters())


def test_merge_deployed_into_is_the_ablated_model_without_hooks():
    model, lora = attached()
    perturb(lora)
    ids = random_ids(2, 10, seed=12)
    with torch.no_grad():
        with lora.ablated():
            ablated = logits(model, ids)
        full = logits(model, ids)
        served = lora.merge_deployed_into()
        torch.testing.assert_close(logits(served, ids), ablated, atol=1e-5, rtol=1e-5)
        assert torch.equal(logits(model, ids), full)  # the original is untouched
    for name in lora.module_names:
        assert len(served.get_submodule(name)._forward_hooks) == 0
    attach(served, AdapterConfig(r=R))  # a plain model: a new adapter can be attached


# -- dtype, other architectures --------------------------------------------------------------------


def test_bf16_model_computes_in_bf16_and_keeps_fp32_params():
    model = tiny_qwen3(0).to(torch.bfloat16)
    ids = random_ids(2, 8)
    with torch.no_grad():
        base = logits(model, ids)
    lora = attach(model, AdapterConfig(r=R))
    assert all(p.dtype == torch.float32 for p in lora.parameters())
    with lora.route([1, 0], [1, 0]):
        out = logits(model, ids)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.detach(), base)
    out.float().square().mean().backward()
    dep, quar = block_grads(lora)
    assert dep.dtype == torch.float32 and dep.norm() > 0 and quar.norm() > 0


GPT2_TARGETS = ("c_attn", "c_proj", "c_fc")


def test_gpt2_conv1d_is_supported(tmp_path):
    model = tiny_gpt2(0)
    ids = random_ids(2, 9)
    with torch.no_grad():
        base = logits(model, ids)
    lora = attach(model, AdapterConfig(r=R, init="pissa", targets=GPT2_TARGETS))
    assert len(lora.module_names) == 2 * 4  # attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj
    assert lora.adapters["transformer.h.0.mlp.c_fc"].B.shape == (128, 2 * R)
    with torch.no_grad():
        assert (logits(model, ids) - base).abs().max() < 1e-5
    dep, quar = routed_grads(model, lora, ids, [1, 1], [1, 1])
    assert torch.count_nonzero(dep) == 0 and quar.norm() > 0
    perturb(lora)
    with torch.no_grad():
        hooked = logits(model, ids)
        with lora.merged(ablate=False):
            torch.testing.assert_close(logits(model, ids), hooked, atol=1e-5, rtol=1e-5)
        lora.save(tmp_path / "gpt2.safetensors")
        fresh = tiny_gpt2(0)
        BlockLoRA.load_into(fresh, tmp_path / "gpt2.safetensors")
        assert torch.equal(logits(fresh, ids), hooked)


def test_generate_works_with_the_adapter_and_merged_weights():
    model, lora = attached()
    perturb(lora, scale=0.5)
    prompt = random_ids(2, 5)
    kwargs = dict(max_new_tokens=6, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        hooked = model.generate(prompt, **kwargs)
        with lora.merged(ablate=False):
            merged = model.generate(prompt, **kwargs)
    assert torch.equal(hooked, merged)


def test_bench_routing_reports_ratios():
    from vgrout.bench.routing import bench_routing

    lines = bench_routing(batch=4, seq=8, repeats=1, hidden=32, layers=1, r=2, threads=1)
    assert any("plain LoRA" in line for line in lines)
    assert "overhead" in lines[-1] and lines[-1].rstrip().endswith("x")


# -- the fused delta function ---------------------------------------------------------------------


def fused_inputs(seed=0, g=3, t=5, d_in=6, d_out=7, k=4):
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, grad=True):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).requires_grad_(grad)

    x, a, b = rand(g, t, d_in), rand(k, d_in), rand(d_out, k)
    a0, b0 = rand(k, d_in, grad=False), rand(d_out, k, grad=False)
    c = torch.ones(g, 1, k, dtype=torch.float64, requires_grad=True)
    scale = torch.tensor([[1.0, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.float64)
    return x, a, b, a0, b0, c, scale[:, None, :]


def test_fused_delta_backward_is_the_exact_gradient_without_keep():
    from vgrout.adapters.hooks import _BlockDelta

    x, a, b, a0, b0, c, scale = fused_inputs()
    assert torch.autograd.gradcheck(_BlockDelta.apply, (x, a, b, a0, b0, c, scale, None))
    assert torch.autograd.gradcheck(_BlockDelta.apply, (x, a, b, a0, b0, None, None, None))


def test_fused_delta_keep_cuts_only_the_parameter_gradient_of_its_rows():
    """Reference: rows with keep = 0 on the deployed slots see detached deployed parameters."""
    from vgrout.adapters.hooks import _BlockDelta

    x, a, b, a0, b0, c, scale = fused_inputs(seed=1)
    d = torch.tensor([0.0, 0.0, 1.0])[:, None, None]  # rollout 2 is (1, 1): rout
    keep = torch.cat([(1 - d).expand(-1, 1, 2), torch.ones(3, 1, 2, dtype=d.dtype)], -1)
    weights = torch.randn(3, 5, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    fused = _BlockDelta.apply(x, a, b, a0, b0, c, scale, keep.double())
    grads_fused = torch.autograd.grad((fused * weights).sum(), (x, a, b, c))

    def delta(a_, b_):
        h = (x @ a_.T) * c * scale
        return h @ b_.T - ((x @ a0.T) * scale) @ b0.T

    a_cut = torch.cat([a[:2].detach(), a[2:]])
    b_cut = torch.cat([b[:, :2].detach(), b[:, 2:]], 1)
    reference = torch.where(d.bool(), delta(a_cut, b_cut), delta(a, b))
    torch.testing.assert_close(fused, reference)
    grads_ref = torch.autograd.grad((reference * weights).sum(), (x, a, b, c))
    for got, want in zip(grads_fused, grads_ref, strict=True):
        torch.testing.assert_close(got, want)
