"""A run's evaluations: the periodic held-out rows, the final 2x2 written at the end of training,
and the same final evaluation rebuilt from a run folder (`vgrout eval DIR`).
"""

from __future__ import annotations

import json
from pathlib import Path

from vgrout.config import TrainConfig
from vgrout.env.sandbox import SandboxPool
from vgrout.rl import components
from vgrout.rl.checkpoint import load_checkpoint
from vgrout.rl.evaluate import evaluate_states
from vgrout.rl.run import Run, build_run
from vgrout.runfolder import RunFolder


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
