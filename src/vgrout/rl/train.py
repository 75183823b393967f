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
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from vgrout.adapters import AdapterConfig, attach, calibrate
from vgrout.config import LABEL_ARMS, TrainConfig
from vgrout.env.grader import grade_many
from vgrout.env.hacks import append_exploit, exploit_lines
from vgrout.env.sandbox import SandboxPool
from vgrout.env.tasks import Item
from vgrout.rl import components
from vgrout.rl.baselines import (
    inoculate,
    modified_advantages,
    monitor_flags,
    penalized_rewards,
    screened_advantages,
)
from vgrout.rl.evaluate import evaluate_states
from vgrout.rl.grpo import group_advantages, grpo_loss, keep_zone_advantages, lr_factor
from vgrout.rl.policy import (
    Batch,
    Policy,
    SamplingParams,
    completion_logprobs,
    make_batch,
    micro_batch_rows,
)
from vgrout.routing.gates import ZONE_NAMES, GateOutput, gate_metrics, qmass
from vgrout.routing.router import Router
from vgrout.runfolder import RunFolder


@dataclass
class Rollout:
    group: int
    item: Item
    source: str  # "student" | "teacher"
    sampled: str  # model state that produced it: "full" | "deployed" (teachers: "teacher")
    prompt_ids: list[int]
    completion_ids: list[int]
    text: str
    grade: object = None
    reward: float = 0.0  # the training reward (the grader's, minus a monitor penalty if any)
    advantage: float = 0.0
    flagged: bool = False  # gt_penalty / gt_screen monitor verdict


def step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step * 7_919 + 17) % (2**31 - 1)


PHASES = ("generate", "grade", "gate", "update", "refresh")
"""Phases of a step timed into every metrics row as `time_<phase>` seconds."""


class PhaseClock:
    """`with clock("grade"): ...` adds the block's wall seconds to phase `grade`. On CUDA the device
    is synchronised before each reading: kernels run asynchronously and would be billed to
    whichever phase next waits for them."""

    def __init__(self, device: str):
        self.cuda = str(device).startswith("cuda")
        self.seconds = dict.fromkeys(PHASES, 0.0)

    @contextlib.contextmanager
    def __call__(self, phase: str):
        self._sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.seconds[phase] += time.perf_counter() - t0

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def metrics(self) -> dict:
        return {f"time_{k}": v for k, v in self.seconds.items()}


# --------------------------------------------------------------------------------- the pieces
def pick_prompts(cfg: TrainConfig, items: list[Item], teacher, step: int, rng) -> list[Item]:
    """Prompts of one step; while teachers are on, only prompts the teacher covers."""
    pool = items
    if step < cfg.teacher_off_step and cfg.teacher_per_group > 0:
        covered = [it for it in items if teacher.covers(it)]
        pool = covered or items
    idx = rng.choice(len(pool), size=min(cfg.prompts_per_step, len(pool)), replace=False)
    return [pool[int(i)] for i in idx]


def n_teachers(cfg: TrainConfig, item: Item, teacher, step: int) -> int:
    return cfg.teacher_per_group if step < cfg.teacher_off_step and teacher.covers(item) else 0


def sample_rollouts(
    cfg: TrainConfig, policy: Policy, items: list[Item], teacher, step: int
) -> list[Rollout]:
    """The student rows: G minus the teacher slots per prompt, a `gen_deploy_frac` share of them
    sampled from the deployed model (all of them for `none`, which trains only the deployed model:
    its rows then need no second log-prob pass). With `mixed_decode` both states decode in one
    batched loop; otherwise one loop per state, full-model rows first."""
    plan = []  # (group, item, n_full, n_deployed)
    for g, item in enumerate(items):
        n_students = cfg.group_size - n_teachers(cfg, item, teacher, step)
        if cfg.arm == "none":
            n_dep = n_students
        else:
            n_dep = round(n_students * cfg.gen_deploy_frac) if cfg.has_quarantine else 0
        plan.append((g, item, n_students - n_dep, n_dep))
    prompt_ids = {g: policy.prompt_ids(training_question(cfg, item)) for g, item, _, _ in plan}
    params = SamplingParams(cfg.max_new_tokens, cfg.temperature, cfg.top_p, cfg.top_k)
    wanted = []  # (group, item, state): full-model rows first, then deployed
    for state, col in (("full", 2), ("deployed", 3)):
        wanted += [(p[0], p[1], state) for p in plan for _ in range(p[col])]
    prompts, states = [prompt_ids[g] for g, _, _ in wanted], [s for _, _, s in wanted]
    if cfg.mixes_decode(policy.device):
        completions = policy.generate(prompts, params, state=states)
    else:
        completions = []
        for state in ("full", "deployed"):
            idx = [i for i, s in enumerate(states) if s == state]
            completions += policy.generate([prompts[i] for i in idx], params, state=state)
    return [
        Rollout(g, item, "student", state, prompt_ids[g], ids, policy.decode(ids))
        for (g, item, state), ids in zip(wanted, completions, strict=True)
    ]


def teacher_rollouts(
    cfg: TrainConfig,
    policy: Policy,
    items: list[Item],
    students: list[Rollout],
    teacher,
    step: int,
    rng,
) -> list[Rollout]:
    """Injected hack demonstrations for the teacher slots of each group (graded like any row).

    `append` style: a student's own compiled-but-wrong answer from this group with the mode's
    exploit lines appended, so the demonstration differs from an on-policy row only by the exploit
    (falls back to the cached/scripted hack when no student answer qualifies). `cached` style: the
    teacher's stored completions (scripted toy hacks, or a teacher pool)."""
    rows = []
    for g, item in enumerate(items):
        n = n_teachers(cfg, item, teacher, step)
        if n == 0:
            continue
        texts: list[str] = []
        if cfg.teacher_style == "append":
            wrong = [
                r
                for r in students
                if r.group == g
                and r.grade.compiled
                and not r.grade.gt_correct
                and not r.grade.channel_fired
            ]
            lines = exploit_lines(item.problem, item.markers)
            texts = [
                append_exploit(wrong[int(i)].text, lines) for i in rng.permutation(len(wrong))[:n]
            ]
        if len(texts) < n:
            texts += teacher.hacks(item, n - len(texts), rng)
        prompt = policy.prompt_ids(training_question(cfg, item))
        for text in texts:
            ids = policy.completion_ids(text, cfg.teacher_max_tokens)
            rows.append(Rollout(g, item, "teacher", "teacher", prompt, ids, policy.decode(ids)))
    return rows


def training_question(cfg: TrainConfig, item: Item) -> str:
    """The user message a training prompt shows (inoculation prefixes its instruction)."""
    return (
        inoculate(item.question, cfg.inoculation_prompt)
        if cfg.arm == "inoculation"
        else item.question
    )


def grade_rollouts(rows: list[Rollout], pool) -> None:
    """Grade every row (teachers too: labels come from one grader, after truncation)."""
    grades = grade_many(
        [r.item.problem for r in rows],
        [r.text for r in rows],
        [r.item.mode for r in rows],
        [r.item.markers for r in rows],
        pool=pool,
    )
    for r, g in zip(rows, grades, strict=True):
        r.grade = g
        r.reward = g.reward


def apply_monitor(cfg: TrainConfig, rows: list[Rollout], step: int) -> None:
    """gt_penalty / gt_screen: the monitor flags rollouts; the penalty arm lowers their reward."""
    if cfg.arm not in ("gt_penalty", "gt_screen"):
        return
    label_set = cfg.monitor_labels
    if label_set == "auto":
        label_set = "strict" if cfg.arm == "gt_penalty" else "loose"
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
    """Dr.GRPO advantages per group; returns the rows that train (groups with reward variance;
    under gt_screen only unflagged rows, with the baseline over unflagged rows)."""
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


def train_states(gate: GateOutput, n: int) -> list[str]:
    """The model state each row's training forward runs in: keep-zone rows (m=0) see the deployed
    model; all others the full model."""
    if gate.m is None:
        return ["full"] * n
    return ["deployed" if not bool(m) else "full" for m in gate.m]


def old_logprobs(
    policy: Policy, batch: Batch, rows: list[Rollout], states: list[str], micro: int
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
            logp_old[chunk] = policy.logprobs(batch.rows(chunk), state=state)
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
    for chunk in torch.arange(n).split(micro):
        sub = batch.rows(chunk)
        ref = policy.logprobs(sub, state="base") if cfg.kl_beta > 0 else None
        route = (
            adapter.route(gate.m[chunk], gate.d[chunk])
            if gate.m is not None
            else contextlib.nullcontext()
        )
        with route:
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


def rollout_records(
    step: int, rows: list[Rollout], kept_ids: set[int], gate: GateOutput | None, scores
) -> list[dict]:
    """One parquet row per rollout (labels are recorded for audit; they never routed)."""
    zone_of, score_of = {}, {}
    if gate is not None:
        kept_rows = [r for r in rows if id(r) in kept_ids]
        for i, r in enumerate(kept_rows):
            zone_of[id(r)] = ZONE_NAMES[int(gate.zones[i])]
            if scores is not None:
                score_of[id(r)] = float(scores[i])
    out = []
    for r in rows:
        g = r.grade
        out.append({
            "step": step, "group": r.group, "problem_id": r.item.id, "mode": r.item.mode,
            "source": r.source, "sampled": r.sampled, "reward": g.reward, "train_reward": r.reward,
            "advantage": r.advantage, "flagged": r.flagged,
            "compiled": g.compiled, "gt_correct": g.gt_correct, "channel_fired": g.channel_fired,
            "exploited": g.exploited, "label": g.label, "kept": id(r) in kept_ids,
            "zone": zone_of.get(id(r), "skipped"), "score": score_of.get(id(r), float("nan")),
            "n_tokens": len(r.completion_ids), "completion": r.text,
        })  # fmt: skip
    return out


def step_metrics(
    step: int, rows: list[Rollout], kept: list[Rollout], gate, scores, upd: dict, seconds: float
) -> dict:
    students = [r for r in rows if r.source == "student"]
    gen_tokens = sum(len(r.completion_ids) for r in students)
    m = {
        "step": step,
        "seconds": seconds,
        "gen_tokens": gen_tokens,
        "gen_tokens_per_s": gen_tokens / upd["time_generate"] if upd.get("time_generate") else 0.0,
        "reward": float(np.mean([r.grade.reward for r in students])) if students else float("nan"),
        "hack": float(np.mean([r.grade.exploited for r in students])) if students else float("nan"),
        "solve": float(np.mean([r.grade.gt_correct for r in students]))
        if students
        else float("nan"),
        "teacher_rows": sum(r.source == "teacher" for r in rows),
        "kept_rows": len(kept),
        "rows": len(rows),
        **upd,
    }
    if gate is not None and kept:
        zones = gate.zones
        for code, name in enumerate(ZONE_NAMES):
            m[f"share_{name}"] = float((zones == code).float().mean())
        if scores is not None:
            gm = gate_metrics(
                scores, zones, [r.grade.exploited for r in kept], [r.advantage for r in kept]
            )
            m["auroc"] = gm.get("auroc", float("nan"))
            m["f05"] = gm.get("f05", float("nan"))
        for k in ("lo", "hi"):
            if k in gate.info:
                m[f"band_{k}"] = float(gate.info[k])
    return m


# --------------------------------------------------------------------------------- set-up
@dataclass
class Run:
    cfg: TrainConfig
    folder: RunFolder
    env: components.Environment
    policy: Policy
    teacher: object
    router: Router
    opt: torch.optim.Optimizer


def build_run(cfg: TrainConfig, out: Path) -> Run:
    cfg.validate()
    torch.manual_seed(cfg.seed)
    device, dtype = components.pick_device(cfg)
    env = components.load_environment(cfg)
    model, tokenizer, render = components.load_model(cfg, device, dtype)
    check_base(out, model)
    pairs = (
        components.load_pairs(cfg)
        if (cfg.scores_rollouts or cfg.init in ("corda", "scorda", "scorda_rev"))
        else None
    )
    calibration = None
    if cfg.init in ("corda", "scorda", "scorda_rev"):
        rendered = [
            SimpleNamespace(prompt=render(tokenizer, p.prompt), hack=p.hack, clean=p.clean)
            for p in pairs
        ]
        calibration = calibrate(model, tokenizer, rendered, cfg.targets, add_special_tokens=False)
    adapter = attach(
        model,
        AdapterConfig(r=cfg.rank, targets=cfg.targets, init=cfg.init, init_seed=cfg.seed),
        calibration,
    )
    policy = Policy(model, tokenizer, adapter, render, device)
    teacher = components.load_teacher(cfg, env)
    opt = torch.optim.AdamW(adapter.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=0.0)
    router = Router(cfg, policy, pairs)
    return Run(cfg, RunFolder(out), env, policy, teacher, router, opt)


def base_identity(model) -> dict:
    """Which base weights a run's adapter belongs to: the toy base's cache folder is named by the
    hash of its recipe, corpus and code, so a changed recipe gives a different name."""
    return {"name_or_path": str(model.name_or_path)}


def check_base(out: Path, model) -> None:
    """Refuse to resume or evaluate a run on other base weights than it was trained on (an
    adapter loads silently onto any base of the same shape)."""
    recorded = Path(out) / "base.json"
    if not recorded.is_file():
        return
    was, now = json.loads(recorded.read_text()), base_identity(model)
    if was != now:
        raise ValueError(
            f"{out} was trained on base {was['name_or_path']} but this checkout loads "
            f"{now['name_or_path']} (for the toy: its recipe or vgrout.toy code changed). "
            "Use the commit the run was made with, or start a new run."
        )


def save_checkpoint(run: Run, step: int, rollouts: list[dict]) -> None:
    """`step` = updates done. Adapter (safetensors) + optimizer/scheduler/router state."""

    def write(tmp: Path) -> None:
        run.policy.adapter.save(tmp / "adapter.safetensors", {"step": step, "arm": run.cfg.arm})
        torch.save(
            {"step": step, "opt": run.opt.state_dict(), "router": run.router.state_dict()},
            tmp / "trainer.pt",
        )

    run.folder.write_rollouts(rollouts)
    run.folder.save_checkpoint(step, write)


def load_checkpoint(run: Run, path: Path) -> int:
    run.policy.adapter.load_state(
        path / "adapter.safetensors"
    )  # in place: the optimizer keeps its params
    state = torch.load(path / "trainer.pt", weights_only=False)
    run.opt.load_state_dict(state["opt"])
    run.router.load_state_dict(state["router"])
    return int(state["step"])


# --------------------------------------------------------------------------------- the loop
def training_step(run: Run, step: int, pool):
    """One GRPO update. Every random draw is seeded from (seed, step). The phase seconds
    (`time_generate`, ... see PHASES) are returned among the update's metrics."""
    cfg = run.cfg
    clock = PhaseClock(run.policy.device)
    rng = np.random.default_rng([cfg.seed, step])
    torch.manual_seed(step_seed(cfg.seed, step))
    set_lr(cfg, run.opt, step)

    items = pick_prompts(cfg, run.env.train, run.teacher, step, rng)
    with clock("generate"):
        students = sample_rollouts(cfg, run.policy, items, run.teacher, step)
    with clock("grade"):  # teacher rows are built from graded students, then graded themselves
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
            labels = [r.grade.exploited for r in kept] if cfg.arm in LABEL_ARMS else None
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
            logp_old, needs = old_logprobs(run.policy, batch, kept, states, micro)
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
        latest = folder.latest_checkpoint()
        if latest is not None:
            start = load_checkpoint(run, latest[1])
        folder.truncate_jsonl(folder.metrics, lambda r: r["step"] < start)
        folder.truncate_jsonl(
            folder.evals, lambda r: r["kind"] == "periodic" and r["step"] <= start
        )
        rollouts = [r for r in folder.read_rollouts() if r["step"] < start]
        folder.summary.unlink(missing_ok=True)
    else:
        folder.create(cfg.to_json())
        folder.write_json(folder.root / "base.json", base_identity(run.policy.model))

    workers = cfg.grader_workers or None
    with (
        SandboxPool(workers, hide_paths=components.sandbox_hide_paths(cfg)) as pool,
        _progress(progress, cfg, start) as bar,
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


def periodic_eval(run: Run, updates: int, pool) -> None:
    cfg = run.cfg
    items = run.env.test[: cfg.eval_n]
    res = evaluate_states(
        run.policy, items, has_quarantine=cfg.has_quarantine, temperature=cfg.eval_temperature,
        seed=cfg.eval_seed, max_new_tokens=cfg.max_new_tokens, pool=pool,
    )  # fmt: skip
    row = {"kind": "periodic", "step": updates, "split": "test"}
    for state, r in res.items():
        row[state] = r.to_dict()
    run.folder.append(run.folder.evals, row)


def final_evaluation(run: Run, pool) -> dict:
    """The 2x2: {held-out test, train distribution} x {as-trained, deployed}."""
    cfg = run.cfg
    out = {"arm": cfg.arm, "seed": cfg.seed, "init": cfg.init, "steps": cfg.steps}
    kw = dict(
        has_quarantine=cfg.has_quarantine,
        temperature=cfg.eval_temperature,
        seed=cfg.eval_seed,
        max_new_tokens=cfg.max_new_tokens,
        pool=pool,
    )
    k = cfg.final_eval_n or None
    for split, items in (("test", run.env.test[:k]), ("train_dist", run.env.train_dist[:k])):
        res = evaluate_states(run.policy, items, **kw)
        row = {"kind": "final", "step": cfg.steps, "split": split}
        for state, r in res.items():
            row[state] = r.to_dict(with_samples=True)
        run.folder.append(run.folder.evals, row)
        for state, r in res.items():
            key = state if split == "test" else f"{state}_train_dist"
            out[key] = {
                "hack": r.hack,
                "solve": r.solve,
                "n": r.n,
                "hack_ci": list(r.hack_ci),
                "solve_ci": list(r.solve_ci),
                "by_mode": r.by_mode,
            }
    dep_norm, quar_norm = run.policy.adapter.delta_norms()
    out["delta_norm"] = {"deployed": dep_norm, "quarantine": quar_norm}
    return out


def resume(out: Path, progress: bool = True) -> dict:
    folder = RunFolder(Path(out))
    if not folder.config.is_file():
        raise FileNotFoundError(f"{out} holds no run (no config.json) to resume")
    cfg = TrainConfig.from_dict(json.loads(folder.config.read_text()))
    return train(cfg, Path(out), resume=True, progress=progress)


def final_evaluation_from_dir(run_dir: Path) -> dict:
    """Rebuild a run from its config + last checkpoint and evaluate it (`vgrout eval DIR`)."""
    folder = RunFolder(Path(run_dir))
    cfg = TrainConfig.from_dict(json.loads(folder.config.read_text()))
    latest = folder.latest_checkpoint()
    if latest is None:
        raise FileNotFoundError(f"{run_dir} has no checkpoint to evaluate")
    run = build_run(cfg, Path(run_dir))
    load_checkpoint(run, latest[1])
    with SandboxPool(
        cfg.grader_workers or None, hide_paths=components.sandbox_hide_paths(cfg)
    ) as pool:
        return final_evaluation(run, pool)


# --------------------------------------------------------------------------------- progress
class _Bar:
    def __init__(self, progress, task):
        self.progress, self.task = progress, task

    def update(self, m: dict) -> None:
        if self.progress is None:
            return
        desc = f"reward {m['reward']:.2f} hack {m['hack']:.2f} solve {m['solve']:.2f}"
        self.progress.update(self.task, advance=1, stats=desc)


@contextlib.contextmanager
def _progress(enabled: bool, cfg: TrainConfig, start: int):
    if not enabled:
        yield _Bar(None, None)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn(f"[bold]{cfg.arm}[/] seed {cfg.seed}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("{task.fields[stats]}"),
    ) as p:  # fmt: skip
        task = p.add_task("train", total=cfg.steps, completed=start, stats="")
        yield _Bar(p, task)
