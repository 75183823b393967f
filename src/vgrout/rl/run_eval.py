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


def final_evaluation(run: Run, pool, record: bool = True) -> dict:
    """The 2x2: {held-out test, train distribution} x {as-trained, deployed}; `record` appends its
    rows to the run's eval.jsonl."""
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
        if record:
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


EVAL_FIELDS = ("modes", "eval_problems", "final_eval_n", "eval_temperature", "eval_seed")
"""What `vgrout eval --set` may change: what the model is evaluated on, never what was trained."""


def eval_config(run_dir: Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """The run's config with evaluation-only overrides (`EVAL_FIELDS`); anything else is refused,
    since it would describe another trained model than the checkpoint holds."""
    folder = RunFolder(Path(run_dir))
    if not folder.config.is_file():
        raise FileNotFoundError(f"{run_dir} holds no run (no config.json) to evaluate")
    cfg = TrainConfig.from_dict(json.loads(folder.config.read_text()))
    for a in overrides:
        field = a.split("=", 1)[0].strip().replace("-", "_")
        if field not in EVAL_FIELDS:
            raise ValueError(
                f"vgrout eval --set {a!r}: only evaluation fields can change "
                f"({', '.join(EVAL_FIELDS)}); {field!r} would describe another trained model"
            )
    return cfg.override(list(overrides)).validate()


def final_evaluation_from_dir(run_dir: Path, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Rebuild a run from its config + last checkpoint and evaluate it (`vgrout eval DIR`): a
    re-check that records nothing in the run folder (its eval.jsonl keeps the run's own final
    rows, which reports count once). With `overrides` (evaluation fields, e.g. `modes=gt_only`)
    it evaluates the same weights on another evaluation set."""
    cfg = eval_config(run_dir, overrides)
    latest = RunFolder(Path(run_dir)).latest_checkpoint()
    if latest is None:
        raise FileNotFoundError(f"{run_dir} has no checkpoint to evaluate")
    run = build_run(cfg, Path(run_dir))
    load_checkpoint(run, latest[1])
    with SandboxPool(
        cfg.grader_workers or None, hide_paths=components.sandbox_hide_paths(cfg)
    ) as pool:
        result = final_evaluation(run, pool, record=False)
    return {**result, "eval_overrides": list(overrides)} if overrides else result
