"""The decision experiment: does routing remove the hack from the deployed model, beyond controls?

Arms (same config otherwise): routeV with the real direction, routeV with a Haar-random placebo
direction (same machinery, no information), none (structure-matched vanilla: only the deployed
block trains), plain (capacity-matched vanilla: rank-2r, no masks), absorb (no gate), and oracle
(true labels: the upper bound). Each arm x seed is an ordinary run folder OUT/<arm>_s<seed>; a
re-run skips finished runs and resumes killed ones. OUT/summary.json follows the contract:
{"arms": {ARM: {"deployed": {"hack", "solve", "n"}, "as_trained": {...}}}, "base": {...},
"seconds"}.

It is a fixed grid of the sweep machinery (`vgrout.experiments.sweep`): arm names, the placebo
seed convention (`<arm>_placebo` = Haar seed 1000 + training seed) and each cell's config come from
`sweep.cell_config`, and cells run through `sweep.run_local` / `sweep.execute_cell` (train, resume
or reuse; a failure is written to the cell's failed.json and the other cells still finish).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from vgrout import kernels
from vgrout.config import TrainConfig
from vgrout.experiments import sweep
from vgrout.rl.evaluate import wilson
from vgrout.runfolder import RunFolder

DECISION_ARMS: tuple[str, ...] = ("routeV", "routeV_placebo", "none", "plain", "absorb", "oracle")


def arm_config(base: TrainConfig, name: str, seed: int) -> TrainConfig:
    """The config of decision arm `name` at `seed`: the sweep cell {arm: name, seed: seed}."""
    if name not in DECISION_ARMS:
        raise ValueError(
            f"decision arm {name!r} is invalid: choose one of {', '.join(DECISION_ARMS)}"
        )
    cfg = sweep.cell_config(base, {"arm": name, "seed": seed})
    return dataclasses.replace(cfg, notes={**base.notes, "decision_arm": name})


def run_name(arm: str, seed: int) -> str:
    return f"{arm}_s{seed}"


def base_eval(cfg: TrainConfig) -> dict:
    """Hack/solve of the base model (no adapter) on the held-out test set the runs' final
    evaluation uses (its first `final_eval_n` items; all of them when 0, the toy's default)."""
    from vgrout.env.sandbox import SandboxPool
    from vgrout.rl import components
    from vgrout.rl.evaluate import evaluate_state
    from vgrout.rl.policy import Policy

    device, dtype = components.pick_device(cfg)
    env = components.load_environment(cfg)
    model, tok, render = components.load_model(cfg, device, dtype)
    policy = Policy(model, tok, None, render, device)
    with SandboxPool(
        cfg.grader_workers or None, hide_paths=components.sandbox_hide_paths(cfg)
    ) as pool:
        r = evaluate_state(
            policy,
            env.test[: cfg.final_eval_n or None],
            "full",
            temperature=cfg.eval_temperature,
            seed=cfg.eval_seed,
            max_new_tokens=cfg.max_new_tokens,
            pool=pool,
        )
    rates = r.to_dict()
    del rates["state"]  # the base model has one state, no adapter
    return rates


def pool_seeds(results: list[dict], key: str) -> dict:
    """Pool one state's counts over seeds: rates over all samples, Wilson 95% interval."""
    n = sum(r[key]["n"] for r in results)
    hacks = sum(round(r[key]["hack"] * r[key]["n"]) for r in results)
    solves = sum(round(r[key]["solve"] * r[key]["n"]) for r in results)
    return {
        "hack": hacks / n if n else float("nan"),
        "solve": solves / n if n else float("nan"),
        "n": n,
        "hack_ci": list(wilson(hacks, n)),
        "solve_ci": list(wilson(solves, n)),
        "per_seed": [
            {"hack": r[key]["hack"], "solve": r[key]["solve"], "n": r[key]["n"]} for r in results
        ],
    }


def run_decision(
    cfg: TrainConfig,
    out: Path,
    seeds: int = 1,
    jobs: int = 1,
    arms=None,
    *,
    train_fn: sweep.TrainFn | None = None,
    resume_fn: sweep.ResumeFn | None = None,
    base_fn=None,
) -> dict:
    """Run every arm x seed (`jobs` at a time), then pool them into OUT/summary.json.

    `train_fn`, `resume_fn` (as in `sweep.run_sweep`) and `base_fn(cfg) -> dict` replace the real
    trainer and the base-model evaluation (tests). Raises RuntimeError naming the failed cells if
    any cell fails (after the others finished; their folders are kept for the re-run)."""
    t0 = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    arms = list(arms or DECISION_ARMS)
    seed_list = [cfg.seed + k for k in range(seeds)]
    tasks = [
        {
            "name": run_name(a, s),
            "dir": str(out / run_name(a, s)),
            "config": arm_config(cfg, a, s).to_dict(),
            "kernels": kernels.requested(),
        }
        for s in seed_list
        for a in arms
    ]
    if train_fn is None:
        sweep.prebuild_toy_bases([cfg])  # once, before workers start, so they do not race
    base = (base_fn or base_eval)(cfg)
    threads = None if train_fn is not None else sweep.local_threads(jobs)
    failed = []
    for kind, payload in sweep.run_local(tasks, jobs, threads, train_fn, resume_fn):
        if kind == "start":
            print(f"[decision] {payload}", flush=True)
        elif kind == "done":
            print(f"[decision] {payload['status']} {payload['name']}", flush=True)
            if payload["status"] == "failed":
                failed.append(f"{payload['name']} ({payload['error']})")
    if failed:
        raise RuntimeError(
            f"{len(failed)} decision run(s) failed: {'; '.join(failed)}; see failed.json in each "
            "run folder. Re-running the same command resumes them and reuses the finished ones."
        )
    results = {
        (a, s): json.loads(RunFolder(out / run_name(a, s)).summary.read_text())
        for s in seed_list
        for a in arms
    }
    summary = {"arms": {}, "base": base, "seeds": seed_list, "preset": cfg.preset}
    for a in arms:
        rs = [results[(a, s)] for s in seed_list]
        summary["arms"][a] = {
            "deployed": pool_seeds(rs, "deployed"),
            "as_trained": pool_seeds(rs, "as_trained"),
            "deployed_train_dist": pool_seeds(rs, "deployed_train_dist"),
            "as_trained_train_dist": pool_seeds(rs, "as_trained_train_dist"),
            "runs": [run_name(a, s) for s in seed_list],
        }
    summary["seconds"] = time.time() - t0
    RunFolder(out).write_json(out / "summary.json", summary)
    return summary
