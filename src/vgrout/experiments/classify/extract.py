"""From a run to feature arrays (the model side): which logged rollouts are read, their token ids
rebuilt from the logged text, the pair sides (authored or written by the model itself), and the
one forward + backward per micro-batch that reads every site.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_REQUIRED_COLUMNS = ("step", "problem_id", "mode", "source", "advantage", "exploited", "completion")


def residual_layer_index(model, layer: int | None) -> int:
    """The `hidden_states` index read at the residual site: layer L // 2 unless `layer` is given."""
    n_layers = int(model.config.num_hidden_layers)
    layer = max(1, n_layers // 2) if layer is None else int(layer)  # index 0 = the embeddings
    if not 0 <= layer <= n_layers:
        raise ValueError(
            f"residual_layer must be in [0, {n_layers}] (hidden_states index); got {layer}"
        )
    return layer


def extract_features(
    policy,
    sides: Sequence[tuple[list[int], list[int]]],
    *,
    state: str,
    residual_layer: int,
    batch_size: int,
) -> dict[str, np.ndarray]:
    """Raw site features of (prompt ids, completion ids) rows: one forward (hidden states,
    captured A[:r] x) + one backward (c-probe) per micro-batch, in model state `state`.

    Returns {"residual": [N, d], "cgrad": [N, M, r], "ax": [N, M, r]} as float64 arrays
    (bax is derived from ax by `bax_features`).
    """
    import torch

    from vgrout.rl.grpo import token_logprobs
    from vgrout.rl.policy import make_batch

    model, adapter, r = policy.model, policy.adapter, policy.adapter.r
    out: dict[str, list] = {"residual": [], "cgrad": [], "ax": []}
    # Similar lengths share a micro-batch (less padding); results go back to input order.
    order = sorted(range(len(sides)), key=lambda i: (len(sides[i][0]), len(sides[i][1])))
    params = adapter.parameters()
    needs_grad = [p.requires_grad for p in params]
    was_training = model.training
    model.eval()
    try:
        # Only the c-probe leaves need gradients: frozen A, B skip their weight-gradient matmuls
        # (the flags are restored below; nothing else about the adapter changes).
        for p in params:
            p.requires_grad_(False)
        for start in range(0, len(order), batch_size):
            chunk = [sides[i] for i in order[start : start + batch_size]]
            batch = make_batch(
                [p for p, _ in chunk], [c for _, c in chunk], policy.pad_id, policy.device
            )
            pool_mask = batch.input_completion_mask
            with (
                torch.enable_grad(),
                policy.state(state),
                adapter.c_probe() as probe,
                adapter.capture_bottleneck(pool_mask) as cap,
            ):
                res = model(
                    input_ids=batch.input_ids,
                    attention_mask=batch.attention_mask,
                    position_ids=batch.position_ids,
                    logits_to_keep=batch.completion_ids.shape[1] + 1,
                    use_cache=False,
                    output_hidden_states=True,
                )
                logp = (
                    token_logprobs(res.logits[:, :-1], batch.completion_ids) * batch.completion_mask
                )
                nll = -(logp.sum(1) / batch.completion_mask.sum(1))  # mean completion NLL per row
                hidden = res.hidden_states[residual_layer].detach().float()
                grads = probe.grads(nll.sum())[:, :, :r]  # rows never interact: per-row grads
            weights = pool_mask.float()
            pooled = (hidden * weights[..., None]).sum(1) / weights.sum(1, keepdim=True)
            out["residual"].append(pooled.double().cpu().numpy())
            out["cgrad"].append(grads.double().cpu().numpy())
            out["ax"].append(cap.pooled.double().cpu().numpy())
    finally:
        for p, flag in zip(params, needs_grad, strict=True):
            p.requires_grad_(flag)
        model.train(was_training)
    inverse = np.argsort(np.asarray(order, dtype=np.int64))
    return {k: np.concatenate(v)[inverse] for k, v in out.items()}


def bax_reduction(adapter) -> list[tuple[np.ndarray, int]]:
    """Per module (sorted order): (T = S V^T [k, r], d_out) from the thin SVD of the deployed
    B[:, :r] = U S V^T, so that B[:, :r] p = U (T p) with U orthonormal (module docstring)."""
    import torch

    out = []
    for name in adapter.module_names:
        b = adapter.adapters[name].B[:, : adapter.r].detach().double().cpu()
        _, s, vh = torch.linalg.svd(b, full_matrices=False)
        out.append(((s[:, None] * vh).numpy(), int(b.shape[0])))
    return out


def rollout_sides(policy, cfg, items_by_id: dict, rows: list[dict]) -> tuple[list, int]:
    """(prompt ids, completion ids) per logged rollout, and how many re-tokenised completions
    differ in length from the logged `n_tokens`."""
    from vgrout.rl.rollouts import training_question

    prompt_cache: dict[str, list[int]] = {}
    sides, mismatched = [], 0
    for row in rows:
        pid = str(row["problem_id"])
        item = items_by_id.get(pid)
        if item is None:
            raise ValueError(
                f"rollout problem {pid!r} is not among the run's training items: the problem set or "
                "config.json differs from the one the run trained with"
            )
        if item.mode != row["mode"]:
            raise ValueError(
                f"rollout of {pid!r} was logged with mode {row['mode']!r} but the rebuilt item has "
                f"{item.mode!r}: the mode partition differs from the run's (seed or modes changed?)"
            )
        if pid not in prompt_cache:
            prompt_cache[pid] = policy.prompt_ids(training_question(cfg, item))
        logged = row.get("n_tokens")
        if row["source"] == "teacher":  # as injected: truncated, always ending with EOS
            ids = policy.completion_ids(row["completion"], cfg.teacher_max_tokens)
        else:
            ids = [
                int(i)
                for i in policy.tokenizer(row["completion"], add_special_tokens=False)["input_ids"]
            ]
            # A sample ends with EOS unless it was cut at max_new_tokens; the decoded text lost
            # the EOS, so the logged count says which (exactly when the text round-trips).
            if (
                logged is None
                or int(logged) < cfg.max_new_tokens
                or len(ids) < int(logged)
                or not ids
            ):
                ids = ids + [policy.eos_id]
        if logged is not None and len(ids) != int(logged):
            mismatched += 1
        sides.append((prompt_cache[pid], ids))
    return sides, mismatched


def pair_sides(policy, pairs) -> tuple[list, list]:
    """(hack sides, clean sides) as (prompt ids, completion ids), encoded as `directions` does."""
    from vgrout.routing.directions import encode_side

    def side(prompt: str, completion: str):
        ids, start = encode_side(policy.tokenizer, policy.render_text(prompt), completion)
        return ids[:start], ids[start:]

    hack = [side(p.hack_side_prompt, p.hack) for p in pairs]
    clean = [side(p.clean_side_prompt, p.clean) for p in pairs]
    return hack, clean


def _policy_sampler(policy, state: str):
    """A `self_generated.GenerateFn` on the policy's batched generation (merged weights, seeded)."""
    import torch

    from vgrout.rl.policy import SamplingParams

    def generate(prompts: list[str], max_new_tokens: int, seed: int) -> list[str]:
        ids = [policy.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        params = SamplingParams(max_new_tokens, temperature=0.7, top_p=0.95, top_k=20)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = policy.generate(ids, params, state=state)
        return [policy.decode(c) for c in out]

    return generate


def make_self_generated_pairs(run, n: int, seed: int, state: str):
    """(PairSet, None) or (None, reason) for the self-generated source."""
    from vgrout.env.modes import HACKABLE_MODES
    from vgrout.routing.self_generated import self_generate_pairs

    modes = [m for m in run.cfg.modes if m in HACKABLE_MODES]
    if not modes:
        return None, "the run has no hackable mode to motivate"
    problems = [it.problem for it in run.env.train]
    rng = np.random.default_rng([seed, 11])
    picks = rng.choice(len(problems), size=min(len(problems), 4 * n), replace=False)
    try:
        pairs = self_generate_pairs(
            run.policy.model, run.policy.tokenizer, [problems[int(i)] for i in sorted(picks)],
            modes, n, seed, run.cfg.max_new_tokens, adapter=None,
            render=run.policy.render_text, generate=_policy_sampler(run.policy, state),
        )  # fmt: skip
    except ValueError as e:
        return None, f"the model produced no usable pair ({e})"
    return pairs, None


def select_rollouts(
    rows: list[dict], *, students_only: bool, min_step: int, max_rollouts: int, seed: int
) -> list[dict]:
    """Filter (students, step >= min_step) and take a seeded subsample, in logged order."""
    if rows:
        missing = [c for c in _REQUIRED_COLUMNS if c not in rows[0]]
        if missing:
            raise ValueError(
                f"rollouts.parquet lacks column(s) {missing}; was it written by vgrout train?"
            )
    chosen = [
        r for r in rows if (not students_only or r["source"] == "student") and r["step"] >= min_step
    ]
    if len(chosen) > max_rollouts:
        rng = np.random.default_rng([seed, 3])
        keep = sorted(rng.choice(len(chosen), size=max_rollouts, replace=False).tolist())
        chosen = [chosen[i] for i in keep]
    return chosen
