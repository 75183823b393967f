"""`vgrout bench trl`: the toy `none` step against TRL's GRPOTrainer at equal model and batch.

Both sides: the toy base (fp32, CPU), 4 prompts x 8 completions x <= 64 new tokens sampled at the
toy's temperature, rewards from the same sandboxed grader, Dr.GRPO loss with the toy's KL weight to
the base (adapter disabled), a LoRA of the deployed block's rank on the same projections, gradient
checkpointing off, one update per batch. Equal work: vgrout injects no teacher rows here (TRL has
none), so both generate every completion, and it trains every row as TRL does
(`skip_flat_groups=false`; by default vgrout skips the backward of groups with no reward
variance, which would make it faster still). Steps are interleaved: a TrainerCallback runs one
vgrout step after each TRL step, so machine noise hits both alike. The last line is the ratio of
the median step times none / TRL (target <= 0.8), with the quartiles of the per-pair ratios.
Needs the optional extra: `pip install 'vgrout[bench]'`.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from vgrout.presets import load_preset

TARGET = 0.8
BATCH = [
    "prompts_per_step=4", "group_size=8", "max_new_tokens=64", "teacher_per_group=0",
    "skip_flat_groups=false",
]  # fmt: skip


def bench_trl(steps: int = 8, warmup: int = 1, overrides: tuple[str, ...] = ()) -> list[str]:
    try:
        import trl
        from datasets import Dataset
        from peft import LoraConfig
        from transformers import TrainerCallback
    except ImportError as e:
        raise SystemExit(
            f"vgrout bench trl needs TRL ({e.name} is missing): pip install 'vgrout[bench]'"
        ) from e
    import torch

    from vgrout.env.grader import grade_many
    from vgrout.env.sandbox import SandboxPool
    from vgrout.rl import components
    from vgrout.rl.rollouts import training_question
    from vgrout.rl.run import build_run
    from vgrout.rl.train import training_step

    cfg = load_preset("toy").override([*BATCH, *overrides, "arm=none"]).validate()
    if cfg.model != "toy":
        raise ValueError("bench trl compares the toy preset (model=toy)")
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, SandboxPool() as pool:
        run = build_run(cfg, Path(tmp) / "none")
        items = run.env.train
        model, tokenizer, _ = components.load_model(cfg, "cpu", torch.float32)
        prompts = [run.policy.render_text(training_question(cfg, it)) for it in items]
        dataset = Dataset.from_dict({"prompt": prompts, "idx": list(range(len(items)))})

        def reward(completions, idx, **_):
            picked = [items[i] for i in idx]
            grades = grade_many(
                [it.problem for it in picked], list(completions), [it.mode for it in picked],
                [it.markers for it in picked], pool=pool,
            )  # fmt: skip
            return [g.reward for g in grades]

        trl_seconds: list[float] = []
        vg_seconds: list[float] = []
        kept: list[float] = []

        class Interleave(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                self.t0 = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                if state.global_step <= warmup:  # both sides warm up on their first steps
                    training_step(run, state.global_step - 1, pool)
                    return
                trl_seconds.append(time.perf_counter() - self.t0)
                t0 = time.perf_counter()
                _, rows_kept, *_ = training_step(run, state.global_step - 1, pool)
                vg_seconds.append(time.perf_counter() - t0)
                kept.append(len(rows_kept) / (cfg.prompts_per_step * cfg.group_size))

        args = trl.GRPOConfig(
            output_dir=str(Path(tmp) / "trl"), num_generations=cfg.group_size,
            per_device_train_batch_size=cfg.prompts_per_step * cfg.group_size,
            max_completion_length=cfg.max_new_tokens,
            temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k, loss_type="dr_grpo",
            scale_rewards="none", beta=cfg.kl_beta, epsilon=cfg.clip_eps, learning_rate=cfg.lr,
            gradient_checkpointing=False, bf16=False, use_cpu=True, max_steps=warmup + steps,
            report_to="none", save_strategy="no", logging_steps=10_000, seed=cfg.seed,
            generation_kwargs={"use_cache": True}, dataloader_num_workers=0, disable_tqdm=True,
        )  # fmt: skip
        # TRL defaults checkpointing on (slower on CPU); transformers 5.24 renamed the field
        assert not getattr(args, "activation_checkpointing", args.gradient_checkpointing)
        lora = LoraConfig(r=cfg.rank, lora_alpha=2 * cfg.rank, target_modules=list(cfg.targets))
        trainer = trl.GRPOTrainer(
            model=model, reward_funcs=reward, args=args, train_dataset=dataset,
            processing_class=tokenizer, peft_config=lora, callbacks=[Interleave()],
        )  # fmt: skip
        trainer.train()

    trl_med, vg_med = statistics.median(trl_seconds), statistics.median(vg_seconds)
    pairs = sorted(v / t for v, t in zip(vg_seconds, trl_seconds, strict=True))
    q1, _, q3 = statistics.quantiles(pairs, n=4) if len(pairs) > 1 else (pairs[0],) * 3
    lines += [
        f"toy base, {cfg.prompts_per_step} prompts x {cfg.group_size} completions x <= "
        f"{cfg.max_new_tokens} tokens, fp32, LoRA r={cfg.rank}, dr_grpo, beta {cfg.kl_beta}; "
        f"{steps} timed steps each, interleaved, after {warmup} warm-up (trl {trl.__version__})",
        f"TRL GRPOTrainer {trl_med:.3f} s/step (median; min {min(trl_seconds):.3f})",
        f"vgrout none     {vg_med:.3f} s/step (median; min {min(vg_seconds):.3f}; "
        f"{statistics.fmean(kept):.0%} of rows trained, as TRL)",
        f"none/TRL = {vg_med / trl_med:.2f}x (target <= {TARGET}; per-step pairs: quartiles "
        f"{q1:.2f}-{q3:.2f}x)",
    ]
    for line in lines:
        print(line)
    return lines
