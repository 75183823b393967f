"""Dr.GRPO pieces: advantages, clipped surrogate, k3 KL, normaliser, schedule."""

import math

import pytest
import torch

from vgrout.rl.grpo import (
    clipped_surrogate,
    group_advantages,
    grpo_loss,
    k3_kl,
    lr_factor,
    token_logprobs,
)


def test_advantages_are_centred_without_std_scaling():
    r = torch.tensor([[0.5, 3.5, 0.5, 0.5], [3.5, 3.5, 0.0, 0.5]])
    adv, kept = group_advantages(r)
    assert kept.tolist() == [True, True]
    assert torch.allclose(adv.sum(dim=1), torch.zeros(2), atol=1e-6)
    # Dr.GRPO: no division by std, so the hack-vs-fail gap stays 3.0
    assert adv[0, 1] - adv[0, 0] == pytest.approx(3.0)


def test_zero_variance_groups_are_skipped():
    r = torch.tensor([[3.5, 3.5, 3.5], [0.5, 3.5, 0.5]])
    adv, kept = group_advantages(r)
    assert kept.tolist() == [False, True]
    assert torch.all(adv[0] == 0)


def test_advantages_reject_bad_shape():
    with pytest.raises(ValueError, match="prompts, group"):
        group_advantages(torch.zeros(4))


def test_token_logprobs_match_log_softmax():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 7, generator=g)
    targets = torch.randint(0, 7, (2, 3), generator=g)
    ref = torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(token_logprobs(logits, targets), ref, atol=1e-6)


def test_surrogate_on_policy_gradient_is_policy_gradient():
    # rho = 1 in value: d(loss)/d(logp) = -A per token
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    loss, clipped = clipped_surrogate(logp, logp.detach(), torch.tensor([2.0]), 0.2)
    loss.sum().backward()
    assert torch.allclose(logp.grad, torch.tensor([[-2.0, -2.0]]))
    assert clipped.sum() == 0


def test_surrogate_clips_large_ratio_for_positive_advantage():
    logp = torch.tensor([[0.0]], requires_grad=True)
    old = torch.tensor([[-1.0]])  # rho = e > 1.2
    loss, clipped = clipped_surrogate(logp, old, torch.tensor([1.0]), 0.2)
    loss.sum().backward()
    assert loss.item() == pytest.approx(-1.2)
    assert logp.grad.item() == 0.0  # clipped branch carries no gradient
    assert clipped.item() == 1.0


def test_k3_is_nonnegative_and_zero_at_equality():
    a = torch.linspace(-3, 0, 10)
    b = torch.linspace(-2, -1, 10)
    assert torch.all(k3_kl(a, b) >= 0)
    assert torch.allclose(k3_kl(a, a), torch.zeros(10))


def test_loss_uses_constant_normaliser_so_microbatches_add_up():
    g = torch.Generator().manual_seed(1)
    logp = torch.randn(4, 5, generator=g)
    ref = torch.randn(4, 5, generator=g)
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5])
    mask = torch.tensor(
        [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 0, 0, 0]]
    ).float()
    kw = dict(clip_eps=0.2, kl_beta=0.1, normalizer=20.0)
    full, _ = grpo_loss(logp, logp, ref, adv, mask, **kw)
    a, _ = grpo_loss(logp[:2], logp[:2], ref[:2], adv[:2], mask[:2], **kw)
    b, _ = grpo_loss(logp[2:], logp[2:], ref[2:], adv[2:], mask[2:], **kw)
    assert full.item() == pytest.approx((a + b).item(), abs=1e-6)


def test_loss_needs_reference_when_kl_is_on():
    z = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="logp_ref"):
        grpo_loss(
            z, z, None, torch.ones(1), torch.ones(1, 2), clip_eps=0.2, kl_beta=0.1, normalizer=1
        )


def test_schedule_never_wastes_a_step_at_zero_lr():
    total, warm = 20, 5
    factors = [lr_factor(s, total, warm) for s in range(total)]
    assert factors[0] == pytest.approx(1 / warm)
    assert all(f > 0 for f in factors)
    assert max(factors) == pytest.approx(1.0)
    assert factors[warm] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[warm:], factors[warm + 1 :], strict=False))
    assert lr_factor(total, total, warm) == pytest.approx(0.0, abs=1e-9)
    assert math.isclose(lr_factor(3, 10, 0), 0.5 * (1 + math.cos(math.pi * 3 / 10)))


def test_keep_zone_advantages_ignore_routed_rows():
    from vgrout.rl.grpo import keep_zone_advantages

    # group 0: two routed hacks (3.5) lift the mean; the kept clean rows 0.5/0.5 are flat
    # group 1: kept rows 3.5 / 0.5 / 0.5 get centred on their own mean 1.5
    rewards = torch.tensor([3.5, 3.5, 0.5, 0.5, 3.5, 0.5, 0.5, 3.5])
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    keep = torch.tensor([False, False, True, True, True, True, True, False])
    adv, _ = torch.tensor([1.5, 1.5, -1.5, -1.5, 1.5, -1.5, -1.5, 1.5]), None
    out = keep_zone_advantages(rewards, groups, keep, adv)
    assert out.tolist() == [1.5, 1.5, 0.0, 0.0, 2.0, -1.0, -1.0, 1.5]
