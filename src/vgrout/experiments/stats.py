"""The small statistics the reports and CLAIMS.md share: a seeded percentile bootstrap of a mean,
a paired t-test p-value and Student-t interval, and Holm's step-down adjustment (Holm 1979)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as scipy_stats


def isnan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def bootstrap_ci(
    values: Sequence[float], n_resamples: int = 10_000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of `values` (resampled with replacement).

    A fresh generator per call (seeded by `seed` only), so an interval does not depend on which
    other intervals were computed before it. Identical values give a point interval."""
    x = np.asarray([v for v in values if not isnan(v)], dtype=float)
    if x.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_resamples, x.size))
    means = x[idx].mean(axis=1)
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [tail, 1.0 - tail])
    return (float(lo), float(hi))


def paired_t_pvalue(diffs: Sequence[float]) -> float:
    """Two-sided p of a one-sample Student t-test of the mean paired difference against 0.

    NaN with fewer than 2 values. Identical differences have no spread, and a t statistic would
    be infinite: p = 1 when they are all 0 (nothing changed, e.g. a setting a group ignores); for
    a constant non-zero shift, the exact sign-flip p 2^(1-n) (n seeds all on one side: what the
    signs alone support), not 0."""
    x = np.asarray([v for v in diffs if not isnan(v)], dtype=float)
    if x.size < 2:
        return math.nan
    mean, sd = float(x.mean()), float(x.std(ddof=1))
    if sd <= 1e-12 * max(1.0, abs(mean)):  # rounding, not spread (0.1 - 0.0 three times)
        return 1.0 if abs(mean) <= 1e-12 else 2.0 ** (1 - x.size)
    t = mean / (sd / math.sqrt(x.size))
    return float(2.0 * scipy_stats.t.sf(abs(t), df=x.size - 1))


def holm_adjust(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given): the k-th smallest p is
    multiplied by (m - k + 1), made monotone, capped at 1. Reject at family-wise level alpha
    where adjusted p < alpha."""
    p = np.asarray(pvalues, dtype=float)
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled)
    return [float(v) for v in adjusted]


def t_interval(diffs: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean of `diffs`; NaN with fewer than 2 values."""
    x = np.asarray(diffs, dtype=float)
    if x.size < 2:
        return (math.nan, math.nan)
    half = scipy_stats.t.ppf(0.5 + level / 2, df=x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return (float(x.mean() - half), float(x.mean() + half))


def format_p(p: float) -> str:
    """`<0.001` or `0.046`."""
    return "<0.001" if p < 0.001 else f"{p:.3f}"
