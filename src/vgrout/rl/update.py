"""The policy update of a step: which model state each row trains in, the sampler's log-probs
where they differ, the masked forward/backward of the Dr.GRPO objective, and the optimizer step
(lr schedule, clipping, AdamW, decay toward init).
"""

from __future__ import annotations

import contextlib

import torch

from vgrout.config import TrainConfig
from vgrout.rl.grpo import grpo_loss, lr_factor
from vgrout.rl.policy import (
    Batch,
    Policy,
    completion_logprobs,
    micro_batch_rows,
    shared_prompt_logprobs,
)
from vgrout.rl.rollouts import Rollout
from vgrout.routing.gates import GateOutput, qmass


def train_states(gate: GateOutput, n: int) -> list[str]:
    """The model state each row's training forward runs in: keep-zone rows (m=0) see the deployed
    model; all others the full model."""
    if gate.m is None:
        return ["full"] * n
    return ["deployed" if not bool(m) else "full" for m in gate.m]


def old_logprobs(
    policy: Policy,
    batch: Batch,
    rows: list[Rollout],
    states: list[str],
    micro: int,
    share_prompts: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs of the policy that sampled each row, where it differs from the training forward.

    Returns (logp_old [N, Lc], needs [N] bool). Rows whose sampler state equals their training
    state (and teacher rows: `on_policy` treatment) use the training forward's own detached
    log-probs, i.e. ratio 1, so they are not recomputed here.
    """
    n, lc = batch.completion_ids.shape
    logp_old = torch.zeros(n, lc, device=batch.input_ids.device)
    needs = torch.tensor(
        [r.source == "student" and r.sampled != s for r, s in zip(rows, states, strict=True)]
    )
    for state in ("full", "deployed"):
        idx = torch.nonzero(needs & torch.tensor([r.sampled == state for r in rows])).flatten()
        if idx.numel() == 0:  # split() of an empty index still yields one empty chunk
            continue
        for chunk in idx.split(micro):
            logp_old[chunk] = policy.logprobs(
                batch.rows(chunk), state=state, share_prompts=share_prompts
            )
    return logp_old, needs


def policy_update(
    cfg: TrainConfig,
    policy: Policy,
    batch: Batch,
    rows: list[Rollout],
    gate: GateOutput,
    logp_old,
    needs,
    micro: int | None = None,
) -> dict:
    """Masked forward/backward of the Dr.GRPO objective, in micro-batches of `micro` rows (None:
    `micro_batch_rows` of the config); grads accumulate."""
    adapter, model = policy.adapter, policy.model
    adv = torch.tensor([r.advantage for r in rows], device=batch.input_ids.device)
    normalizer = float(cfg.prompts_per_step * cfg.group_size * cfg.max_new_tokens)
    stats = {"loss": 0.0, "clipfrac": 0.0, "kl": 0.0}
    n = len(rows)
    micro = micro or micro_batch_rows(cfg.micro_batch, model, batch)
    share = cfg.share_prompt_forward
    for chunk in torch.arange(n).split(micro):
        sub = batch.rows(chunk)
        ref = policy.logprobs(sub, state="base", share_prompts=share) if cfg.kl_beta > 0 else None
        if gate.m is None:
            keys, route = None, None
        else:  # a row's prompt runs in its own route masks: rows share it only with equal masks
            m, d = gate.m[chunk], gate.d[chunk]
            keys = list(zip(m.tolist(), d.tolist(), strict=True))
            route = lambda index, m=m, d=d: adapter.route(m[index], d[index])  # noqa: E731
        if share:
            logp = shared_prompt_logprobs(model, sub, keys, route)
        else:
            with route(torch.arange(len(chunk))) if route else contextlib.nullcontext():
                logp = completion_logprobs(model, sub)
        old = torch.where(needs[chunk].unsqueeze(1).to(logp.device), logp_old[chunk], logp.detach())
        loss, st = grpo_loss(
            logp, old, ref, adv[chunk], sub.completion_mask,
            clip_eps=cfg.clip_eps, kl_beta=cfg.kl_beta, normalizer=normalizer,
        )  # fmt: skip
        loss.backward()
        w = len(chunk) / n
        stats["loss"] += float(loss.detach())
        stats["clipfrac"] += st["clipfrac"] * w
        stats["kl"] += st["kl"] * w
    return stats


def set_lr(cfg: TrainConfig, opt, step: int) -> float:
    """The lr of `step` is a pure function of the step (nothing to restore on resume)."""
    lr = cfg.lr * lr_factor(step, cfg.steps, cfg.warmup_steps, cfg.min_lr_ratio)
    for group in opt.param_groups:
        group["lr"] = lr
    return lr


def optimizer_step(cfg: TrainConfig, adapter, opt) -> dict:
    deployed_norm, quarantine_norm = adapter.block_grad_norms()
    grad_norm = torch.nn.utils.clip_grad_norm_(adapter.parameters(), cfg.grad_clip)
    lr_now = opt.param_groups[0]["lr"]
    opt.step()
    adapter.decay_toward_init(lr_now, cfg.decay_to_init)
    opt.zero_grad(set_to_none=True)
    return {
        "grad_norm": float(grad_norm),
        "qmass": qmass(deployed_norm, quarantine_norm),
        "lr": lr_now,
    }
