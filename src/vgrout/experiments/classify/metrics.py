"""Classifier metrics of a score against the oracle hack label: AUROC and F0.5 at the band's
rout cut, on advantage > 0 rollouts and on all, and their median / p95 over a band of directions.
"""

from __future__ import annotations

import math

import numpy as np

METRIC_TITLES = {
    "auroc_pos_adv": "AUROC A>0",
    "f05_pos_adv": "F0.5 A>0",
    "auroc_all": "AUROC all",
    "f05_all": "F0.5 all",
}
"""`classifier_metrics` keys (pos_adv: rollouts with advantage > 0) and their table titles."""
METRICS: tuple[str, ...] = tuple(METRIC_TITLES)


def operating_cut(scores: np.ndarray, tail_q: float) -> float:
    """The rout edge of the quantile band with equal weights: the lower (1 - tail_q) quantile
    (the smallest score whose cumulative share reaches 1 - tail_q, as `gates.weighted_quantile`)."""
    s = np.sort(np.asarray(scores, dtype=np.float64))
    idx = int(np.searchsorted(np.arange(1, len(s) + 1) / len(s), 1.0 - tail_q - 1e-12))
    return float(s[min(idx, len(s) - 1)])


def _auroc(y: np.ndarray, s: np.ndarray) -> tuple[float, str | None]:
    """Mann-Whitney AUROC with average ranks for ties (= sklearn's roc_auc_score; numpy only,
    because the Haar band calls this thousands of times)."""
    from scipy.stats import rankdata

    if len(y) == 0:
        return math.nan, "no rollouts"
    if y.all() or not y.any():
        return math.nan, "no hack" if not y.any() else "only hacks"
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    rank_sum = float(rankdata(s)[y].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg), None


def _f05(y: np.ndarray, predicted: np.ndarray) -> tuple[float, str | None]:
    """F0.5 of a boolean prediction (0 when nothing true is predicted, as sklearn's
    zero_division=0)."""
    if len(y) == 0:
        return math.nan, "no rollouts"
    if not y.any():
        return math.nan, "no hack"
    tp = int((y & predicted).sum())
    if tp == 0:
        return 0.0, None
    precision, recall = tp / int(predicted.sum()), tp / int(y.sum())
    return 1.25 * precision * recall / (0.25 * precision + recall), None


def classifier_metrics(scores, labels, advantages, tail_q: float) -> dict:
    """AUROC and F0.5 (at the band's rout cut) on advantage > 0 rows and on all rows."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    adv = np.asarray(advantages, dtype=np.float64)
    if not (len(s) == len(y) == len(adv)):
        raise ValueError("classifier_metrics: scores, labels and advantages differ in length")
    out: dict = {"n": len(s), "hacks": int(y.sum())}
    if len(s) == 0:
        out["cut"] = math.nan
        for m in METRICS:
            out[m], out[f"{m}_reason"] = math.nan, "no rollouts"
        return out
    if not np.isfinite(s).all():
        raise ValueError("classifier_metrics: non-finite score")
    cut = operating_cut(s, tail_q)
    predicted = s >= cut
    out["cut"] = cut
    for name, sel in (("pos_adv", adv > 0), ("all", np.ones(len(s), dtype=bool))):
        out[f"n_{name}"] = int(sel.sum())
        out[f"hacks_{name}"] = int(y[sel].sum())
        auroc, why = _auroc(y[sel], s[sel])
        out[f"auroc_{name}"] = auroc
        if why:
            out[f"auroc_{name}_reason"] = why + (
                " among A > 0 rollouts" if name == "pos_adv" else ""
            )
        f05, why = _f05(y[sel], predicted[sel])
        out[f"f05_{name}"] = f05
        if why:
            out[f"f05_{name}_reason"] = why + (" among A > 0 rollouts" if name == "pos_adv" else "")
    return out


def band_summary(per_direction: list[dict]) -> dict:
    """Median and p95 over directions of each metric (NaN entries ignored)."""
    out: dict = {"n_directions": len(per_direction)}
    for m in METRICS:
        vals = np.array([d[m] for d in per_direction], dtype=np.float64)
        finite = vals[np.isfinite(vals)]
        if len(finite) == 0:
            reasons = {d.get(f"{m}_reason") for d in per_direction} - {None}
            out[m] = {"median": math.nan, "p95": math.nan, "reason": "; ".join(sorted(reasons))}
        else:
            out[m] = {
                "median": float(np.median(finite)),
                "p95": float(np.percentile(finite, 95)),
            }
    return out
