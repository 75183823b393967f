"""The analysis proper (pure: arrays in, dict out): every site x direction source scored against
the oracle label, with the oracle fits on one half of the problems and the Haar band beside them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vgrout.experiments.classify.directions import (
    fit_logistic,
    haar_directions,
    mean_difference_direction,
)
from vgrout.experiments.classify.features import SITES, SiteFeatures
from vgrout.experiments.classify.metrics import band_summary, classifier_metrics

LABEL_FREE: tuple[str, ...] = ("authored", "self_generated")
ORACLE: tuple[str, ...] = ("mass_mean", "logistic")
SOURCES: tuple[str, ...] = LABEL_FREE + ORACLE
SOURCE_TITLES = {
    "authored": "authored pairs",
    "self_generated": "self-gen pairs",
    "mass_mean": "mass-mean (oracle)",
    "logistic": "logistic (oracle)",
}


def split_by_problem(problem_ids: Sequence, labels, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit, eval) row indices, disjoint, grouped by problem id and seeded.

    Problems are shuffled, then dealt alternately to the halves, problems with at least one hack
    first, so both halves hold hacks whenever two problems do.
    """
    pids = np.asarray([str(p) for p in problem_ids])
    labels = np.asarray(labels).astype(bool)
    unique = sorted(set(pids.tolist()))
    rng = np.random.default_rng(seed)
    order = [unique[i] for i in rng.permutation(len(unique))]
    hacky = {p for p in unique if labels[pids == p].any()}
    # hack-holding problems first, then the rest; dealing alternately over the joined list keeps
    # the halves balanced in problems and splits the hack-holding ones evenly
    dealt = [p for p in order if p in hacky] + [p for p in order if p not in hacky]
    fit_problems = set(dealt[0::2])
    in_fit = np.array([p in fit_problems for p in pids], dtype=bool)
    return np.flatnonzero(in_fit), np.flatnonzero(~in_fit)


def score(features: SiteFeatures, direction: np.ndarray) -> np.ndarray:
    """Raw dot product of each row with the direction (= the gate's sum over module dots)."""
    return features.x @ np.asarray(direction, dtype=np.float64)


@dataclass(frozen=True)
class RolloutTable:
    """What the analysis needs per rollout (labels for measurement and the oracle fits only)."""

    exploited: np.ndarray  # bool [N]
    advantage: np.ndarray  # float [N]
    problem_id: np.ndarray  # str [N]


def analyse(
    rollouts: RolloutTable,
    features: dict[str, SiteFeatures],
    pair_features: dict[str, dict[str, tuple[SiteFeatures, SiteFeatures]]],
    skipped_sources: dict[str, str] | None = None,
    *,
    seed: int = 0,
    n_haar: int = 100,
    tail_q: float = 0.1,
    logistic_c: float = 1.0,
) -> dict:
    """All metrics for every site x source, plus the Haar band (pure: arrays in, dict out).

    pair_features: {source: {site: (hack side, clean side)}} for the label-free sources;
    skipped_sources: {source: reason} for sources that could not be built.
    Returns {"split": ..., "results": {site: {source: {"eval": metrics, "all": metrics}}}},
    with {"skipped": reason} in place of metrics where a source could not be scored.
    """
    y, adv = rollouts.exploited.astype(bool), rollouts.advantage.astype(np.float64)
    fit_idx, eval_idx = split_by_problem(rollouts.problem_id, y, seed)
    split = {
        "by": "problem_id",
        "fit_rows": int(len(fit_idx)),
        "eval_rows": int(len(eval_idx)),
        "fit_hacks": int(y[fit_idx].sum()),
        "eval_hacks": int(y[eval_idx].sum()),
        "fit_problems": len(set(rollouts.problem_id[fit_idx].tolist())),
        "eval_problems": len(set(rollouts.problem_id[eval_idx].tolist())),
    }
    skipped_sources = dict(skipped_sources or {})

    def measure(feats: SiteFeatures, direction: np.ndarray, idx: np.ndarray | None) -> dict:
        sel = np.arange(len(y)) if idx is None else idx
        return classifier_metrics(score(feats.rows(sel), direction), y[sel], adv[sel], tail_q)

    results: dict = {}
    for site, feats in features.items():
        cell: dict = {}
        for source in LABEL_FREE:
            if source in skipped_sources:
                cell[source] = {"skipped": skipped_sources[source]}
                continue
            hack, clean = pair_features[source][site]
            v = mean_difference_direction(hack.x, clean.x, feats.blocks)
            cell[source] = {"eval": measure(feats, v, eval_idx), "all": measure(feats, v, None)}
        oracle_reason = _oracle_skip_reason(y, fit_idx, eval_idx)
        for source in ORACLE:
            if oracle_reason:
                cell[source] = {"skipped": oracle_reason}
                continue
            fit = feats.x[fit_idx]
            if source == "mass_mean":
                v = mean_difference_direction(fit[y[fit_idx]], fit[~y[fit_idx]], feats.blocks)
            else:
                v = fit_logistic(fit, y[fit_idx], logistic_c)
            cell[source] = {"eval": measure(feats, v, eval_idx)}
        haar = haar_directions(feats.blocks, n_haar, seed=_site_seed(seed, site))
        cell["haar"] = {
            rows: band_summary([measure(feats, v, idx) for v in haar])
            for rows, idx in (("eval", eval_idx), ("all", None))
        }
        results[site] = cell
    return {"split": split, "results": results}


def _oracle_skip_reason(y: np.ndarray, fit_idx: np.ndarray, eval_idx: np.ndarray) -> str | None:
    if len(fit_idx) == 0 or len(eval_idx) == 0:
        return "fewer than two problems: no held-out half to score an oracle fit on"
    fit_y = y[fit_idx]
    if not fit_y.any() or fit_y.all():
        return "the fit half lacks a class (" + ("no hack)" if not fit_y.any() else "only hacks)")
    return None


def _site_seed(seed: int, site: str) -> int:
    return int(seed) * 1009 + SITES.index(site) if site in SITES else int(seed) * 1009 + 97
