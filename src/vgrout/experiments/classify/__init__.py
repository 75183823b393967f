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
  self_generated  the same on pairs the model writes itself (`self_generated.self_generate_pairs`: hint-on
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

Modules: `features` (SiteFeatures, the four sites), `directions` (mean difference, logistic,
Haar), `metrics` (AUROC, F0.5, the band), `analysis` (the split and `analyse`: pure), `extract`
(the model side: rollouts, pairs, the feature pass), `render` (classify.md, classify.png) and
`command` (`classify_run`).
"""

from vgrout.experiments.classify.analysis import (
    LABEL_FREE,
    ORACLE,
    SOURCE_TITLES,
    SOURCES,
    RolloutTable,
    analyse,
    score,
    split_by_problem,
)
from vgrout.experiments.classify.command import classify_run
from vgrout.experiments.classify.directions import (
    fit_logistic,
    haar_directions,
    mean_difference_direction,
    unit_blocks,
)
from vgrout.experiments.classify.extract import (
    bax_reduction,
    extract_features,
    make_self_generated_pairs,
    pair_sides,
    rollout_sides,
    select_rollouts,
)
from vgrout.experiments.classify.features import (
    SITE_TITLES,
    SITES,
    SiteFeatures,
    bax_features,
    site_features,
)
from vgrout.experiments.classify.metrics import (
    METRIC_TITLES,
    METRICS,
    band_summary,
    classifier_metrics,
    operating_cut,
)
from vgrout.experiments.classify.render import markdown_report, plot, results_table

__all__ = [
    "LABEL_FREE",
    "METRICS",
    "METRIC_TITLES",
    "ORACLE",
    "SITES",
    "SITE_TITLES",
    "SOURCES",
    "SOURCE_TITLES",
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
    "make_self_generated_pairs",
    "markdown_report",
    "mean_difference_direction",
    "operating_cut",
    "pair_sides",
    "plot",
    "results_table",
    "rollout_sides",
    "score",
    "select_rollouts",
    "site_features",
    "split_by_problem",
    "unit_blocks",
]
