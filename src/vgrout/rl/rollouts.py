"""The rows of one training step: picking prompts, sampling the students, building the teacher
rows, grading them all.

`Rollout` is one row as it moves through the step (sampled, graded, given a reward and an
advantage); `step_seed` is the seed every torch draw of step s derives from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from vgrout.config import TrainConfig
from vgrout.env.grader import grade_many
from vgrout.env.hacks import append_exploit, exploit_lines
from vgrout.env.tasks import Item
from vgrout.rl.baselines import inoculate
from vgrout.rl.policy import Policy, SamplingParams


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
    flagged: bool = False  # the monitor's verdict (config.MONITOR_ARMS; advantages.apply_monitor)


def step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step * 7_919 + 17) % (2**31 - 1)


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
    cfg: TrainConfig,
    policy: Policy,
    items: list[Item],
    teacher,
    step: int,
    on_row: Callable[[Rollout], None] | None = None,
) -> list[Rollout]:
    """The student rows: G minus the teacher slots per prompt, a `gen_deploy_frac` share of them
    sampled from the deployed model (all of them for `none`, which trains only the deployed model:
    its rows then need no second log-prob pass). With `mixed_decode` both states decode in one
    batched loop; otherwise one loop per state, full-model rows first. `on_row(row)` is called
    for each row as soon as its completion ends (e.g. `BackgroundGrader.submit`)."""
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
    rows: list[Rollout | None] = [None] * len(wanted)

    def done(i: int, ids: list[int]) -> None:
        g, item, state = wanted[i]
        rows[i] = Rollout(g, item, "student", state, prompt_ids[g], ids, policy.decode(ids))
        if on_row is not None:
            on_row(rows[i])

    if cfg.mixes_decode(policy.device):
        policy.generate(prompts, params, state=states, on_done=done)
    else:
        for state in ("full", "deployed"):
            idx = [i for i, s in enumerate(states) if s == state]
            policy.generate(
                [prompts[i] for i in idx], params, state=state,
                on_done=lambda j, ids, idx=idx: done(idx[j], ids),
            )  # fmt: skip
    assert all(r is not None for r in rows), "internal: the engine skipped a row's on_done"
    return rows  # type: ignore[return-value]


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


def grade_while_decoding(device) -> bool:
    """Whether to grade rows while the rest of the batch decodes: yes when decoding leaves CPU
    cores idle (an accelerator decodes, or torch uses fewer threads than there are cores). On a
    CPU whose every core decodes, the sandbox's processes only slow the decode down (toy, 2
    cores, 2 threads: 0.49 s generate+grade overlapped vs 0.39 s in turn; 1 thread: 0.50 vs
    0.52)."""
    import os

    if torch.device(device).type != "cpu":
        return True
    return torch.get_num_threads() < (os.cpu_count() or 1)


class BackgroundGrader:
    """Grades rows in a thread while the caller goes on, e.g. while the rest of a batch decodes.

    `grade(rows)` grades a list of rows in place (e.g. `lambda rows: grade_rollouts(rows,
    pool)`); `submit(row)` queues a row, and rows queued meanwhile are graded as one batch;
    `wait()` returns once every submitted row is graded (re-raising a grading error). A grade does
    not depend on when or beside which rows it is computed, so the numbers are those of grading
    every row at the end; only the wall time changes (grading runs in the sandbox's processes,
    decoding in this one). The thread starts at the first `submit` (a grader nobody submits to
    costs nothing). Use it as a context manager: leaving the block stops the thread."""

    _STOP = object()

    def __init__(self, grade: Callable[[list], None]) -> None:
        import queue

        self.grade = grade
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread = None
        self._closed = False

    def _serve(self) -> None:
        import queue

        stop = False
        while not stop:
            batch = [self._queue.get()]
            while True:  # grade whatever has finished meanwhile as one batch
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(r is self._STOP for r in batch)
            rows = [r for r in batch if r is not self._STOP]
            if rows and self._error is None:
                try:
                    self.grade(rows)
                except BaseException as exc:  # handed to the caller in wait()
                    self._error = exc

    def submit(self, row: Rollout) -> None:
        import threading

        if self._closed:
            raise RuntimeError("BackgroundGrader.submit after wait()")
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="vgrout-grader", daemon=True)
            self._thread.start()
        self._queue.put(row)

    def _stop(self) -> None:
        self._closed = True
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(self._STOP)
            self._thread.join()

    def wait(self) -> None:
        self._stop()
        if self._error is not None:
            raise self._error

    def __enter__(self) -> BackgroundGrader:
        return self

    def __exit__(self, *exc) -> None:
        self._stop()


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
