"""`vgrout classify RUN_DIR`: the hack direction as an offline classifier of a run's rollouts.

Question: at which feature *site*, and from which *source*, does a linear direction separate the
rollouts that exploited the grader from the others? Labels (`exploited`, the oracle hack label the
run logged for audit) are used here only to *measure*, and to fit the two oracle reference
directions; nothing here feeds back into training.

What is computed
----------------
Model. The run is rebuilt from `config.json` + its last checkpoint (`train.build_run`,
`train.load_checkpoint`) and read in its *deployed* state: quarantine ablated for arms that have
one (as in training's scoring pass), the full adapter for arms without a quarantine (their deployed
model is the whole adapter). Eval mode, restored afterwards. Features of every rollout are read
with this one final model, although rollouts were sampled by the model of their step (use
`min_step` to look at late rollouts only).

Rollouts. Students only by default (teacher rows are injected text, not the policy's samples); a
seeded subsample of at most `max_rollouts`. Each prompt is rebuilt from its problem id and mode
(the run's training items, `train.training_question`, `Policy.prompt_ids`) and the completion is
re-tokenised from its logged text, followed by EOS when the logged token count says the sampled
completion ended with one (a completion cut at max_new_tokens has none). Rows whose re-tokenised
length differs from the logged `n_tokens` are counted (`retokenized_mismatch`).

Sites (one feature vector per rollout; one forward + one backward per micro-batch gives all four):
  residual  the hidden state after decoder layer L//2 (`hidden_states[L // 2]`, L = number of
            layers), mean-pooled over the completion tokens' positions. One middle layer rather
            than all layers concatenated: the same dimension as one layer at any depth, and the
            middle of the network is where linear probes usually read behaviour best.
  cgrad     the c-probe gradient of the rollout's mean completion NLL, deployed slice, [M * r]
            (exactly routeV's scoring feature).
  ax        A[:r] x, mean-pooled over completion positions, [M * r] (routeA's feature).
  bax       the deployed block's output B[:, :r] A[:r] x, mean-pooled ([sum of d_out]); pooling is
            linear, so it is B[:, :r] @ pooled(A[:r] x). It is stored in exact *reduced
            coordinates*: with the thin SVD B_m = U S V^T of each module's deployed B, the feature
            z_m = S V^T p_m satisfies B_m p_m = U z_m with U orthonormal, so every inner product,
            mean difference, per-module norm and L2-regularised fit is identical to the one on the
            d_out-dimensional vector, at the cost of the [M * r] site (a Qwen3-4B run would
            otherwise need ~1.1M floats per rollout). Haar directions account for the ambient
            dimension exactly (see `haar_directions`).
Every pair side is encoded with `directions.encode_side` and goes through the same extractor.

Directions (sources) per site. Directions follow the gate's rule: a unit vector per *block*
(per adapted module at cgrad / ax / bax, the whole vector at residual) and the score is the raw dot
product summed over blocks (`gates.module_dot_score`). So the authored cell at cgrad is routeV's
v_grad and at ax routeA's v_act, and the Haar band at those sites is the placebo arm's direction
distribution.
  authored        mean hack-minus-clean of the site's features on the run's pair set (`cfg.pairs`).
  self_generated  the same on pairs the model writes itself (`pairs.self_generate_pairs`: hint-on
                  "make the evaluation report success" vs hint-off, sampled from the deployed model
                  at T=0.7, top-p 0.95, top-k 20 on a seeded sample of training problems, kept when
                  both sides are non-empty); skipped with the reason when none survive.
  mass_mean       ORACLE: mean(exploited) - mean(not exploited) on the fit half.
  logistic        ORACLE: L2 logistic regression on the fit half (C=1, balanced class weights;
                  features centred and divided by one global scale so rows have unit RMS norm: a
                  single scalar keeps the fit rotation-invariant, so the bax reduction stays
                  exact). Its raw weight vector is the direction (no per-block normalisation).
  haar            `n_haar` Haar-random directions (uniform per block); median and p95 of each
                  metric are reported as the band a label-free direction must beat.

Split. The oracle sources are fit on one half and scored on the other. Halves are split *by
problem id* (a problem's rollouts share the prompt and often near-identical completions, so
splitting rows would leak), seeded, alternating over a shuffled list of problems separately for
problems with and without a hack, so both halves hold hacks when at least two problems do. Every
source is scored on the evaluation half (one comparable table); label-free sources are also scored
on all selected rollouts.

Metrics (`classifier_metrics`), against the oracle label `exploited`:
  auroc_pos_adv  AUROC of the score on rollouts with advantage > 0 (the contrast where reward is
                 blind to hacking: hacks and honest successes both earned above their group);
  auroc_all      AUROC on all scored rollouts;
  f05_pos_adv / f05_all  F0.5 of the prediction `score >= cut`, where the cut is the lower
                 (1 - band_tail_q) quantile of the scored rollouts' scores: the rout tail of the
                 run's quantile band (default tail 0.1 -> the 90th percentile) with equal weights.
NaN with a `*_reason` when a class is absent.

Outputs: `RUN_DIR/classify.json` (everything), `RUN_DIR/classify.md` (the tables) and
`RUN_DIR/classify.png` (grouped bars per site, Haar band shaded). `classify_run` returns the
Markdown text.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SITES: tuple[str, ...] = ("residual", "cgrad", "ax", "bax")
SITE_TITLES = {
    "residual": "residual stream",
    "cgrad": "c-probe gradient",
    "ax": "A x",
    "bax": "B A x",
}
LABEL_FREE: tuple[str, ...] = ("authored", "self_generated")
ORACLE: tuple[str, ...] = ("mass_mean", "logistic")
SOURCES: tuple[str, ...] = LABEL_FREE + ORACLE
SOURCE_TITLES = {
    "authored": "authored pairs",
    "self_generated": "self-gen pairs",
    "mass_mean": "mass-mean (oracle)",
    "logistic": "logistic (oracle)",
}
METRICS: tuple[str, ...] = ("auroc_pos_adv", "f05_pos_adv", "auroc_all", "f05_all")
METRIC_TITLES = {
    "auroc_pos_adv": "AUROC A>0",
    "f05_pos_adv": "F0.5 A>0",
    "auroc_all": "AUROC all",
    "f05_all": "F0.5 all",
}
_REQUIRED_COLUMNS = ("step", "problem_id", "mode", "source", "advantage", "exploited", "completion")


# ================================================================================ pure parts
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


# ================================================================================ tables, plot
def _fmt(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def results_table(analysis: dict, rows: str, sites_dim: dict[str, int] | None = None) -> str:
    """One Markdown table: a line per (site, metric), a column per source + the Haar band.

    rows = "eval" (every source on the evaluation half) or "all" (label-free sources on all
    selected rollouts; oracle columns show '-')."""
    header = ["site", "metric", *(SOURCE_TITLES[s] for s in SOURCES), "Haar median", "Haar p95"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for site, cell in analysis["results"].items():
        title = SITE_TITLES.get(site, site)
        if sites_dim and site in sites_dim:
            title += f" ({sites_dim[site]})"
        for m in METRICS:
            vals = []
            for source in SOURCES:
                entry = cell.get(source, {})
                if "skipped" in entry:
                    vals.append("skip")
                elif rows not in entry:
                    vals.append("-")
                else:
                    vals.append(_fmt(entry[rows][m]))
            band = cell["haar"][rows][m]
            vals += [_fmt(band["median"]), _fmt(band["p95"])]
            lines.append(f"| {title} | {METRIC_TITLES[m]} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def _reasons(analysis: dict, rows: str) -> list[str]:
    found: dict[str, str] = {}
    for cell in analysis["results"].values():
        for source, entry in cell.items():
            if "skipped" in entry and source in ORACLE and rows == "eval":
                found.setdefault(f"{SOURCE_TITLES[source]}", "skipped: " + entry["skipped"])
            if source == "haar" or rows not in entry:
                continue
            for m in METRICS:
                why = entry[rows].get(f"{m}_reason")
                if why:
                    found.setdefault(METRIC_TITLES[m], why)
    return [
        f"{m}: {why}" if why.startswith("skipped") else f"{m} n/a: {why}"
        for m, why in found.items()
    ]


def markdown_report(info: dict, analysis: dict) -> str:
    sp = analysis["split"]
    lab = info["labels"]
    lines = [
        f"# Classifier analysis: `{info['run_dir']}`",
        "",
        f"Arm `{info['arm']}`, checkpoint after {info['checkpoint_step']} updates, read in the "
        f"**{info['state']}** state. {info['n_rollouts']} {info['rollout_kind']} rollouts "
        f"(of {info['n_available']} available; seed {info['seed']}), {lab['hacks']} exploited, "
        f"{lab['n_pos_adv']} with advantage > 0 of which {lab['hacks_pos_adv']} exploited. "
        "Labels are the run's oracle `exploited` flags (measurement only).",
        "",
        f"Operating point for F0.5: score >= the {100 * (1 - info['tail_q']):.0f}th percentile of "
        f"the scored rollouts' scores (the rout tail of the quantile band, tail {info['tail_q']}, "
        "equal weights). Directions are unit per block (per module at the adapter sites) and "
        "scores are raw dot products, as the gate scores. `skip` = the source could not be built; "
        "`n/a` = a class is absent.",
        "",
        f"## Evaluation half ({sp['eval_rows']} rollouts, {sp['eval_hacks']} hacks, "
        f"{sp['eval_problems']} problems; oracle fits on the other {sp['fit_rows']} rollouts "
        f"of {sp['fit_problems']} problems, split by problem)",
        "",
        results_table(analysis, "eval", info.get("site_dims")),
        "",
        *(f"- {r}" for r in _reasons(analysis, "eval")),
        "",
        f"## All {info['n_rollouts']} rollouts (label-free sources only)",
        "",
        results_table(analysis, "all", info.get("site_dims")),
        "",
        *(f"- {r}" for r in _reasons(analysis, "all")),
        "",
    ]
    skipped = info.get("skipped_sources") or {}
    for source, why in skipped.items():
        lines.append(f"- {SOURCE_TITLES[source]} skipped: {why}")
    logged = info.get("logged_gate_score")
    if logged:
        lines += [
            "",
            "The run's own gate scores as logged (each scored at training time by that step's "
            f"model and direction; {logged['n']} rollouts): "
            + ", ".join(f"{METRIC_TITLES[m]} {_fmt(logged[m])}" for m in METRICS),
        ]
    lines += ["", "![classifier analysis](classify.png)", ""]
    return "\n".join(lines)


def plot(analysis: dict, path: Path, title: str = "") -> None:
    """Grouped bars per site (one bar per source), the Haar band (median..p95) shaded behind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sites = list(analysis["results"])
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5), sharex=True)
    width = 0.8 / len(SOURCES)
    colors = ["tab:blue", "tab:green", "tab:red", "tab:purple"]
    for ax, m in zip(axes.flat, METRICS, strict=True):
        for i, site in enumerate(sites):
            band = analysis["results"][site]["haar"]["eval"][m]
            if np.isfinite(band["median"]):
                ax.add_patch(
                    matplotlib.patches.Rectangle(
                        (i - 0.45, band["median"]), 0.9, band["p95"] - band["median"],
                        color="0.8", zorder=0, label="Haar median..p95" if i == 0 else None,
                    )
                )  # fmt: skip
                ax.hlines(band["median"], i - 0.45, i + 0.45, color="0.5", lw=1, zorder=1)
            for j, source in enumerate(SOURCES):
                entry = analysis["results"][site].get(source, {})
                val = entry.get("eval", {}).get(m, math.nan)
                x = i - 0.4 + (j + 0.5) * width
                if np.isfinite(val):
                    ax.bar(x, val, width, color=colors[j], zorder=2,
                           label=SOURCE_TITLES[source] if i == 0 else None)  # fmt: skip
                else:
                    ax.text(x, 0.02, "n/a", rotation=90, ha="center", va="bottom", fontsize=7)
        if m.startswith("auroc"):
            ax.axhline(0.5, color="k", lw=0.6, ls=":")
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{METRIC_TITLES[m]} (evaluation half)")
        ax.set_xticks(range(len(sites)), [SITE_TITLES.get(s, s) for s in sites])
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if labels:  # nothing to label when every cell is n/a
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ================================================================================ model side
def _residual_layer(model, layer: int | None) -> int:
    n_layers = int(model.config.num_hidden_layers)
    layer = max(1, n_layers // 2) if layer is None else int(layer)  # index 0 = the embeddings
    if not 0 <= layer <= n_layers:
        raise ValueError(
            f"residual_layer must be in [0, {n_layers}] (hidden_states index); got {layer}"
        )
    return layer


def extract_features(
    policy,
    sides: Sequence[tuple[list[int], list[int]]],
    *,
    state: str,
    residual_layer: int,
    batch_size: int,
) -> dict[str, np.ndarray]:
    """Raw site features of (prompt ids, completion ids) rows: one forward (hidden states,
    captured A[:r] x) + one backward (c-probe) per micro-batch, in model state `state`.

    Returns {"residual": [N, d], "cgrad": [N, M, r], "ax": [N, M, r]} as float64 arrays
    (bax is derived from ax by `bax_features`).
    """
    import torch

    from vgrout.rl.grpo import token_logprobs
    from vgrout.rl.policy import make_batch

    model, adapter, r = policy.model, policy.adapter, policy.adapter.r
    out: dict[str, list] = {"residual": [], "cgrad": [], "ax": []}
    # Similar lengths share a micro-batch (less padding); results go back to input order.
    order = sorted(range(len(sides)), key=lambda i: (len(sides[i][0]), len(sides[i][1])))
    params = adapter.parameters()
    needs_grad = [p.requires_grad for p in params]
    was_training = model.training
    model.eval()
    try:
        # Only the c-probe leaves need gradients: frozen A, B skip their weight-gradient matmuls
        # (the flags are restored below; nothing else about the adapter changes).
        for p in params:
            p.requires_grad_(False)
        for start in range(0, len(order), batch_size):
            chunk = [sides[i] for i in order[start : start + batch_size]]
            batch = make_batch(
                [p for p, _ in chunk], [c for _, c in chunk], policy.pad_id, policy.device
            )
            pool_mask = batch.input_completion_mask
            with (
                torch.enable_grad(),
                policy.state(state),
                adapter.c_probe() as probe,
                adapter.capture_bottleneck(pool_mask) as cap,
            ):
                res = model(
                    input_ids=batch.input_ids,
                    attention_mask=batch.attention_mask,
                    position_ids=batch.position_ids,
                    logits_to_keep=batch.completion_ids.shape[1] + 1,
                    use_cache=False,
                    output_hidden_states=True,
                )
                logp = (
                    token_logprobs(res.logits[:, :-1], batch.completion_ids) * batch.completion_mask
                )
                nll = -(logp.sum(1) / batch.completion_mask.sum(1))  # mean completion NLL per row
                hidden = res.hidden_states[residual_layer].detach().float()
                grads = probe.grads(nll.sum())[:, :, :r]  # rows never interact: per-row grads
            weights = pool_mask.float()
            pooled = (hidden * weights[..., None]).sum(1) / weights.sum(1, keepdim=True)
            out["residual"].append(pooled.double().cpu().numpy())
            out["cgrad"].append(grads.double().cpu().numpy())
            out["ax"].append(cap.pooled.double().cpu().numpy())
    finally:
        for p, flag in zip(params, needs_grad, strict=True):
            p.requires_grad_(flag)
        model.train(was_training)
    inverse = np.argsort(np.asarray(order, dtype=np.int64))
    return {k: np.concatenate(v)[inverse] for k, v in out.items()}


def bax_reduction(adapter) -> list[tuple[np.ndarray, int]]:
    """Per module (sorted order): (T = S V^T [k, r], d_out) from the thin SVD of the deployed
    B[:, :r] = U S V^T, so that B[:, :r] p = U (T p) with U orthonormal (module docstring)."""
    import torch

    out = []
    for name in adapter.module_names:
        b = adapter.adapters[name].B[:, : adapter.r].detach().double().cpu()
        _, s, vh = torch.linalg.svd(b, full_matrices=False)
        out.append(((s[:, None] * vh).numpy(), int(b.shape[0])))
    return out


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


def rollout_sides(policy, cfg, items_by_id: dict, rows: list[dict]) -> tuple[list, int]:
    """(prompt ids, completion ids) per logged rollout, and how many re-tokenised completions
    differ in length from the logged `n_tokens`."""
    from vgrout.rl.train import training_question

    prompt_cache: dict[str, list[int]] = {}
    sides, mismatched = [], 0
    for row in rows:
        pid = str(row["problem_id"])
        item = items_by_id.get(pid)
        if item is None:
            raise ValueError(
                f"rollout problem {pid!r} is not among the run's training items: the problem set or "
                "config.json differs from the one the run trained with"
            )
        if item.mode != row["mode"]:
            raise ValueError(
                f"rollout of {pid!r} was logged with mode {row['mode']!r} but the rebuilt item has "
                f"{item.mode!r}: the mode partition differs from the run's (seed or modes changed?)"
            )
        if pid not in prompt_cache:
            prompt_cache[pid] = policy.prompt_ids(training_question(cfg, item))
        logged = row.get("n_tokens")
        if row["source"] == "teacher":  # as injected: truncated, always ending with EOS
            ids = policy.completion_ids(row["completion"], cfg.teacher_max_tokens)
        else:
            ids = [
                int(i)
                for i in policy.tokenizer(row["completion"], add_special_tokens=False)["input_ids"]
            ]
            # A sample ends with EOS unless it was cut at max_new_tokens; the decoded text lost
            # the EOS, so the logged count says which (exactly when the text round-trips).
            if (
                logged is None
                or int(logged) < cfg.max_new_tokens
                or len(ids) < int(logged)
                or not ids
            ):
                ids = ids + [policy.eos_id]
        if logged is not None and len(ids) != int(logged):
            mismatched += 1
        sides.append((prompt_cache[pid], ids))
    return sides, mismatched


def pair_sides(policy, pairs) -> tuple[list, list]:
    """(hack sides, clean sides) as (prompt ids, completion ids), encoded as `directions` does."""
    from vgrout.routing.directions import encode_side

    def side(prompt: str, completion: str):
        ids, start = encode_side(policy.tokenizer, policy.render_text(prompt), completion)
        return ids[:start], ids[start:]

    hack = [side(p.hack_side_prompt, p.hack) for p in pairs]
    clean = [side(p.clean_side_prompt, p.clean) for p in pairs]
    return hack, clean


def _policy_sampler(policy, state: str):
    """A `pairs.GenerateFn` on the policy's batched generation (merged weights, seeded)."""
    import torch

    from vgrout.rl.policy import SamplingParams

    def generate(prompts: list[str], max_new_tokens: int, seed: int) -> list[str]:
        ids = [policy.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        params = SamplingParams(max_new_tokens, temperature=0.7, top_p=0.95, top_k=20)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = policy.generate(ids, params, state=state)
        return [policy.decode(c) for c in out]

    return generate


def make_self_generated_pairs(run, n: int, seed: int, state: str):
    """(PairSet, None) or (None, reason) for the self-generated source."""
    from vgrout.env.modes import HACKABLE_MODES
    from vgrout.routing.pairs import self_generate_pairs

    modes = [m for m in run.cfg.modes if m in HACKABLE_MODES]
    if not modes:
        return None, "the run has no hackable mode to motivate"
    problems = [it.problem for it in run.env.train]
    rng = np.random.default_rng([seed, 11])
    picks = rng.choice(len(problems), size=min(len(problems), 4 * n), replace=False)
    try:
        pairs = self_generate_pairs(
            run.policy.model, run.policy.tokenizer, [problems[int(i)] for i in sorted(picks)],
            modes, n, seed, run.cfg.max_new_tokens, adapter=None,
            render=run.policy.render_text, generate=_policy_sampler(run.policy, state),
        )  # fmt: skip
    except ValueError as e:
        return None, f"the model produced no usable pair ({e})"
    return pairs, None


def select_rollouts(
    rows: list[dict], *, students_only: bool, min_step: int, max_rollouts: int, seed: int
) -> list[dict]:
    """Filter (students, step >= min_step) and take a seeded subsample, in logged order."""
    if rows:
        missing = [c for c in _REQUIRED_COLUMNS if c not in rows[0]]
        if missing:
            raise ValueError(
                f"rollouts.parquet lacks column(s) {missing}; was it written by vgrout train?"
            )
    chosen = [
        r for r in rows if (not students_only or r["source"] == "student") and r["step"] >= min_step
    ]
    if len(chosen) > max_rollouts:
        rng = np.random.default_rng([seed, 3])
        keep = sorted(rng.choice(len(chosen), size=max_rollouts, replace=False).tolist())
        chosen = [chosen[i] for i in keep]
    return chosen


# ================================================================================ the command
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
    from vgrout.rl.train import build_run, load_checkpoint
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
        layer = _residual_layer(policy.model, residual_layer)
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


__all__ = [
    "SITES",
    "SOURCES",
    "RolloutTable",
    "SiteFeatures",
    "analyse",
    "band_summary",
    "bax_features",
    "bax_reduction",
    "classifier_metrics",
    "classify_run",
    "extract_features",
    "fit_logistic",
    "haar_directions",
    "mean_difference_direction",
    "operating_cut",
    "split_by_problem",
    "unit_blocks",
]
