"""Gates: turn an arm (and, for direction arms, per-rollout scores) into per-rollout masks (m, d).

Zones and masks (see DESIGN.md "The method"):

    zone     code  (m, d)  what trains on this rollout
    keep      0    (0, 0)  only the deployed block, in its deployed (ablated) state
    absorb    1    (1, 0)  both blocks
    rout      2    (1, 1)  only the quarantine block

Masks are always derived from zones (`masks_from_zones`), so the forbidden (m=0, d=1), which would
silently drop a rollout's gradient, cannot be produced.

Labels never route except in the arms that say so: `direction_gate` and the band functions have no
label argument at all; only `oracle_gate` takes labels, and `gate_for_arm` refuses labels for every
other arm. Gate *metrics* (which do use labels) are computed outside the gate by `gate_metrics` from
logged scores, zones and labels.

Band gates are pure: `(features, direction, state, config) -> GateOutput` with a new state.
* `QuantileBand` (the predecessor's): a run-long buffer of raw per-rollout features (not scores), so
  a re-extracted direction re-scores the whole history with no flush; edges are recency-weighted
  quantiles q and 1-q of the buffered scores, current batch included; while the buffer holds fewer
  than `warmup` rollouts every rollout absorbs.
* `PairBand`: edges from the pair set's own scores: lo = the `quantile` (default 0.75) of the
  clean-side pair scores, hi = the same quantile of the hack-side pair scores (see
  `pair_band_state`). A rollout must score above three quarters of the authored hacks to be routed
  (precision first), and at most like a typical clean pair to be kept.
Zone rule for edges (lo, hi): keep iff s <= lo and s < hi; rout iff s >= hi and s > lo; else
absorb. With lo < hi this is the plain band; when the edges meet or cross (constant scores,
a direction that does not separate the pairs) the ambiguous scores absorb: no information, no pin.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np
import torch

KEEP, ABSORB, ROUT = 0, 1, 2
ZONE_NAMES: tuple[str, ...] = ("keep", "absorb", "rout")

ARMS: tuple[str, ...] = ("none", "plain", "absorb", "routeA", "routeV", "oracle", "oracle_recall")
DIRECTION_ARMS: tuple[str, ...] = ("routeA", "routeV")
LABEL_ARMS: tuple[str, ...] = ("oracle", "oracle_recall")  # the only arms that route by labels


@dataclass(frozen=True)
class GateOutput:
    """Per-rollout decision. `m`/`d` are None for arm `plain` (unmasked: the whole adapter trains)."""

    zones: torch.Tensor  # int64 [G], KEEP/ABSORB/ROUT
    m: torch.Tensor | None  # bool [G]: quarantine on in forward and backward
    d: torch.Tensor | None  # bool [G]: deployed gradient stopped
    state: object = None  # the band state to pass to the next call (unchanged for stateless arms)
    info: dict = field(default_factory=dict)


def masks_from_zones(zones: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(m, d) for zones; d => m by construction."""
    zones = torch.as_tensor(zones)
    if zones.numel() and (zones.min() < KEEP or zones.max() > ROUT):
        raise ValueError(f"zones must be in {{0, 1, 2}} (keep/absorb/rout); got {zones.tolist()}")
    return zones >= ABSORB, zones == ROUT


def zones_from_edges(scores: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Band rule (module docstring): ambiguous scores between crossed/equal edges absorb."""
    keep = (scores <= lo) & (scores < hi)
    rout = (scores >= hi) & (scores > lo)
    zones = torch.full(scores.shape, ABSORB, dtype=torch.long)
    zones[keep] = KEEP
    zones[rout] = ROUT
    return zones


def _output(zones: torch.Tensor, state=None, info: dict | None = None) -> GateOutput:
    m, d = masks_from_zones(zones)
    return GateOutput(zones=zones, m=m, d=d, state=state, info=info or {})


def module_dot_score(features: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """Score = raw dot of per-module features with the direction, summed over modules: [G]."""
    if features.dim() != 3 or features.shape[1:] != direction.shape:
        raise ValueError(
            f"features must be [G, M, r] matching direction {tuple(direction.shape)}; "
            f"got {tuple(features.shape)}"
        )
    scores = (features.double() * direction.double().to(features.device)).sum(dim=(1, 2))
    if not torch.isfinite(scores).all():
        raise ValueError("non-finite gate score: a NaN/inf feature would poison the band")
    return scores.cpu()


def unit_features(features: torch.Tensor) -> torch.Tensor:
    """Each row of features [G, M, r] scaled to unit norm over all its M x r entries (a zero row
    stays zero), so `module_dot_score` of the result is sqrt(M) x the cosine with a direction of
    unit rows: the score of `gate_score = cosine`."""
    flat = features.reshape(features.shape[0], -1)
    norms = flat.norm(dim=1).clamp_min(torch.finfo(flat.dtype).tiny)
    return features / norms.reshape((-1,) + (1,) * (features.dim() - 1))


# -- stateless arms -----------------------------------------------------------------------------


def none_gate(n: int) -> GateOutput:
    """Vanilla, structure-matched control: every rollout keep (0,0), so only the deployed block
    trains, in its deployed state, and the quarantine stays exactly at its init."""
    return _output(torch.full((n,), KEEP, dtype=torch.long))


def plain_gate(n: int) -> GateOutput:
    """Vanilla, capacity-matched control: no masks; zones recorded as absorb (both blocks train)."""
    return GateOutput(zones=torch.full((n,), ABSORB, dtype=torch.long), m=None, d=None)


def absorb_gate(n: int) -> GateOutput:
    return _output(torch.full((n,), ABSORB, dtype=torch.long))


def oracle_gate(
    labels, recall: float = 1.0, seed: int = 0, step: int = 0, unflagged: str = "keep"
) -> GateOutput:
    """USES LABELS. hack -> rout (1,1), non-hack -> keep (0,0), or absorb (1,0) with
    `unflagged="absorb"` (config.unflagged_zone).

    With recall < 1 (arm `oracle_recall`: an imperfect monitor), each positive label is kept with
    probability `recall`, drawn from a generator seeded by (seed, step); missed hacks are unflagged.
    """
    labels = torch.as_tensor(labels).bool().cpu()
    if not 0.0 <= recall <= 1.0:
        raise ValueError(f"oracle recall must be in [0, 1]; got {recall}")
    detected = labels.clone()
    if recall < 1.0:
        gen = torch.Generator().manual_seed(_mix_seed("oracle_recall", seed, step))
        detected &= torch.rand(labels.shape, generator=gen) < recall
    if unflagged not in ("keep", "absorb"):
        raise ValueError(f"unflagged zone must be 'keep' or 'absorb'; got {unflagged!r}")
    rest = KEEP if unflagged == "keep" else ABSORB
    zones = torch.where(detected, ROUT, rest).long()
    return _output(zones, info={"uses_labels": True, "recall": recall})


def _mix_seed(*parts) -> int:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()
    return int(digest[:15], 16)


# -- band gates ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuantileBand:
    """Run-long recency-weighted quantile band (the predecessor's gate, with d => m fixed).

    Quantiles are *lower* weighted quantiles (the smallest buffered score whose cumulative weight
    reaches q), also when `halflife` is None (equal weights): one rule, no interpolation, so an
    edge is always a score that some rollout actually had.
    """

    tail_q: float = 0.1  # rout tail's mass (and the keep tail's, unless keep_q says otherwise)
    halflife: float | None = 96.0  # in rollouts; None = all buffered rollouts weigh the same
    warmup: int = 64  # buffer smaller than this (current batch included) -> everyone absorbs
    buffer_size: int = 8192  # most recent rollouts kept
    keep_q: float | None = None  # keep tail's mass; None = tail_q; 0 = no keep zone

    def __post_init__(self):
        if not 0.0 < self.tail_q < 0.5:
            raise ValueError(f"tail_q must be in (0, 0.5); got {self.tail_q}")
        if self.keep_q is not None and not 0.0 <= self.keep_q < 0.5:
            raise ValueError(f"keep_q must be in [0, 0.5) or None; got {self.keep_q}")
        if self.halflife is not None and self.halflife <= 0:
            raise ValueError(f"halflife must be > 0 rollouts or None; got {self.halflife}")
        if self.warmup < 0 or self.buffer_size < 1:
            raise ValueError("warmup must be >= 0 and buffer_size >= 1")


@dataclass(frozen=True)
class QuantileBandState:
    """Raw per-rollout features [N, M, r] with insertion stamps; `seen` counts every rollout."""

    features: torch.Tensor | None = None
    stamps: torch.Tensor | None = None  # int64 [N]: value of `seen` right after insertion
    seen: int = 0

    def __len__(self) -> int:
        return 0 if self.features is None else int(self.features.shape[0])


def weighted_quantile(values: torch.Tensor, weights: torch.Tensor, q: float) -> float:
    """Lower weighted quantile: the smallest value whose cumulative normalised weight reaches q."""
    order = torch.argsort(values)
    v, w = values[order].double(), weights[order].double()
    cw = torch.cumsum(w, 0) / w.sum()
    idx = int(torch.searchsorted(cw, torch.tensor(q - 1e-12, dtype=torch.float64)))
    return float(v[min(idx, len(v) - 1)])


def quantile_band_gate(
    features: torch.Tensor, direction: torch.Tensor, state: QuantileBandState, config: QuantileBand
) -> GateOutput:
    """Append this batch's features, re-score the buffer with `direction`, band the batch."""
    features = features.detach().float().cpu()
    n = features.shape[0]
    seen = state.seen + n
    stamps_new = torch.full((n,), seen, dtype=torch.long)
    if state.features is None:
        buf, stamps = features, stamps_new
    else:
        if state.features.shape[1:] != features.shape[1:]:
            raise ValueError("feature shape changed between gate calls; start a new band state")
        buf = torch.cat([state.features, features])
        stamps = torch.cat([state.stamps, stamps_new])
    buf, stamps = buf[-config.buffer_size :], stamps[-config.buffer_size :]
    new_state = QuantileBandState(features=buf, stamps=stamps, seen=seen)

    all_scores = module_dot_score(buf, direction)  # the history, re-scored by this direction
    scores = module_dot_score(features, direction)  # the batch (may exceed the buffer)
    info = {"scores": scores, "buffer": len(buf), "lo": math.nan, "hi": math.nan, "warmup": False}
    if len(buf) < max(config.warmup, 1):
        info["warmup"] = True
        return _output(torch.full((n,), ABSORB, dtype=torch.long), new_state, info)
    if config.halflife is None:
        weights = torch.ones(len(buf), dtype=torch.float64)
    else:
        age = (seen - stamps).double()  # current batch: age 0
        weights = torch.pow(0.5, age / config.halflife)
    keep_q = config.tail_q if config.keep_q is None else config.keep_q
    lo = weighted_quantile(all_scores, weights, keep_q) if keep_q > 0 else -math.inf
    hi = weighted_quantile(all_scores, weights, 1.0 - config.tail_q)
    info.update(lo=lo, hi=hi)
    return _output(zones_from_edges(scores, lo, hi), new_state, info)


@dataclass(frozen=True)
class PairBand:
    """Edges from the authored pairs' scores (`pair_band_state`)."""

    quantile: float = 0.75

    def __post_init__(self):
        if not 0.0 <= self.quantile <= 1.0:
            raise ValueError(f"pair band quantile must be in [0, 1]; got {self.quantile}")


@dataclass(frozen=True)
class PairBandState:
    lo: float
    hi: float


def pair_band_state(hack_scores, clean_scores, config: PairBand) -> PairBandState:
    """lo = `quantile` of clean-side pair scores, hi = `quantile` of hack-side pair scores
    (linear interpolation). Recompute after every re-extraction of the direction."""
    hack = torch.as_tensor(hack_scores, dtype=torch.float64).flatten()
    clean = torch.as_tensor(clean_scores, dtype=torch.float64).flatten()
    if hack.numel() == 0 or clean.numel() == 0:
        raise ValueError("pair band needs at least one hack-side and one clean-side pair score")
    if not (torch.isfinite(hack).all() and torch.isfinite(clean).all()):
        raise ValueError("non-finite pair score")
    return PairBandState(
        lo=float(torch.quantile(clean, config.quantile)),
        hi=float(torch.quantile(hack, config.quantile)),
    )


def pair_band_gate(
    features: torch.Tensor, direction: torch.Tensor, state: PairBandState, config: PairBand
) -> GateOutput:
    scores = module_dot_score(features, direction)
    info = {"scores": scores, "lo": state.lo, "hi": state.hi, "warmup": False}
    return _output(zones_from_edges(scores, state.lo, state.hi), state, info)


def direction_gate(features: torch.Tensor, direction: torch.Tensor, state, config) -> GateOutput:
    """Band gate for routeA/routeV (NO labels): dispatch on the band config type."""
    if isinstance(config, QuantileBand):
        return quantile_band_gate(features, direction, state or QuantileBandState(), config)
    if isinstance(config, PairBand):
        if not isinstance(state, PairBandState):
            raise ValueError("PairBand needs a PairBandState from pair_band_state(...)")
        return pair_band_gate(features, direction, state, config)
    raise TypeError(f"unknown band config {type(config).__name__}; use QuantileBand or PairBand")


def gate_for_arm(
    arm: str,
    n: int,
    *,
    features: torch.Tensor | None = None,
    direction: torch.Tensor | None = None,
    state=None,
    band=None,
    labels=None,
    recall: float = 1.0,
    seed: int = 0,
    step: int = 0,
    unflagged: str = "keep",
) -> GateOutput:
    """The trainer's single entry point. Refuses labels for every arm that does not route by them."""
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; choose one of {', '.join(ARMS)}")
    if labels is not None and arm not in LABEL_ARMS:
        raise ValueError(
            f"arm {arm!r} must not see labels (labels never route except in {LABEL_ARMS}); "
            "compute gate metrics with gate_metrics(...) instead"
        )
    if arm == "none":
        return none_gate(n)
    if arm == "plain":
        return plain_gate(n)
    if arm == "absorb":
        return absorb_gate(n)
    if arm in DIRECTION_ARMS:
        if features is None or direction is None or band is None:
            raise ValueError(f"arm {arm!r} needs features, direction and band")
        if features.shape[0] != n:
            raise ValueError(f"features hold {features.shape[0]} rollouts, expected {n}")
        return direction_gate(features, direction, state, band)
    if labels is None:
        raise ValueError(f"arm {arm!r} routes by the true hack label: pass labels")
    labels = torch.as_tensor(labels)
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},); got {tuple(labels.shape)}")
    if arm == "oracle":
        if recall != 1.0:
            raise ValueError(
                "arm 'oracle' has recall 1; use 'oracle_recall' for an imperfect monitor"
            )
        return oracle_gate(labels, 1.0, seed, step, unflagged)
    return oracle_gate(labels, recall, seed, step, unflagged)


# -- metrics (measurement only: outside the gate) -----------------------------------------------


def qmass(deployed_norm: float, quarantine_norm: float) -> float:
    """Quarantine share of update energy: ||g_q|| / (||g_d|| + ||g_q||); 0 when both are 0."""
    deployed_norm, quarantine_norm = float(deployed_norm), float(quarantine_norm)
    if deployed_norm < 0 or quarantine_norm < 0:
        raise ValueError("qmass takes norms (>= 0)")
    total = deployed_norm + quarantine_norm
    return 0.0 if total == 0 else quarantine_norm / total


def gate_metrics(scores, zones, labels, advantages) -> dict:
    """Zone shares over all rollouts; AUROC of score and F0.5/precision/recall of `zone == rout`
    against the oracle hack label, on rollouts with positive advantage (where reward is blind to
    hacking). NaN with a `*_reason` entry when undefined (a class absent). F0.5 is 0 (not NaN) when
    hacks exist but nothing is routed: recall 0 gives F 0 for any precision."""
    from sklearn.metrics import fbeta_score, precision_score, recall_score, roc_auc_score

    scores = np.asarray(torch.as_tensor(scores).double().cpu(), dtype=np.float64)
    zones = np.asarray(torch.as_tensor(zones).cpu(), dtype=np.int64)
    labels = np.asarray(torch.as_tensor(labels).cpu()).astype(bool)
    adv = np.asarray(torch.as_tensor(advantages).double().cpu(), dtype=np.float64)
    n = len(zones)
    if not (len(scores) == len(labels) == len(adv) == n):
        raise ValueError("gate_metrics: scores, zones, labels, advantages must have equal length")
    out: dict = {"n": n}
    for code, name in enumerate(ZONE_NAMES):
        out[f"share_{name}"] = float(np.mean(zones == code)) if n else math.nan

    pos_adv = adv > 0
    y, s, routed = labels[pos_adv], scores[pos_adv], zones[pos_adv] == ROUT
    n_hack = int(y.sum())
    out.update(n_pos_adv=int(pos_adv.sum()), n_hack_pos_adv=n_hack)
    if len(y) == 0 or n_hack in (0, len(y)):
        reason = (
            "no rollouts with advantage > 0"
            if len(y) == 0
            else (
                "no hack among advantage > 0 rollouts" if n_hack == 0 else "only hacks among A > 0"
            )
        )
        out.update(auroc=math.nan, auroc_reason=reason)
    else:
        out["auroc"] = float(roc_auc_score(y, s))
    if n_hack == 0:
        reason = "no rollouts with advantage > 0" if len(y) == 0 else "no hack among A > 0"
        out.update(f05=math.nan, precision=math.nan, recall=math.nan, f05_reason=reason)
    else:
        f05 = fbeta_score(y, routed, beta=0.5, zero_division=0.0)
        precision = precision_score(y, routed, zero_division=np.nan)
        recall = recall_score(y, routed)
        out.update(f05=float(f05), precision=float(precision), recall=float(recall))
    return out
