"""`classify_run`: the `vgrout classify RUN_DIR` command, from a run folder to classify.{json,md,png}."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from vgrout.experiments.classify.analysis import RolloutTable, analyse
from vgrout.experiments.classify.extract import (
    bax_reduction,
    extract_features,
    make_self_generated_pairs,
    pair_sides,
    residual_layer_index,
    rollout_sides,
    select_rollouts,
)
from vgrout.experiments.classify.features import SiteFeatures, site_features
from vgrout.experiments.classify.metrics import classifier_metrics
from vgrout.experiments.classify.render import markdown_report, plot


def classify_run(
    run_dir: Path,
    max_rollouts: int = 512,
    seed: int = 0,
    n_haar: int = 100,
    *,
    students_only: bool = True,
    min_step: int = 0,
    n_self_pairs: int = 16,
    residual_layer: int | None = None,
    batch_size: int | None = None,
    logistic_c: float = 1.0,
) -> str:
    """Offline classifier analysis of a run folder; writes classify.{json,md,png}, returns the
    Markdown table text. See the module docstring for every choice."""
    import torch

    from vgrout.config import TrainConfig
    from vgrout.rl.checkpoint import load_checkpoint
    from vgrout.rl.run import build_run
    from vgrout.routing.pairs import load_pairs
    from vgrout.runfolder import RunFolder, atomic_write_text

    t0 = time.time()
    if max_rollouts < 1 or n_haar < 1:
        raise ValueError("max_rollouts and n_haar must be >= 1")
    folder = RunFolder(Path(run_dir))
    if not folder.config.is_file():
        raise FileNotFoundError(f"{run_dir} holds no run (no config.json)")
    latest = folder.latest_checkpoint()
    if latest is None:
        raise FileNotFoundError(f"{run_dir} has no checkpoint: classify reads the trained adapter")
    all_rows = folder.read_rollouts()
    rows = select_rollouts(
        all_rows,
        students_only=students_only,
        min_step=min_step,
        max_rollouts=max_rollouts,
        seed=seed,
    )
    if not rows:
        kind = "student " if students_only else ""
        raise ValueError(
            f"{run_dir}: no {kind}rollouts with step >= {min_step} in rollouts.parquet"
        )

    cfg = TrainConfig.from_dict(json.loads(folder.config.read_text()))
    with torch.random.fork_rng(devices=[]):  # build_run seeds the global RNG; leave the caller's
        run = build_run(cfg, folder.root)
        step, ckpt = latest
        load_checkpoint(run, ckpt)
        policy = run.policy
        state = "deployed" if cfg.has_quarantine else "full"
        layer = residual_layer_index(policy.model, residual_layer)
        bs = batch_size or cfg.micro_batch or 16  # micro_batch 0 = auto (sized per batch)

        def features_of(sides) -> dict[str, SiteFeatures]:
            raw = extract_features(policy, sides, state=state, residual_layer=layer, batch_size=bs)
            return site_features(raw, reduction)

        reduction = bax_reduction(policy.adapter)
        items_by_id = {it.id: it for it in run.env.train}
        sides, mismatched = rollout_sides(policy, cfg, items_by_id, rows)
        features = features_of(sides)

        pair_features: dict = {}
        skipped: dict[str, str] = {}
        pair_info: dict = {}
        sources = {"authored": (load_pairs(cfg.pairs), None)}
        sources["self_generated"] = make_self_generated_pairs(run, n_self_pairs, seed, state)
        for source, (pairs, why) in sources.items():
            if pairs is None:
                skipped[source] = why
                continue
            hack, clean = pair_sides(policy, pairs)
            both = features_of(hack + clean)
            p = len(hack)
            pair_features[source] = {
                site: (f.rows(slice(0, p)), f.rows(slice(p, 2 * p))) for site, f in both.items()
            }
            pair_info[source] = {"selector": pairs.selector, "n_pairs": p, "sha256": pairs.sha256}

    table = RolloutTable(
        exploited=np.array([bool(r["exploited"]) for r in rows]),
        advantage=np.array([float(r["advantage"]) for r in rows]),
        problem_id=np.array([str(r["problem_id"]) for r in rows]),
    )
    analysis = analyse(
        table, features, pair_features, skipped,
        seed=seed, n_haar=n_haar, tail_q=cfg.band_tail_q, logistic_c=logistic_c,
    )  # fmt: skip

    logged = np.array([float(r.get("score", math.nan)) for r in rows])
    has_score = np.isfinite(logged)
    logged_metrics = None
    if has_score.any():
        logged_metrics = classifier_metrics(
            logged[has_score],
            table.exploited[has_score],
            table.advantage[has_score],
            cfg.band_tail_q,
        )
    pos = table.advantage > 0
    info = {
        "run_dir": str(run_dir),
        "arm": cfg.arm,
        "checkpoint_step": step,
        "state": "deployed (quarantine ablated)" if state == "deployed" else "full (no quarantine)",
        "n_rollouts": len(rows),
        "n_available": len(all_rows),
        "rollout_kind": "student" if students_only else "student + teacher",
        "students_only": students_only,
        "min_step": min_step,
        "seed": seed,
        "n_haar": n_haar,
        "tail_q": cfg.band_tail_q,
        "residual_layer": layer,
        "logistic_c": logistic_c,
        "retokenized_mismatch": mismatched,
        "labels": {
            "hacks": int(table.exploited.sum()),
            "n_pos_adv": int(pos.sum()),
            "hacks_pos_adv": int(table.exploited[pos].sum()),
        },
        "site_dims": {site: f.dim for site, f in features.items()},
        "site_coords": {site: int(f.x.shape[1]) for site, f in features.items()},
        "pairs": pair_info,
        "skipped_sources": skipped,
        "logged_gate_score": logged_metrics,
    }
    text = markdown_report(info, analysis)
    folder.root.mkdir(parents=True, exist_ok=True)
    plot(analysis, folder.root / "classify.png", title=f"{run_dir} ({cfg.arm})")
    info["seconds"] = time.time() - t0
    folder.write_json(folder.root / "classify.json", {**info, **analysis})
    atomic_write_text(folder.root / "classify.md", text)
    return text
