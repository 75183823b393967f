"""The trainer's router: holds the hack direction and the band state, scores rollouts, calls the gate.

Glue between `directions` (what a hack looks like), `gates` (scores -> zones) and the adapter
(how features are read). Direction arms score each kept rollout on the *deployed* path (quarantine
ablated), where the direction was extracted:
  routeA: the deployed bottleneck activations A[:r] x, mean-pooled over completion tokens;
  routeV: the c-probe gradient of the rollout's mean completion NLL (an unmasked scoring pass,
          separate from the masked pass the optimizer steps on).
With `gate_score = cosine` each rollout's features are scaled to unit norm before scoring.
Labels are passed only for the label arms (oracle, oracle_recall); `gates.gate_for_arm` refuses them
for every other arm.
"""

from __future__ import annotations

import torch

from vgrout.config import DIRECTION_ARMS, LABEL_ARMS, TrainConfig
from vgrout.rl.policy import (
    Batch,
    Policy,
    checkpointing_on,
    completion_logprobs,
    micro_batch_rows,
    shared_prompt_logprobs,
)
from vgrout.routing.directions import extract_direction, haar_placebo, pair_scores
from vgrout.routing.gates import (
    PairBand,
    QuantileBand,
    gate_for_arm,
    module_dot_score,
    pair_band_state,
    unit_features,
)


class Router:
    def __init__(self, cfg: TrainConfig, policy: Policy, pairs):
        self.cfg, self.policy, self.pairs = cfg, policy, pairs
        self.direction: torch.Tensor | None = None
        self.state = None
        self.fit = None
        self.pairs_sha256 = None
        self.refreshes = 0
        self.score_history = torch.zeros(0)
        if not cfg.scores_rollouts:
            return
        if cfg.arm == "advantage_mod":
            self.kind = cfg.advantage_mod_kind
        else:
            self.kind = "act" if cfg.arm == "routeA" else "grad"
        if cfg.band == "quantile":
            self.band = QuantileBand(
                cfg.band_tail_q,
                cfg.band_halflife,
                cfg.band_warmup,
                cfg.band_buffer,
                keep_q=None if cfg.band_keep_q == -1.0 else cfg.band_keep_q,
            )
        else:
            self.band = PairBand()
        self.extract()

    @property
    def placebo(self) -> bool:
        return self.cfg.placebo_seed >= 0

    def extract(self) -> None:
        """(Re-)extract the direction from the pairs under ablation; placebo replaces it once."""
        p = self.policy
        fit = extract_direction(
            self.kind,
            p.model,
            p.tokenizer,
            p.adapter,
            self.pairs,
            p.render_text,
            probe_tokens=self.cfg.probe_tokens,
        )
        self.fit, self.pairs_sha256 = fit, fit.pairs_sha256
        v = fit.direction
        if self.placebo:
            v = haar_placebo(tuple(v.shape), self.cfg.placebo_seed)
        self.direction = v
        if isinstance(self.band, PairBand):
            sc = self._pair_scores(v)
            self.state = pair_band_state(sc.hack, sc.clean, self.band)

    def _pair_scores(self, v: torch.Tensor):
        """The pairs' scores against v as the gate scores rollouts (`gate_score`)."""
        fit, norm = self.fit, self._norm
        return pair_scores(norm(fit.hack_features), norm(fit.clean_features), v)

    def _norm(self, features: torch.Tensor) -> torch.Tensor:
        return unit_features(features) if self.cfg.gate_score == "cosine" else features

    def maybe_refresh(self, step: int) -> None:
        cfg = self.cfg
        if cfg.scores_rollouts and not self.placebo and (step + 1) % cfg.refresh_every == 0:
            self.extract()
            self.refreshes += 1

    # -- scoring ---------------------------------------------------------------------------------
    def features(self, batch: Batch) -> torch.Tensor:
        """Raw per-rollout features [N, M, r] (deployed path): pooled activations or c-grads."""
        adapter, model, r = self.policy.adapter, self.policy.model, self.policy.adapter.r
        chunks = []
        micro = micro_batch_rows(self.cfg.micro_batch, model, batch)
        for idx in torch.arange(len(batch)).split(micro):
            sub = batch.rows(idx)
            if self.kind == "act":
                with (
                    torch.no_grad(),
                    adapter.ablated(),
                    adapter.capture_bottleneck(sub.input_completion_mask) as cap,
                ):
                    completion_logprobs(model, sub)
                chunks.append(cap.pooled.float())
            else:
                chunks.append(self._probe(sub)[:, :, :r].detach())
        return torch.cat(chunks)

    def _scored_features(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(features as the band scores them (`gate_score`), each row's raw feature norm [N])."""
        raw = self.features(batch)
        return self._norm(raw), raw.flatten(1).norm(dim=1).cpu()

    def _probe(self, sub: Batch) -> torch.Tensor:
        """c-probe gradients [N, M, 2r] of each row's mean completion NLL, deployed model."""
        adapter, model, cfg = self.policy.adapter, self.policy.model, self.cfg
        completion = cfg.probe_tokens == "completion"
        split = completion and not checkpointing_on(model)
        # `completion` split: prompts run once per group (share_prompt_forward) or per row, no
        # backward through them; under checkpointing (no KV cache) a token mask does the same.
        mask = sub.input_completion_mask if completion and not split else None
        with adapter.ablated(), adapter.c_probe(token_mask=mask) as probe:
            if split:
                keys = None if cfg.share_prompt_forward else range(len(sub))  # distinct: no sharing
                logp = shared_prompt_logprobs(model, sub, keys, prompt_grad=False)
            else:
                logp = completion_logprobs(model, sub)
            nll = -(logp.sum(1) / sub.completion_mask.sum(1))
            return probe.grads(nll.sum())

    def gate(self, batch: Batch, labels=None, step: int = 0):
        """(GateOutput, scores or None) for the kept rows of one step."""
        cfg, n = self.cfg, len(batch)
        if cfg.arm in DIRECTION_ARMS:
            features, norms = self._scored_features(batch)
            out = gate_for_arm(
                cfg.arm,
                n,
                features=features,
                direction=self.direction,
                state=self.state,
                band=self.band,
            )
            out.info["feature_norm"] = norms
            self.state = out.state
            return out, out.info["scores"]
        if cfg.arm in LABEL_ARMS:
            recall = 1.0 if cfg.arm == "oracle" else cfg.recall
            out = gate_for_arm(
                cfg.arm,
                n,
                labels=labels,
                recall=recall,
                seed=cfg.seed,
                step=step,
                unflagged=cfg.unflagged_zone,
            )
            return out, None
        if cfg.arm == "advantage_mod":  # scores shape the advantage; nothing is routed
            features, norms = self._scored_features(batch)
            scores = module_dot_score(features, self.direction)
            self.score_history = torch.cat([self.score_history, scores.double().cpu()])[
                -cfg.band_buffer :
            ]
            out = gate_for_arm("plain", n)
            out.info["feature_norm"] = norms
            return out, scores
        if cfg.arm in ("none", "plain", "absorb"):
            return gate_for_arm(cfg.arm, n), None
        return gate_for_arm("plain", n), None  # baselines without a quarantine train unmasked

    # -- checkpointing -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "direction": self.direction,
            "state": self.state,
            "refreshes": self.refreshes,
            "fit": self.fit,
            "score_history": self.score_history,
        }

    def load_state_dict(self, d: dict) -> None:
        self.direction, self.state, self.refreshes, self.fit = (
            d["direction"],
            d["state"],
            d["refreshes"],
            d["fit"],
        )
        self.score_history = d["score_history"]
