"""GRPO with gradient routing, top to bottom.

One step:
  1. pick prompts (seeded by (seed, step));  2. sample G rollouts per prompt (a share from the
  deployed model), inject cached teacher hacks early on;  3. grade every rollout in the sandbox;
  4. Dr.GRPO advantages, skip zero-variance groups;  5. the gate (the arm) gives each rollout a
  zone -> masks (m, d);  6. masked forward/backward of the clipped objective + KL to the base;
  7. clip, AdamW, decay toward init;  8. re-extract the direction every N steps;  9. log,
  evaluate, checkpoint.
Every random draw of step s is seeded from (seed, s), so a resumed run replays exactly what an
uninterrupted one would have done. Labels reach the gate only in arms that route by labels.

The pieces the loop calls: `rollouts` (prompts, student and teacher rows, grading), `advantages`
(monitor, Dr.GRPO advantages), `update` (masked forward/backward, optimizer step), `metrics` (what
a step logs), `run` (building a run from its config), `checkpoint` (save, load, resume) and
`run_eval` (periodic and final evaluation).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from vgrout.config import LABEL_ARMS, TrainConfig
from vgrout.env.sandbox import SandboxPool
from vgrout.rl import components
from vgrout.rl.advantages import apply_monitor, assign_advantages, recentre_keep_zone
from vgrout.rl.baselines import modified_advantages
from vgrout.rl.checkpoint import restore_latest, save_checkpoint
from vgrout.rl.metrics import PhaseClock, progress_bar, rollout_records, step_metrics
from vgrout.rl.policy import make_batch, micro_batch_rows
from vgrout.rl.rollouts import (
    BackgroundGrader,
    grade_rollouts,
    grade_while_decoding,
    pick_prompts,
    sample_rollouts,
    step_seed,
    teacher_rollouts,
)
from vgrout.rl.run import Run, base_identity, build_run
from vgrout.rl.run_eval import final_evaluation, periodic_eval
from vgrout.rl.update import (
    old_logprobs,
    optimizer_step,
    policy_update,
    set_lr,
    train_states,
)
from vgrout.runfolder import RunFolder


def training_step(run: Run, step: int, pool):
    """One GRPO update. Every random draw is seeded from (seed, step). The phase seconds
    (`time_generate`, ... see PHASES) are returned among the update's metrics."""
    cfg = run.cfg
    clock = PhaseClock(run.policy.device)
    rng = np.random.default_rng([cfg.seed, step])
    torch.manual_seed(step_seed(cfg.seed, step))
    set_lr(cfg, run.opt, step)

    items = pick_prompts(cfg, run.env.train, run.teacher, step, rng)
    overlap = grade_while_decoding(run.policy.device)
    with BackgroundGrader(lambda rows: grade_rollouts(rows, pool)) as grader:
        with clock("generate"):  # with `overlap`, each row is graded as soon as it ends
            students = sample_rollouts(
                cfg, run.policy, items, run.teacher, step, grader.submit if overlap else None
            )
        with clock("grade"):  # what grading remains; teachers are built from graded students
            grader.wait()
            if not overlap:
                grade_rollouts(students, pool)
            teachers = teacher_rollouts(cfg, run.policy, items, students, run.teacher, step, rng)
            grade_rollouts(teachers, pool)
    rows = sorted(students + teachers, key=lambda r: r.group)  # stable: students then teachers
    apply_monitor(cfg, rows, step)
    kept = assign_advantages(cfg, rows, len(items))

    gate, scores, upd = None, None, {"loss": 0.0, "qmass": float("nan")}
    if kept:
        with clock("gate"):
            batch = make_batch(
                [r.prompt_ids for r in kept],
                [r.completion_ids for r in kept],
                run.policy.pad_id,
                run.policy.device,
            )
            labels = [r.flagged for r in kept] if cfg.arm in LABEL_ARMS else None  # monitor
            gate, scores = run.router.gate(batch, labels=labels, step=step)
            if cfg.arm == "advantage_mod":
                adv = modified_advantages(
                    torch.tensor([r.advantage for r in kept]),
                    scores.cpu(),
                    run.router.score_history,
                    cfg.advantage_mod_coef,
                )
                for r, a in zip(kept, adv.tolist(), strict=True):
                    r.advantage = a
            if cfg.keep_baseline == "keep" and gate.m is not None:
                recentre_keep_zone(cfg, kept, gate)
        with clock("update"):  # old log-probs where needed, masked forward/backward, AdamW
            states = train_states(gate, len(kept))
            micro = micro_batch_rows(cfg.micro_batch, run.policy.model, batch)
            logp_old, needs = old_logprobs(
                run.policy, batch, kept, states, micro, cfg.share_prompt_forward
            )
            upd = policy_update(cfg, run.policy, batch, kept, gate, logp_old, needs, micro)
            upd.update(optimizer_step(cfg, run.policy.adapter, run.opt))
    with clock("refresh"):
        run.router.maybe_refresh(step)
    return rows, kept, gate, scores, {**upd, **clock.metrics()}


def train(cfg: TrainConfig, out: Path, *, resume: bool = False, progress: bool = True) -> dict:
    t_start = time.time()
    if not resume:
        RunFolder(Path(out)).ensure_new()
    run = build_run(cfg, Path(out))
    folder = run.folder
    start, rollouts = 0, []
    if resume:
        start, rollouts = restore_latest(run)
    else:
        folder.create(cfg.to_json())
        folder.write_json(folder.root / "base.json", base_identity(run.policy.model))

    workers = cfg.grader_workers or None
    with (
        SandboxPool(workers, hide_paths=components.sandbox_hide_paths(cfg)) as pool,
        progress_bar(progress, cfg, start) as bar,
    ):
        if start == 0:
            periodic_eval(run, 0, pool)
        for step in range(start, cfg.steps):
            t0 = time.perf_counter()
            rows, kept, gate, scores, upd = training_step(run, step, pool)
            rollouts += rollout_records(step, rows, {id(r) for r in kept}, gate, scores)
            metrics = step_metrics(step, rows, kept, gate, scores, upd, time.perf_counter() - t0)
            folder.append(folder.metrics, metrics)
            bar.update(metrics)

            done = step + 1
            if cfg.eval_every and done % cfg.eval_every == 0 and done < cfg.steps:
                periodic_eval(run, done, pool)
            if done % cfg.checkpoint_every == 0 or done == cfg.steps:
                save_checkpoint(run, done, rollouts)

        summary = final_evaluation(run, pool)
    summary["seconds"] = time.time() - t_start
    folder.write_json(folder.summary, summary)
    return summary


def resume(out: Path, progress: bool = True) -> dict:
    folder = RunFolder(Path(out))
    if not folder.config.is_file():
        raise FileNotFoundError(f"{out} holds no run (no config.json) to resume")
    cfg = TrainConfig.from_dict(json.loads(folder.config.read_text()))
    return train(cfg, Path(out), resume=True, progress=progress)
