"""Site features: the per-rollout feature vectors of the four sites, in scoring coordinates.

`SiteFeatures` is the container every other part of the analysis reads (rows x coordinates, cut
into the blocks a direction is unit on); `bax_features` puts the B A x site into its exact reduced
coordinates and `site_features` assembles all four sites from the extractor's raw arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SITE_TITLES = dict(residual="residual stream", cgrad="c-probe gradient", ax="A x", bax="B A x")
"""The feature sites (module docstring of `vgrout.experiments.classify`) and their table titles."""
SITES: tuple[str, ...] = tuple(SITE_TITLES)


@dataclass(frozen=True)
class SiteFeatures:
    """Per-rollout features of one site in the coordinates used for scoring.

    x: [N, K] float64. blocks: (start, stop, ambient) per block; directions are unit per block.
    `ambient` is the block's true dimension: equal to stop - start except for reduced
    coordinates (bax), where the block's K coordinates are an isometric image of a vector in an
    `ambient`-dimensional space.
    """

    x: np.ndarray
    blocks: tuple[tuple[int, int, int], ...]

    def __post_init__(self):
        if self.x.ndim != 2:
            raise ValueError(f"site features must be [N, K]; got shape {self.x.shape}")
        if not self.blocks or self.blocks[-1][1] != self.x.shape[1]:
            raise ValueError("site blocks must cover every feature column")

    @property
    def dim(self) -> int:
        """The site's true dimension (sum of ambient block sizes)."""
        return sum(b[2] for b in self.blocks)

    def rows(self, idx) -> SiteFeatures:
        return SiteFeatures(self.x[idx], self.blocks)

    @staticmethod
    def flat(x: np.ndarray) -> SiteFeatures:
        """One block spanning the whole vector."""
        x = np.asarray(x, dtype=np.float64)
        return SiteFeatures(x, ((0, x.shape[1], x.shape[1]),))

    @staticmethod
    def modules(x: np.ndarray) -> SiteFeatures:
        """[N, M, r] -> one block per module."""
        x = np.asarray(x, dtype=np.float64)
        n, m, r = x.shape
        return SiteFeatures(x.reshape(n, m * r), tuple((i * r, (i + 1) * r, r) for i in range(m)))


def bax_features(pooled_ax: np.ndarray, reduction: list[tuple[np.ndarray, int]]) -> SiteFeatures:
    """B A x features in reduced coordinates from pooled A[:r] x [N, M, r]."""
    pooled_ax = np.asarray(pooled_ax, dtype=np.float64)
    if pooled_ax.shape[1] != len(reduction):
        raise ValueError(f"pooled A x has {pooled_ax.shape[1]} modules, B has {len(reduction)}")
    parts, blocks, col = [], [], 0
    for m, (t, d_out) in enumerate(reduction):
        parts.append(pooled_ax[:, m] @ t.T)
        blocks.append((col, col + t.shape[0], d_out))
        col += t.shape[0]
    return SiteFeatures(np.concatenate(parts, axis=1), tuple(blocks))


def site_features(raw: dict[str, np.ndarray], reduction) -> dict[str, SiteFeatures]:
    return {
        "residual": SiteFeatures.flat(raw["residual"]),
        "cgrad": SiteFeatures.modules(raw["cgrad"]),
        "ax": SiteFeatures.modules(raw["ax"]),
        "bax": bax_features(raw["ax"], reduction),
    }
