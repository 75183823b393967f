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
    from vgrout.rl.baselines import screened_advantages  # the one masked-group centring

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


class _ChunkedTokenLogprobs(torch.autograd.Function):
    """log p(target) of `hidden @ weight.T`, one token chunk at a time, for a frozen `weight`.

    Each token's log-prob depends only on its own hidden state, with d logp / d h = W[target] -
    softmax(h W^T) W. The forward computes that row (one extra matmul per chunk) while the chunk's
    logits are alive, so backward is a per-token scale: no [tokens, vocab] tensor is kept or
    recomputed, and only one chunk's logits exist at a time.
    """

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk, with_grad):
        out = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        jac = torch.empty_like(hidden) if with_grad else None
        for s in range(0, hidden.shape[0], chunk):
            h, t = hidden[s : s + chunk], targets[s : s + chunk]
            logits = F.linear(h, weight).float()  # the model's own matmul, then fp32 like HF's loss
            lse = torch.logsumexp(logits, dim=-1, keepdim=True)
            out[s : s + chunk] = (logits.gather(1, t.unsqueeze(1)) - lse).squeeze(1)
            if with_grad:
                p = logits.sub_(lse).exp_().neg_()  # in place: -softmax
                p.scatter_add_(1, t.unsqueeze(1), torch.ones_like(p[:, :1]))  # onehot - softmax
                jac[s : s + chunk] = (p.to(weight.dtype) @ weight).to(hidden.dtype)
            del logits
        if with_grad:
            ctx.save_for_backward(jac)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (jac,) = ctx.saved_tensors
        return grad_out.unsqueeze(1).to(jac.dtype) * jac, None, None, None, None


def chunked_token_logprobs(hidden: Tensor, weight: Tensor, targets: Tensor, chunk: int) -> Tensor:
    """log p(target) per token from final hidden states [M, H] and an output head [V, H], in fp32.

    Same values and gradient (w.r.t. `hidden`) as `token_logprobs(hidden @ weight.T, targets)`, but
    at most `chunk` tokens' logits exist at once (the full [M, V] fp32 logits of a 151,936-token
    vocabulary are the update's largest tensor at the real scale). The head must be frozen.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1 token, got {chunk}")
    if weight.requires_grad and torch.is_grad_enabled():
        raise ValueError("chunked_token_logprobs needs a frozen output head (weight.requires_grad)")
    with_grad = torch.is_grad_enabled() and hidden.requires_grad
    return _ChunkedTokenLogprobs.apply(hidden, weight, targets, chunk, with_grad)


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
