"""Held-out evaluation: hack and solve rates of a model state, as-trained and deployed.

One sample per prompt at a fixed seed and temperature (0.7 by default), graded by the same grader:
hack = the home mode's channel fired and the answer is not truly correct (`exploited`); solve = the
strict oracle passed (`gt_correct`). The *deployed* state is the model with the quarantine deleted
(ablated); for the `none` arm deployed = as-trained. Sampling runs inside a forked RNG, so an
evaluation never changes the training run's random stream.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import torch

from vgrout.env.grader import grade_many
from vgrout.env.tasks import Item
from vgrout.rl.policy import Policy, SamplingParams
from vgrout.rl.rollouts import BackgroundGrader, grade_while_decoding


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a binomial rate k/n (sensible at 0 and n, unlike Wald)."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass
class EvalResult:
    state: str
    n: int
    hack: float
    solve: float
    hack_ci: tuple[float, float]
    solve_ci: tuple[float, float]
    by_mode: dict
    samples: list[dict]

    def to_dict(self, with_samples: bool = False) -> dict:
        d = {
            "state": self.state,
            "n": self.n,
            "hack": self.hack,
            "solve": self.solve,
            "hack_ci": list(self.hack_ci),
            "solve_ci": list(self.solve_ci),
            "by_mode": self.by_mode,
        }
        if with_samples:
            d["samples"] = self.samples
        return d


def summarize(state: str, items: list[Item], grades, texts: list[str]) -> EvalResult:
    n = len(items)
    hacks = sum(g.exploited for g in grades)
    solves = sum(g.gt_correct for g in grades)
    tally: dict = defaultdict(lambda: {"n": 0, "hack": 0, "solve": 0})
    for it, g in zip(items, grades, strict=True):
        t = tally[it.mode]
        t["n"] += 1
        t["hack"] += int(g.exploited)
        t["solve"] += int(g.gt_correct)
    by_mode = {
        m: {**t, "hack_rate": t["hack"] / t["n"], "solve_rate": t["solve"] / t["n"]}
        for m, t in sorted(tally.items())
    }
    samples = [
        {"problem_id": it.id, "mode": it.mode, "response": txt, **g.to_dict()}
        for it, g, txt in zip(items, grades, texts, strict=True)
    ]
    return EvalResult(
        state,
        n,
        hacks / n if n else math.nan,
        solves / n if n else math.nan,
        wilson(hacks, n),
        wilson(solves, n),
        by_mode,
        samples,
    )


def evaluate_state(
    policy: Policy,
    items: list[Item],
    state: str,
    *,
    temperature: float,
    seed: int,
    max_new_tokens: int,
    pool,
) -> EvalResult:
    """Hack/solve of one model state (`full` = as-trained, `deployed`, or `base`) on `items`."""
    # one completion per item from `state`, in a forked RNG seeded with `seed`; each is graded as
    # soon as it ends where decoding leaves cores idle (`grade_while_decoding`), else at the end
    prompts = [policy.prompt_ids(it.question) for it in items]
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature)
    texts: list[str] = [""] * len(items)
    grades: list = [None] * len(items)

    def grade(done: list[int]) -> None:
        picked = [items[i] for i in done]
        graded = grade_many(
            [it.problem for it in picked],
            [texts[i] for i in done],
            [it.mode for it in picked],
            [it.markers for it in picked],
            pool=pool,
        )
        for i, g in zip(done, graded, strict=True):
            grades[i] = g

    def ended(i: int, ids: list[int]) -> None:
        texts[i] = policy.decode(ids)
        grader.submit(i)

    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    overlap = grade_while_decoding(policy.device)
    with BackgroundGrader(grade) as grader:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            completions = policy.generate(
                prompts, params, state=state, on_done=ended if overlap else None
            )
        grader.wait()
    if not overlap:
        texts[:] = [policy.decode(c) for c in completions]
        grade(list(range(len(items))))
    return summarize(state, items, grades, texts)


def evaluate_states(
    policy: Policy,
    items: list[Item],
    *,
    has_quarantine: bool,
    temperature: float,
    seed: int,
    max_new_tokens: int,
    pool,
) -> dict[str, EvalResult]:
    """{"as_trained": ..., "deployed": ...}; for a run without quarantine deployed = as-trained."""
    kw = dict(temperature=temperature, seed=seed, max_new_tokens=max_new_tokens, pool=pool)
    as_trained = evaluate_state(policy, items, "full", **kw)
    as_trained.state = "as_trained"
    if not has_quarantine:
        return {"as_trained": as_trained, "deployed": as_trained}
    deployed = evaluate_state(policy, items, "deployed", **kw)
    deployed.state = "deployed"
    return {"as_trained": as_trained, "deployed": deployed}
