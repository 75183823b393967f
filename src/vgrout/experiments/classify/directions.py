"""Direction sources: how a unit-per-block direction is made from features.

Mean differences (the pair sources and the mass-mean oracle), the L2 logistic oracle and the
Haar-random band, each as a vector in a site's scoring coordinates (`features.SiteFeatures`).
"""

from __future__ import annotations

import math
import warnings

import numpy as np


def unit_blocks(v: np.ndarray, blocks) -> np.ndarray:
    """Each block of v divided by its norm (a zero block stays zero: it has no direction)."""
    out = np.array(v, dtype=np.float64, copy=True)
    for start, stop, _ in blocks:
        norm = np.linalg.norm(out[..., start:stop], axis=-1, keepdims=True)
        out[..., start:stop] = np.where(
            norm > 1e-300, out[..., start:stop] / np.maximum(norm, 1e-300), 0.0
        )
    return out


def mean_difference_direction(pos: np.ndarray, neg: np.ndarray, blocks) -> np.ndarray:
    """Unit-per-block mean(pos) - mean(neg). With pos/neg the hack/clean sides of pairs this is
    the pair direction (mean of the paired differences); with the oracle classes, mass-mean."""
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("mean difference needs at least one row on each side")
    return unit_blocks(np.mean(pos, axis=0) - np.mean(neg, axis=0), blocks)


def haar_directions(blocks, n: int, seed: int) -> np.ndarray:
    """n directions [n, K], each block uniform on the unit sphere of its *ambient* space.

    For a block of k reduced coordinates in an a-dimensional ambient space (features U z with U
    orthonormal, a x k), a uniform unit u = g / |g|, g ~ N(0, I_a), scores <U z, u> = <z, U^T g> / |g|.
    U^T g ~ N(0, I_k) and |g|^2 = |U^T g|^2 + chi2(a - k), the two parts independent; so the
    reduced direction w / sqrt(|w|^2 + c), w ~ N(0, I_k), c ~ chi2(a - k), scores exactly as a
    uniform ambient direction does (in distribution). For ordinary blocks (a = k) it is w / |w|.
    """
    rng = np.random.default_rng(seed)
    k_total = blocks[-1][1]
    out = np.zeros((n, k_total))
    for start, stop, ambient in blocks:
        k = stop - start
        w = rng.standard_normal((n, k))
        extra = rng.chisquare(ambient - k, size=n) if ambient > k else np.zeros(n)
        norm = np.sqrt((w**2).sum(1) + extra)
        out[:, start:stop] = w / np.maximum(norm, 1e-300)[:, None]
    return out


def fit_logistic(x: np.ndarray, y, c: float = 1.0) -> np.ndarray:
    """Weights w of an L2 logistic regression (balanced classes); score = x @ w.

    Features are centred and divided by one global scale (rows get unit RMS norm), so the fit is
    invariant under rotations of the feature space. The returned score differs from the fitted
    decision function by a constant only (same AUROC, same quantile cut).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y).astype(int)
    if len(set(y.tolist())) < 2:
        raise ValueError("logistic regression needs both classes in the fit half")
    mu = x.mean(0)
    scale = math.sqrt(float(((x - mu) ** 2).sum(1).mean())) or 1.0
    clf = LogisticRegression(C=c, class_weight="balanced", max_iter=5000, tol=1e-8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit((x - mu) / scale, y)
    return clf.coef_[0] / scale
