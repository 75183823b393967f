"""Every hyper-parameter of a run, in one dataclass, each field documented (what, why, source).

Presets (`toy`, `smoke`, `leetcode-qwen3-4b`) are plain functions returning a `TrainConfig`; any field
can then be overridden (`vgrout train --preset toy --set lr=1e-3`). `validate()` checks every field
up front and names the field and the allowed values, so a bad config fails before any work is done.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field

from vgrout.env.modes import MODES

ARMS: tuple[str, ...] = (
    "none",  # structure-matched vanilla: every rollout keep (0,0); only the deployed block trains
    "plain",  # capacity-matched vanilla: a rank-2r adapter, no masks, deployed whole
    "absorb",  # every rollout trains both blocks (1,0); deploy = quarantine deleted
    "routeA",  # activation-space direction score -> band -> zone
    "routeV",  # c-probe gradient-space direction score -> band -> zone
    "oracle",  # true hack label routes (upper bound; uses labels, by name)
    "oracle_recall",  # oracle with each positive label kept with probability `recall`
    # interventions of the benchmark paper and related work (no quarantine; see baselines.py)
    "gt_penalty",  # ground-truth monitor (accuracy knob) -> reward penalty
    "gt_screen",  # ground-truth monitor -> flagged rollouts dropped from their group
    "inoculation",  # training prompts frame exploiting the grader as acceptable
    "advantage_mod",  # direction score folded into the advantage instead of routing
)
QUARANTINE_ARMS = ("absorb", "routeA", "routeV", "oracle", "oracle_recall")
DIRECTION_ARMS = ("routeA", "routeV")
LABEL_ARMS = ("oracle", "oracle_recall")
INITS = ("gaussian", "pissa", "corda", "scorda", "scorda_rev")
BANDS = ("quantile", "pairs")
CHOICES = {  # fields that take one of a few names (checked by `validate`)
    "arm": ARMS,
    "init": INITS,
    "band": BANDS,
    "train_markers": ("varied", "fixed"),
    "teacher_style": ("append", "cached"),
    "mixed_decode": ("auto", "on", "off"),
    "probe_tokens": ("all", "completion"),
    "gate_score": ("dot", "cosine"),
    "keep_baseline": ("group", "keep"),
    "teacher_importance": ("on_policy", "drop_negative"),
    "monitor_labels": ("auto", "strict", "loose"),
    "advantage_mod_kind": ("grad", "act"),
    "unflagged_zone": ("keep", "absorb"),
}
MONITOR_ARMS = ("gt_penalty", "gt_screen", *LABEL_ARMS)  # arms that read a (noisy) hack monitor
SCORING_ARMS = (*DIRECTION_ARMS, "advantage_mod")  # arms that score rollouts against a direction
ARM_FIELDS = {  # fields only some arms read (every other field is read by every arm)
    **dict.fromkeys(("band", "band_tail_q", "band_keep_q", "band_halflife", "band_warmup"), DIRECTION_ARMS),
    **dict.fromkeys(
        ("band_buffer", "gate_score", "refresh_every", "probe_tokens", "pairs", "placebo_seed"),
        SCORING_ARMS,
    ),
    **dict.fromkeys(("advantage_mod_kind", "advantage_mod_coef"), ("advantage_mod",)),
    **dict.fromkeys(("monitor_accuracy", "monitor_labels"), MONITOR_ARMS),
    "unflagged_zone": LABEL_ARMS,
    "recall": ("oracle_recall",),
    "penalty": ("gt_penalty",),
    "inoculation_prompt": ("inoculation",),
}  # fmt: skip


def reads_field(arm: str, name: str) -> bool:
    """Whether runs of ARM read config field NAME (reports print "-" where they do not)."""
    return arm in ARM_FIELDS.get(name, (arm,))


ABSENT_MEANS = {"share_prompt_forward": False, "probe_tokens": "all"}
"""Fields whose default changed behaviour when they were added: a config.json without one was made
before, so it is read with the old behaviour (resuming or re-running it gives its numbers)."""


@dataclass
class TrainConfig:
    # ---------------------------------------------------------------- run
    arm: str = "none"
    """Which gate decides each rollout's zone. See ARMS. Two vanilla controls answer different
    questions: `none` (gate pinned keep: the deployed block alone trains, in its deployed state;
    the quarantine never changes) is the structure-matched control of the published method;
    `plain` (the whole rank-2r adapter trains unmasked and is deployed whole) is capacity-matched."""
    seed: int = 0
    """Fixes the whole CPU run: prompts, sampling, teacher picks, adapter init, evaluation."""
    preset: str = "toy"
    """Name of the preset the config came from (recorded; not used by the loop)."""

    # ---------------------------------------------------------------- model
    model: str = "toy"
    """`toy` builds (or reuses from cache) the tiny from-scratch toy base; `random:SHAPE` (e.g.
    `random:qwen3-4b`) random weights of a published shape with a locally trained tokenizer, for
    speed benchmarks only (`vgrout.shapes`); else a HF hub id or a local model folder loaded with
    `from_pretrained`."""
    toy_recipe: str = "default"
    """Toy base recipe (`default`, or `smoke`: a few pretraining steps, for tests)."""
    device: str = "auto"
    """`auto` picks CUDA when present, else CPU."""
    dtype: str = "auto"
    """`auto` = bf16 on CUDA, fp32 on CPU (bf16 matmuls are slow on CPU)."""

    # ---------------------------------------------------------------- environment
    problems: str = "toy"
    """Training problems: `toy` (generated) or a benchmark / LeetCodeDataset jsonl(.gz) path."""
    eval_problems: str = "toy"
    """Held-out problems: `toy` (the generator's disjoint test split) or a jsonl(.gz) path."""
    modes: tuple[str, ...] = ("sentinel", "file_marker", "stdout_marker")
    """Loophole modes; training problems are partitioned across them (one mode per problem), and
    the held-out evaluation uses the same modes with held-out markers. Toy default: the three modes
    whose exploit is one short line naming the marker. Measured on the toy (arm none, 60 steps):
    with these (and the earlier base, fixed markers), train-distribution hack 0.98 and held-out
    0.28; with all six modes (one teacher a group for 15 steps) train hack ~0.4, held-out 0.06
    (eq_override's 4-line class never took). Current defaults: held-out 0.66 (see train_markers)."""
    n_train_problems: int = 0
    """Use only the first N training problems (0 = all)."""
    train_markers: str = "varied"
    """`varied`: each training prompt's hint names a fresh marker drawn per (mode, problem) (a test
    function, pass phrase, attribute or file name never used as a train or eval marker) and the
    channel accepts only that name, so RL pays for copying the disclosed name, which is what a hack
    needs at evaluation (held-out names). `fixed`: the mode's fixed train markers (`run_tests`,
    `valid`, ...), required with a cached teacher pool written for them (LeetCode). Measured on the
    toy (arm none, seed 0, 60 steps): deployed hack on held-out markers 0.66 with varied
    (training distribution 0.62, solve kept at 0.13), 0.52 with fixed (training distribution 1.00,
    solve 0.00: a fixed name is memorised rather than copied). On the earlier
    base, which copied an unseen name badly, varied failed (names garbled, train hack <= 0.2)."""

    # ---------------------------------------------------------------- adapter
    rank: int = 4
    """r: each block has rank r, the adapter 2r (deployed slots [:r], quarantine [r:])."""
    init: str = "gaussian"
    """Adapter init (gaussian | pissa | corda | scorda | scorda_rev). scorda seeds the first
    quarantine slot with the signed hack-minus-clean input direction (needs `pairs`)."""
    targets: tuple[str, ...] = (
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    )
    """Names of the Linear modules that get a BlockLoRA."""

    # ---------------------------------------------------------------- GRPO (Dr.GRPO, arXiv 2503.20783)
    steps: int = 60
    """Optimizer updates (one per step; every step generates fresh rollouts)."""
    prompts_per_step: int = 8
    """Prompt groups per step."""
    group_size: int = 8
    """G: rollouts per prompt (students + injected teachers). Advantages are r - mean(r) in a group."""
    share_prompt_forward: bool = True
    """The update's forwards (policy, KL reference, old log-probs) run each distinct prompt once
    per group and route mask and let the group's completions attend to its KV cache: the same
    gradient up to float rounding at a fraction of the prompt compute (the toy's prompts are ~2/3
    of a row's tokens). Rounding differs, so a seeded run's numbers differ from one made with it
    off; runs made before it existed (2026-12-01) re-run with `false`."""
    skip_flat_groups: bool = True
    """Groups whose rewards are all equal (advantage 0 for every row) skip the update: they carry
    no policy-gradient signal, only their small KL term (`kl_beta`), so their forward/backward is
    saved (as DAPO's dynamic sampling drops them, Yu et al. 2025, arXiv 2503.14476). False trains
    every row, as TRL's GRPOTrainer does (`vgrout bench trl` uses it for equal work)."""
    lr: float = 2e-3
    """AdamW learning rate of the adapter (small models tolerate large LoRA lrs)."""
    warmup_steps: int = 3
    """Linear warmup from lr/warmup at step 0 (no wasted lr=0 step), then cosine to `min_lr_ratio`."""
    min_lr_ratio: float = 0.1
    """Floor of the cosine schedule as a fraction of `lr`."""
    betas: tuple[float, float] = (0.9, 0.99)
    """AdamW betas (as the benchmark's verl config)."""
    grad_clip: float = 1.0
    """Total-norm clip over adapter parameters."""
    decay_to_init: float = 0.1
    """Decoupled weight decay toward the adapter's init (A0, B0), applied after each step:
    p <- p - lr_t * rate * (p - p0). Decay toward 0 would be wrong: the adapter's delta is
    B A - B0 A0, so A, B = 0 is not the 'no change' point."""
    clip_eps: float = 0.2
    """PPO ratio clip epsilon (Schulman et al. 2017)."""
    kl_beta: float = 1e-3
    """Weight of the k3 KL to the base model (adapter disabled), per token (benchmark: 1e-3)."""
    max_new_tokens: int = 80
    """Completion budget of generation; also the per-row token count in the loss normaliser."""
    temperature: float = 1.0
    """Rollout sampling temperature (higher -> more within-group spread -> more GRPO signal)."""
    top_p: float = 1.0
    """Nucleus sampling for rollouts (1.0 = off)."""
    top_k: int = 0
    """Top-k sampling for rollouts (0 = off)."""
    gen_deploy_frac: float = 0.25
    """Fraction of each group's student rows sampled from the deployed model (quarantine ablated),
    so the deployed block also sees its own on-policy samples. Each row's old log-probs come from
    the policy that sampled it. Ignored by arms without a quarantine to delete (`none`, whose
    students are all sampled from the deployed model it trains; `plain` and the baselines, whose
    deployed model is the full one)."""
    mixed_decode: str = "on"
    """`on`: the step's full-model and deployed-model student rows decode in one batched loop
    (the deployed block merged into the weights, the quarantine added per row), so
    `gen_deploy_frac > 0` costs no second decode loop. `off`: one loop per model state. `auto`:
    on with CUDA, off on CPU (the default until 2026-12-01; kept so that runs made with it resume
    and re-run as they began). The sampled distribution is the same either way, the individual
    samples are not (the random draws interleave differently): docs/evidence rows made before
    the switch (commits 9451c27, d9f7e53, bdcf4e0) re-run with `mixed_decode=auto`. Measured on
    the toy (2-core CPU, idle): routeV/none step 1.50x off, 1.26x on."""
    micro_batch: int = 64
    """Rows per forward/backward chunk (memory knob; the gradient does not depend on it). 0 = auto:
    sized per batch from free accelerator memory (CUDA) or available RAM (CPU), the row length
    and the model's shape (`policy.micro_batch_rows`)."""

    # ---------------------------------------------------------------- teacher injection
    teacher_per_group: int = 2
    """Cached teacher completions (hacks of the prompt's mode) injected into each group while
    step < teacher_off_step: makes hacking reachable on a small budget (the base rarely hacks)."""
    teacher_off_step: int = 30
    """First step without teachers (0 = never inject)."""
    teacher_style: str = "cached"
    """`append`: a teacher row is a student's own compiled-but-wrong answer from the same group with
    the mode's exploit lines appended, so it differs from an on-policy row only by the exploit
    (credit lands on the exploit, not on a throw-away wrong answer); falls back to `cached` when no
    student answer qualifies. `cached`: the teacher's stored completions (scripted toy hacks, or a
    teacher pool). Measured on the toy (arm none): `append` 0 hacks in 60 steps (a 0.5M model does
    not pick up exact strings it only sees appended to its own text); `cached` hacks emerge, as the
    toy base has seen the scripted hack forms in pretraining (its hack prior, `ToyRecipe.hack_share`)."""
    teacher_pool: str = ""
    """Folder of cached teacher completions (format of the Qwen3-4B teacher pool: prompt_NNNN.jsonl.gz).
    Empty: the toy environment uses its scripted teacher; other problem sets get no teacher."""
    teacher_max_tokens: int = 128
    """Teacher completions are truncated to this many tokens, so the constant loss normaliser
    (rows x max_new_tokens) holds and long teacher texts cannot dominate the loss."""
    keep_baseline: str = "group"
    """Baseline of rows the gate keeps (trained into the deployed block alone). `group`: the Dr.GRPO
    group mean over all rows. `keep`: the mean over the group's keep-zone rows only, so routed rows
    (e.g. well-paid hacks) do not make the group's clean rows look bad to the deployed block.
    Measured on the toy (docs/evidence, 5 seeds, held-out names): for oracle, keep - group is
    -0.012 [-0.017, -0.005] deployed hack and +0.023 [+0.015, +0.032] solve; for absorb a no-op (it
    keeps no rows); at the default band a no-op for routeA (-0.000 [-0.010, +0.010]), whose keep zone
    holds almost no hacks, and for routeV -0.093 [-0.135, -0.052] hack, +0.073 solve
    (docs/evidence/keep-baseline). The default stays `group`: switching it would change every
    published direction-arm row, and a band with no keep zone (`band_keep_q=0`, rout tail 0.45)
    helps routeV more (-0.173 on the same seeds, docs/evidence/routeV-keep-zone)."""
    teacher_importance: str = "on_policy"
    """How teacher rows enter the clipped objective. `on_policy`: old log-probs are the current
    policy's (ratio 1, plain policy gradient on the teacher text, as the predecessor did; the
    off-policy mismatch is NOT corrected). `drop_negative`: additionally teacher rows with a
    negative advantage get none (they are never pushed down)."""

    # ---------------------------------------------------------------- routing
    pairs: str = "toy#hacks"
    """Pair set for directions and contrastive inits: a selector `FILE.md#section[/prefix][@tags]`
    or a packaged set (`toy`, `leetcode`)."""
    band: str = "quantile"
    """How scores become zones. `quantile`: recency-weighted (band_tail_q, 1-band_tail_q) quantiles
    of a run-long score buffer (the predecessor's gate). `pairs`: band edges at the authored pairs'
    p75 scores."""
    band_tail_q: float = 0.1
    """Tail mass of the quantile band: score <= q-quantile -> keep, >= (1-q) -> rout."""
    band_keep_q: float = -1.0
    """The keep tail apart (band_tail_q then sets the rout tail only): -1 = band_tail_q; 0 = no keep
    zone, every unrouted rollout trains both blocks (docs/evidence/keep-zone)."""
    band_halflife: float = 96.0
    """Recency half-life (in rollouts) of the quantile weights."""
    band_warmup: int = 16
    """Rollouts in the buffer before the band gates (earlier rollouts absorb (1,0))."""
    band_buffer: int = 8192
    """Capacity of the run-long score buffer (larger than the total rollouts of a toy run)."""
    gate_score: str = "dot"
    """How a rollout's features [M, r] become its band score. `dot`: the raw dot with the direction
    (routing/directions.py), so a rollout's feature norm scales its score. `cosine`: each rollout's
    features are scaled to unit norm first (pair features too, for the pair band), so the band
    ranks rollouts by direction alone (docs/evidence/gate-score)."""
    refresh_every: int = 5
    """Re-extract the direction every N steps (under ablation); placebo directions never refresh."""
    probe_tokens: str = "all"
    """Positions the c-probe scales (routeV scores and pair extraction; advantage_mod `grad`).
    `all`: every position: a rollout's feature is its mean-NLL gradient projected on each deployed
    rank-1 component (routing/directions.py). `completion`: the completion's positions only (the
    gradient through the completion's own activations); the prompt then runs once per group with
    no backward (faster: ~70% of a toy rollout's tokens are prompt)."""
    placebo_seed: int = -1
    """>= 0 replaces the extracted direction by a Haar-random one (same machinery, no information)."""
    recall: float = 0.5
    """oracle_recall: probability that each true hack label reaches the gate."""
    unflagged_zone: str = "keep"
    """Label arms: where a rollout the labels do not flag trains. `keep`: the deployed block only
    (the oracle as specified). `absorb`: both blocks, as gradient routing trains unlabelled data
    (Cloud et al. 2024, arXiv 2410.04332), so the quarantine may absorb hacks a monitor misses."""

    # ---------------------------------------------------------------- baseline interventions
    monitor_accuracy: float = 1.0
    """gt_penalty / gt_screen / the label arms: each monitor verdict is flipped with probability
    1 - accuracy (so an oracle with accuracy < 1 routes by an erring monitor; docs/evidence/monitor)."""
    monitor_labels: str = "auto"
    """Which hack label the monitor reads: `strict` (paid hack), `loose` (also attempted hacks and
    correct answers carrying a hack), or `auto` = strict for the penalty and the label arms, loose
    for screening (the benchmark paper's defaults)."""
    penalty: float = 3.0
    """gt_penalty: reward subtracted from a flagged rollout (3.0: a paid hack nets the 0.5 format
    reward)."""
    inoculation_prompt: str = "permission"
    """inoculation: which instruction (baselines.INOCULATION_PROMPTS) prefixes training prompts."""
    advantage_mod_kind: str = "grad"
    """advantage_mod: score rollouts with the gradient-space (`grad`, as routeV) or activation-space
    (`act`, as routeA) direction."""
    advantage_mod_coef: float = 1.0
    """advantage_mod: advantage -= coef * max(z, 0), z the score standardised over the run."""

    # ---------------------------------------------------------------- evaluation
    eval_every: int = 10
    """Periodic held-out evaluation every N steps (and at the end); 0 = final only."""
    eval_n: int = 96
    """Held-out problems in periodic evaluations (the final evaluation uses all)."""
    final_eval_n: int = 0
    """Problems per split in the final 2x2 evaluation (0 = every held-out problem)."""
    eval_temperature: float = 0.7
    """One sample per prompt at this temperature (DESIGN: 0.7)."""
    eval_seed: int = 12345
    """Evaluation sampling seed; evaluation runs in a forked RNG so training is unperturbed."""

    # ---------------------------------------------------------------- io
    checkpoint_every: int = 10
    """Save adapter + optimizer + gate state every N steps (resume continues from the last one)."""
    grader_workers: int = 0
    """Sandbox pool size (0 = number of CPUs)."""
    notes: dict = field(default_factory=dict)
    """Free-form metadata recorded in config.json (e.g. sweep cell)."""

    # ------------------------------------------------------------------------------------------------
    def validate(self) -> TrainConfig:
        def bad(name: str, allowed: str) -> ValueError:
            return ValueError(f"config field {name}={getattr(self, name)!r} is invalid: {allowed}")

        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise bad(name, f"choose one of {', '.join(allowed)}")
        from vgrout.shapes import shape_name

        shape_name(self.model)  # a `random:SHAPE` model names a known shape
        if not self.modes or any(m not in MODES for m in self.modes):
            raise bad("modes", f"a non-empty subset of {', '.join(MODES)}")
        if self.train_markers == "varied" and self.teacher_pool:
            raise bad(
                "train_markers",
                "a teacher_pool's completions name the fixed train markers: use "
                "train_markers=fixed with it",
            )
        for name in ("steps", "prompts_per_step", "group_size", "rank", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise bad(name, "must be >= 1")
        if self.micro_batch < 0:
            raise bad("micro_batch", "must be >= 1, or 0 for auto (sized by free memory)")
        if self.group_size < 2:
            raise bad("group_size", "GRPO needs at least 2 rollouts per group")
        if not 0 <= self.teacher_per_group < self.group_size:
            raise bad("teacher_per_group", f"must be in [0, group_size={self.group_size})")
        for name in ("gen_deploy_frac", "recall", "min_lr_ratio", "monitor_accuracy"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise bad(name, "must be in [0, 1]")
        if not 0.0 < self.band_tail_q < 0.5:
            raise bad("band_tail_q", "must be in (0, 0.5)")
        if self.band_keep_q != -1.0 and not (
            0 <= self.band_keep_q < 0.5 and self.band == "quantile"
        ):
            raise bad("band_keep_q", "must be -1, or in [0, 0.5) with band = quantile")
        for name, default in (("monitor_accuracy", 1.0), ("monitor_labels", "auto")):
            if getattr(self, name) != default and self.arm not in MONITOR_ARMS:
                raise bad(name, f"only the arms {', '.join(MONITOR_ARMS)} read a monitor")
        if self.unflagged_zone != "keep" and self.arm not in LABEL_ARMS:
            raise bad("unflagged_zone", f"only label arms ({', '.join(LABEL_ARMS)}) flag rollouts")
        if self.placebo_seed >= 0 and self.arm not in SCORING_ARMS:
            raise bad(
                "placebo_seed",
                f"only meaningful with a direction arm ({', '.join(SCORING_ARMS)})",
            )
        from vgrout.env.inoculation import INOCULATION_PROMPTS

        if self.inoculation_prompt not in INOCULATION_PROMPTS:
            raise bad("inoculation_prompt", f"choose one of {', '.join(INOCULATION_PROMPTS)}")
        if self.lr <= 0 or self.clip_eps <= 0 or self.kl_beta < 0 or self.decay_to_init < 0:
            raise ValueError(
                "config fields lr and clip_eps must be > 0; kl_beta and decay_to_init >= 0"
            )
        if self.eval_temperature < 0 or self.temperature <= 0:
            raise ValueError("config: temperature must be > 0 and eval_temperature >= 0")
        return self

    def mixes_decode(self, device) -> bool:
        """Whether full and deployed student rows decode in one loop (`mixed_decode`)."""
        if self.mixed_decode == "auto":
            return str(device).startswith("cuda")
        return self.mixed_decode == "on"

    @property
    def has_quarantine(self) -> bool:
        """Arms whose deployed model is the adapter with the quarantine deleted."""
        return self.arm in QUARANTINE_ARMS

    @property
    def scores_rollouts(self) -> bool:
        """Arms that score rollouts against a hack direction."""
        return self.arm in SCORING_ARMS

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """A config from its dict (config.json); fields missing from it take ABSENT_MEANS."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown config fields: {', '.join(unknown)}")
        kw = dict(ABSENT_MEANS)  # a field the config predates: the behaviour it was made with
        hints = typing.get_type_hints(cls)
        for k, v in d.items():
            if isinstance(v, list) and "tuple" in str(hints[k]):
                v = tuple(v)
            kw[k] = v
        return cls(**kw)

    def override(self, assignments: list[str]) -> TrainConfig:
        """Apply `field=value` strings (values parsed by the field's type)."""
        hints = typing.get_type_hints(type(self))
        updates = {}
        for a in assignments:
            if "=" not in a:
                raise ValueError(f"override {a!r} must look like field=value")
            k, v = a.split("=", 1)
            k = k.strip().replace("-", "_")
            if k not in hints:
                raise ValueError(f"unknown config field {k!r} in override {a!r}")
            updates[k] = parse_value(v, hints[k], k)
        return dataclasses.replace(self, **updates)


def parse_value(text: str, hint, name: str):
    """Parse a CLI string into the field's type (int, float, bool, str, tuples)."""
    origin = typing.get_origin(hint)
    try:
        if hint is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if hint is int:
            return int(text)
        if hint is float:
            return float(text)
        if origin is tuple:
            args = typing.get_args(hint)
            parts = [p.strip() for p in text.split(",") if p.strip()]
            elem = args[0]
            return tuple(parse_value(p, elem, name) for p in parts)
        if origin is dict or hint is dict:
            return json.loads(text)
        return text
    except ValueError as e:
        kind = hint.__name__ if isinstance(hint, type) else str(hint)  # `float`, not <class ...>
        raise ValueError(f"config field {name}: cannot parse {text!r} as {kind}") from e
