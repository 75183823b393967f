"""The training signal of a step's rows: the monitor's verdict and penalty (gt_penalty /
gt_screen), Dr.GRPO advantages per group, the teacher treatment, and the keep-zone re-centring.
"""

from __future__ import annotations

import torch

from vgrout.config import MONITOR_ARMS, TrainConfig
from vgrout.rl.baselines import monitor_flags, penalized_rewards, screened_advantages
from vgrout.rl.grpo import group_advantages, keep_zone_advantages
from vgrout.rl.rollouts import Rollout, step_seed
from vgrout.routing.gates import GateOutput


def apply_monitor(cfg: TrainConfig, rows: list[Rollout], step: int) -> None:
    """The monitor flags rollouts (gt_penalty, gt_screen and the label arms, which route by the
    flags); the penalty arm lowers the flagged rows' reward. Its own generator: training's random
    stream is untouched, and with accuracy 1 and strict labels a flag is exactly `exploited`."""
    if cfg.arm not in MONITOR_ARMS:
        return
    label_set = cfg.monitor_labels
    if label_set == "auto":
        label_set = "loose" if cfg.arm == "gt_screen" else "strict"
    gen = torch.Generator().manual_seed(step_seed(cfg.seed, step) + 1)
    flags = monitor_flags(
        [r.grade.label for r in rows],
        label_set=label_set,
        accuracy=cfg.monitor_accuracy,
        generator=gen,
    )
    rewards = (
        penalized_rewards([r.reward for r in rows], flags, cfg.penalty)
        if cfg.arm == "gt_penalty"
        else None
    )
    for i, r in enumerate(rows):
        r.flagged = flags[i]
        if rewards is not None:
            r.reward = rewards[i]


def teacher_treatment(cfg: TrainConfig, row: Rollout, advantage: float) -> float:
    """`teacher_importance=drop_negative`: a teacher row is never pushed down."""
    if row.source == "teacher" and cfg.teacher_importance == "drop_negative":
        return max(advantage, 0.0)
    return advantage


def assign_advantages(cfg: TrainConfig, rows: list[Rollout], n_groups: int) -> list[Rollout]:
    """Dr.GRPO advantages per group; returns the rows that train (groups with reward variance,
    or every group with `skip_flat_groups` off; under gt_screen only unflagged rows, with the
    baseline over unflagged rows)."""
    rewards = torch.zeros(n_groups, cfg.group_size)
    keep = torch.zeros(n_groups, cfg.group_size, dtype=torch.bool)
    for g in range(n_groups):
        group = [r for r in rows if r.group == g]
        rewards[g, : len(group)] = torch.tensor([r.reward for r in group])
        keep[g, : len(group)] = torch.tensor(
            [not (cfg.arm == "gt_screen" and r.flagged) for r in group]
        )
    if cfg.arm == "gt_screen":
        adv, kept = screened_advantages(rewards, keep)
    else:
        adv, kept = group_advantages(rewards)
    if not cfg.skip_flat_groups:  # flat groups train too (advantage 0: their KL term only)
        kept = torch.ones_like(kept)
    out = []
    for g in range(n_groups):
        if not kept[g]:
            continue
        for j, r in enumerate(r for r in rows if r.group == g):
            if not keep[g, j]:
                continue
            r.advantage = teacher_treatment(cfg, r, float(adv[g, j]))
            out.append(r)
    return out


def recentre_keep_zone(cfg: TrainConfig, rows: list[Rollout], gate: GateOutput) -> None:
    """`keep_baseline=keep`: keep-zone rows' advantages against their own group's keep-zone mean."""
    adv = keep_zone_advantages(
        torch.tensor([r.reward for r in rows]),
        torch.tensor([r.group for r in rows]),
        ~gate.m.cpu(),
        torch.tensor([r.advantage for r in rows]),
    )
    for r, a in zip(rows, adv.tolist(), strict=True):
        r.advantage = teacher_treatment(cfg, r, a)
