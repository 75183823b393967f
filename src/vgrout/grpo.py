"""Dr.GRPO as pure functions: advantages, the clipped surrogate, the k3 KL, the lr schedule.

Dr.GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training: A Critical Perspective",
arXiv 2503.20783) removes two biases of GRPO: advantages are NOT divided by the group's reward std,
and the loss is divided by a constant rather than by each sequence's length. Both matter for
routing: a constant normaliser keeps every rollout's contribution independent of which other
rollouts share its (micro)batch or zone.

Shapes: P prompts x G rollouts per group; per-token tensors are [N, T] with N = rows, T = completion
positions, and a float `token_mask` [N, T] that is 1 on real completion tokens.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def group_advantages(rewards: Tensor, eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Dr.GRPO advantages: r - mean(r) within each group, no std scaling.

    rewards: [P, G]. Returns (advantages [P, G], kept [P] bool). Groups whose rewards are all equal
    carry no learning signal and are skipped (kept=False, advantages 0).
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [prompts, group], got shape {tuple(rewards.shape)}")
    adv = rewards - rewards.mean(dim=1, keepdim=True)
    kept = (rewards.max(dim=1).values - rewards.min(dim=1).values) > eps
    return adv * kept.unsqueeze(1), kept


def keep_zone_advantages(
    rewards: Tensor, groups: Tensor, keep: Tensor, advantages: Tensor, eps: float = 1e-6
) -> Tensor:
    """Advantages with the keep-zone rows re-centred on their own group's keep-zone mean.

    rewards, groups, keep, advantages: [N] (per row). Rows routed elsewhere keep `advantages`.
    With the whole-group baseline, a routed hack row that scores high lifts the group mean, so
    the group's clean rows get negative advantages that train the deployed block (alone) away
    from clean answers, i.e. towards the hack the base already knows: a leak around the router.
    Centring the keep rows on their own mean removes it; a group whose keep rows all score the
    same gives them advantage 0.
    """
    from vgrout.baselines import screened_advantages  # the one masked-group centring

    # lay the rows out as [groups, slots] (slot = rank within the group) and centre over `keep`
    _, group = torch.unique(groups, return_inverse=True)
    onehot = torch.nn.functional.one_hot(group)
    slot = (onehot.cumsum(0) * onehot).sum(1) - 1
    shape = (onehot.shape[1], int(slot.max()) + 1)
    grid = torch.zeros(shape, dtype=rewards.dtype).index_put((group, slot), rewards)
    mask = torch.zeros(shape, dtype=torch.bool).index_put((group, slot), keep.bool())
    centred, _ = screened_advantages(grid, mask, eps)
    return torch.where(keep.bool(), centred[group, slot], advantages)


def token_logprobs(logits: Tensor, targets: Tensor) -> Tensor:
    """log p(target) per position from logits [N, T, V] and targets [N, T], in fp32.

    Uses cross_entropy (fused log-softmax + gather) so no [N, T, V] fp32 log-softmax is kept.
    """
    n, t, v = logits.shape
    nll = F.cross_entropy(
        logits.reshape(n * t, v).float(), targets.reshape(n * t), reduction="none"
    )
    return -nll.view(n, t)


def clipped_surrogate(
    logp: Tensor, logp_old: Tensor, advantages: Tensor, clip_eps: float
) -> tuple[Tensor, Tensor]:
    """PPO-clipped per-token loss -min(rho*A, clip(rho)*A) and the per-token clipped indicator.

    advantages: [N] (one per rollout), broadcast over tokens. rho = exp(logp - logp_old) is the
    ratio to the policy that sampled the row; with one update per batch it is 1 in value for
    on-policy rows (the gradient is still that of the policy-gradient objective).
    """
    ratio = torch.exp(logp - logp_old)
    adv = advantages.unsqueeze(-1)
    unclipped = ratio * adv
    clipped = ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * adv
    loss = -torch.minimum(unclipped, clipped)
    was_clipped = (unclipped != torch.minimum(unclipped, clipped)).float()
    return loss, was_clipped


def k3_kl(logp: Tensor, logp_ref: Tensor) -> Tensor:
    """Schulman's k3 estimator of KL(pi || ref) per token: exp(d) - d - 1 with d = logp_ref - logp.

    Non-negative and unbiased for samples from pi; low variance when pi is close to ref.
    """
    d = logp_ref - logp
    return torch.exp(d) - d - 1.0


def grpo_loss(
    logp: Tensor,
    logp_old: Tensor,
    logp_ref: Tensor | None,
    advantages: Tensor,
    token_mask: Tensor,
    *,
    clip_eps: float,
    kl_beta: float,
    normalizer: float,
) -> tuple[Tensor, dict[str, float]]:
    """The Dr.GRPO objective for a batch of rows, summed over tokens / a constant `normalizer`.

    The normaliser is a constant for the whole step (rows per step x max completion tokens), NOT the
    number of tokens in this batch: splitting a step into micro-batches then gives exactly the same
    gradient, and a long completion is not down-weighted per token (Dr.GRPO).
    """
    if normalizer <= 0:
        raise ValueError(f"normalizer must be positive, got {normalizer}")
    per_token, was_clipped = clipped_surrogate(logp, logp_old, advantages, clip_eps)
    kl = torch.zeros_like(per_token)
    if kl_beta > 0:
        if logp_ref is None:
            raise ValueError("kl_beta > 0 needs reference log-probs (logp_ref)")
        kl = k3_kl(logp, logp_ref)
        per_token = per_token + kl_beta * kl
    loss = (per_token * token_mask).sum() / normalizer
    n_tok = token_mask.sum().clamp(min=1.0)
    stats = {
        "clipfrac": float((was_clipped * token_mask).sum() / n_tok),
        "kl": float((kl.detach() * token_mask).sum() / n_tok),
        "ratio": float((torch.exp(logp - logp_old).detach() * token_mask).sum() / n_tok),
    }
    return loss, stats


def lr_factor(step: int, total_steps: int, warmup_steps: int, min_ratio: float = 0.0) -> float:
    """Linear warmup then cosine decay, as a multiplier of the base lr for 0-based `step`.

    Neither end wastes a step at lr = 0: warmup starts at 1/warmup (the predecessor ran step 0 at
    lr = 0) and the cosine would reach `min_ratio` one step after the last one.
    """
    if total_steps <= 0:
        raise ValueError("total_steps must be positive")
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
