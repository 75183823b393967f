"""The decision experiment: does routing remove the hack from the deployed model, beyond controls?

Arms (same config otherwise): routeV with the real direction, routeV with a Haar-random placebo
direction (same machinery, no information), none (capacity-matched vanilla), absorb (no gate), and
oracle (true labels: the upper bound). Each arm x seed is an ordinary run folder under OUT; a
re-run skips finished runs and resumes killed ones. OUT/summary.json follows the contract:
{"arms": {ARM: {"deployed": {"hack", "solve", "n"}, "as_trained": {...}}}, "base": {...}, "seconds"}.
"""

from __future__ import annotations

import dataclasses
import json
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from vgrout.config import TrainConfig
from vgrout.evaluate import wilson
from vgrout.runfolder import RunFolder

DECISION_ARMS: dict[str, dict] = {
    "routeV": {"arm": "routeV"},
    "routeV_placebo": {"arm": "routeV", "placebo_seed": 1000},
    "none": {"arm": "none"},
    "absorb": {"arm": "absorb"},
    "oracle": {"arm": "oracle"},
}


def arm_config(base: TrainConfig, name: str, seed: int) -> TrainConfig:
    over = dict(DECISION_ARMS[name])
    if "placebo_seed" in over:
        over["placebo_seed"] = over["placebo_seed"] + seed
    return dataclasses.replace(
        base, seed=seed, notes={**base.notes, "decision_arm": name}, **over
    ).validate()


def _run_one(cfg_dict: dict, out: str, threads: int) -> dict:
    import torch

    from vgrout.train import resume, train

    torch.set_num_threads(threads)
    cfg = TrainConfig.from_dict(cfg_dict)
    folder = RunFolder(Path(out))
    if folder.summary.is_file():
        return json.loads(folder.summary.read_text())
    if folder.config.is_file():
        return resume(Path(out), progress=False)
    return train(cfg, Path(out), progress=False)


def base_eval(cfg: TrainConfig, pool=None) -> dict:
    """Hack/solve of the base model (no adapter) on the held-out test set."""
    from vgrout import components
    from vgrout.env.sandbox import SandboxPool
    from vgrout.evaluate import evaluate_state
    from vgrout.policy import Policy

    device, dtype = components.pick_device(cfg)
    env = components.load_environment(cfg)
    model, tok, render = components.load_model(cfg, device, dtype)
    policy = Policy(model, tok, None, render, device)
    with SandboxPool(
        cfg.grader_workers or None, hide_paths=components.sandbox_hide_paths(cfg)
    ) as pool:
        r = evaluate_state(
            policy,
            env.test,
            "full",
            temperature=cfg.eval_temperature,
            seed=cfg.eval_seed,
            max_new_tokens=cfg.max_new_tokens,
            pool=pool,
        )
    return {
        "hack": r.hack,
        "solve": r.solve,
        "n": r.n,
        "hack_ci": list(r.hack_ci),
        "solve_ci": list(r.solve_ci),
        "by_mode": r.by_mode,
    }


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


def run_decision(cfg: TrainConfig, out: Path, seeds: int = 1, jobs: int = 1, arms=None) -> dict:
    t0 = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    arms = list(arms or DECISION_ARMS)
    seed_list = [cfg.seed + k for k in range(seeds)]
    cells = [(a, s) for s in seed_list for a in arms]
    # Build the (cached) toy base once before forking workers, so they do not race to build it.
    if cfg.model == "toy":
        from vgrout.components import toy_recipe
        from vgrout.toy.model import build_toy_base

        build_toy_base(seed=0, recipe=toy_recipe(cfg.toy_recipe))
    base = base_eval(cfg)
    threads = max(1, 2 // max(1, jobs))
    results: dict[tuple[str, int], dict] = {}
    if jobs <= 1:
        for a, s in cells:
            print(f"[decision] {a} seed {s}", flush=True)
            results[(a, s)] = _run_one(
                arm_config(cfg, a, s).to_dict(), str(out / f"{a}_s{s}"), threads
            )
    else:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as ex:
            futs = {
                (a, s): ex.submit(
                    _run_one, arm_config(cfg, a, s).to_dict(), str(out / f"{a}_s{s}"), threads
                )
                for a, s in cells
            }
            for (a, s), f in futs.items():
                results[(a, s)] = f.result()
                print(f"[decision] done {a} seed {s}", flush=True)
    summary = {"arms": {}, "base": base, "seeds": seed_list, "preset": cfg.preset}
    for a in arms:
        rs = [results[(a, s)] for s in seed_list]
        summary["arms"][a] = {
            "deployed": pool_seeds(rs, "deployed"),
            "as_trained": pool_seeds(rs, "as_trained"),
            "deployed_train_dist": pool_seeds(rs, "deployed_train_dist"),
            "as_trained_train_dist": pool_seeds(rs, "as_trained_train_dist"),
            "runs": [f"{a}_s{s}" for s in seed_list],
        }
    summary["seconds"] = time.time() - t0
    RunFolder(out).write_json(out / "summary.json", summary)
    return summary
