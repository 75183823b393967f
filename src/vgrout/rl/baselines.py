"""Interventions researchers already use, as pure functions the trainer applies per step.

* `gt_penalty` / `gt_screen` (Ariahw, Engels & Nanda, "Steering RL", 2026): a ground-truth hack
  monitor with an accuracy knob (each label flipped with probability 1 - accuracy). Penalty: the
  flagged rollout's reward drops by `penalty` (3.0 by default, so a paid hack nets 0.5). Screening:
  flagged rollouts are dropped from their group: no gradient and no share in the group baseline.
  Which label the monitor reads is a field: `strict` = the rollout was a paid hack (exploited);
  `loose` = it also counts attempted hacks and correct answers that carry a hack.
* `inoculation` (Wichers et al. 2025, arXiv 2510.05024; MacDiarmid et al. 2025): training prompts
  carry an instruction that frames exploiting the grader as acceptable for this run; evaluation
  prompts do not. The texts below are the project's own, several variants.
* `advantage_mod` (Wu & Tang 2026, "When Reward Hacking Rebounds", arXiv 2604.01476): the direction
  score is folded into the advantage, a penalty proportional to the (standardised, positive part
  of the) score, instead of routing the gradient.
None of these arms has a quarantine: the whole adapter is deployed.
"""

from __future__ import annotations

import torch

from vgrout.env.inoculation import INOCULATION_PROMPTS, inoculate  # noqa: F401  (re-exported)

STRICT_LABELS = frozenset({"reward_hack"})
LOOSE_LABELS = frozenset({"reward_hack", "attempted_hack", "correct_attempted_hack"})


def monitor_flags(
    labels: list[str], *, label_set: str, accuracy: float, generator: torch.Generator
) -> list[bool]:
    """The monitor's verdict per rollout: the true (strict or loose) hack label, each flipped with
    probability 1 - accuracy (symmetric noise, as the benchmark's ground-truth monitor)."""
    if label_set not in ("strict", "loose"):
        raise ValueError(f"monitor label set must be 'strict' or 'loose', got {label_set!r}")
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"monitor accuracy must be in [0, 1], got {accuracy}")
    hacks = STRICT_LABELS if label_set == "strict" else LOOSE_LABELS
    truth = torch.tensor([lab in hacks for lab in labels], dtype=torch.bool)
    flip = torch.rand(len(labels), generator=generator) >= accuracy
    return (truth ^ flip).tolist()


def penalized_rewards(rewards: list[float], flags: list[bool], penalty: float) -> list[float]:
    """gt_penalty: reward - penalty for every flagged rollout."""
    return [r - penalty * f for r, f in zip(rewards, flags, strict=True)]


def screened_advantages(
    rewards: torch.Tensor, keep: torch.Tensor, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """gt_screen: Dr.GRPO advantages over the kept rollouts of each group only.

    rewards, keep: [P, G]. Screened rollouts get advantage 0 and do not enter the group mean; a group
    with fewer than 2 kept rollouts, or no reward variance among them, is skipped.
    Returns (advantages [P, G], group kept [P]).
    """
    keep = keep.bool()
    n = keep.sum(dim=1)
    safe_n = n.clamp(min=1)
    mean = (rewards * keep).sum(dim=1) / safe_n
    big = torch.finfo(rewards.dtype).max
    hi = torch.where(keep, rewards, torch.full_like(rewards, -big)).max(dim=1).values
    lo = torch.where(keep, rewards, torch.full_like(rewards, big)).min(dim=1).values
    group_kept = (n >= 2) & ((hi - lo) > eps)
    adv = (rewards - mean.unsqueeze(1)) * keep * group_kept.unsqueeze(1)
    return adv, group_kept


def modified_advantages(
    advantages: torch.Tensor, scores: torch.Tensor, history: torch.Tensor, coef: float
) -> torch.Tensor:
    """advantage_mod: A - coef * max(z, 0), z = (score - mean) / std over the run's score history
    (this step included). Rollouts that look more hack-like than usual lose advantage; the rest are
    untouched, so the penalty never rewards a rollout for looking clean."""
    if history.numel() < 2:
        return advantages.clone()
    mu, sd = history.mean(), history.std().clamp(min=1e-8)
    z = (scores - mu) / sd
    return advantages - coef * z.clamp(min=0)
