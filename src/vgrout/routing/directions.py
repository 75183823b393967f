"""Hack directions per adapted module, [M, r] in sorted module order with unit rows.

* v_act: the unit mean over pairs of (hack - clean) deployed-block bottleneck activations A[:r] x,
  mean-pooled over the completion tokens' positions.
* v_grad: the unit mean over pairs of the c-probe gradient of NLL(hack) - NLL(clean) (mean NLL
  over completion tokens), deployed slice. Since dL/dc_k at c = 1 equals <dL/dB[:, k], B[:, k]>
  (= <dL/dA[k], A[k]>), v_grad is the GRPO loss gradient for advantage +1 on the hack and -1 on
  the clean completion (per-token-mean weighting), projected onto each deployed rank-1 component.
* haar_placebo: Haar-random unit rows of the same shape: the same machinery with no information.

Extraction always runs with the quarantine ablated and the model in eval mode (restored after), so
the direction lives on the deployed model's observable path.

Scores (`score_act`, `score_grad`): raw dot product with the direction, summed over modules, no
normalisation of the features. Summing raw dots keeps the score linear in the feature (a band on it
is a half-space test in the full [M, r] space), and lets modules with larger activations or
gradients weigh more, which is where the hack signal is strongest; per-module cosines would give
every module, including dead ones, an equal vote. The same choice is used on pairs and on rollouts.
The gate can instead score rollouts by cosine (`gate_score = cosine`: each rollout's whole [M, r]
feature scaled to unit norm, modules keep their relative weights): with raw dots the band's tails
were the rollouts with the largest features, rarely hacks (docs/evidence/gate-score).

Token spans: a side is `render(prompt)` followed by the completion. Its ids are tokenize(prompt +
completion) when tokenize(prompt) is a prefix of them (the common case); otherwise (a merge across
the boundary) the two parts are tokenized separately and concatenated, so the completion span is
always exact. No special tokens are added (`render` must produce the whole model input) except
the tokenizer's EOS after the completion, as a finished rollout ends with it.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vgrout.routing.gates import module_dot_score
from vgrout.routing.pairs import Pair, PairSet, pairs_sha256

Render = Callable[[str], str]


# -- tokenization ----------------------------------------------------------------------------


def _ids(tokenizer, text: str) -> list[int]:
    out = tokenizer(text, add_special_tokens=False)
    ids = out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else out
    return [int(i) for i in ids]


def encode_side(
    tokenizer, prompt_text: str, completion: str, append_eos: bool = True
) -> tuple[list[int], int]:
    """(ids, completion start) for prompt_text + completion with an exact completion span.

    With `append_eos` the tokenizer's EOS id (if it has one) ends the completion, as in a rollout
    that stopped by itself; it is part of the completion span.
    """
    prompt_ids = _ids(tokenizer, prompt_text)
    if not prompt_ids:
        raise ValueError("the rendered prompt tokenizes to nothing; a completion needs a context")
    full = _ids(tokenizer, prompt_text + completion)
    eos = getattr(tokenizer, "eos_token_id", None) if append_eos else None
    tail = [] if eos is None else [int(eos)]
    if len(full) > len(prompt_ids) and full[: len(prompt_ids)] == prompt_ids:
        return full + tail, len(prompt_ids)
    completion_ids = _ids(tokenizer, completion)
    if not completion_ids:
        raise ValueError(f"completion {completion[:40]!r} tokenizes to nothing")
    return prompt_ids + completion_ids + tail, len(prompt_ids)


@dataclass(frozen=True)
class SideBatch:
    """Right-padded token ids of several sides with their completion spans."""

    input_ids: torch.Tensor  # [B, T]
    attention_mask: torch.Tensor  # [B, T]
    completion_mask: torch.Tensor  # [B, T]: 1 at the positions of completion tokens
    starts: list[int]
    lengths: list[int]


def batch_sides(sides: Sequence[tuple[list[int], int]], pad_id: int = 0) -> SideBatch:
    longest = max(len(ids) for ids, _ in sides)
    n = len(sides)
    input_ids = torch.full((n, longest), pad_id, dtype=torch.long)
    attention = torch.zeros(n, longest, dtype=torch.long)
    completion = torch.zeros(n, longest, dtype=torch.float32)
    for i, (ids, start) in enumerate(sides):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention[i, : len(ids)] = 1
        completion[i, start : len(ids)] = 1.0
    return SideBatch(
        input_ids, attention, completion, [s for _, s in sides], [len(i) for i, _ in sides]
    )


def _pad_id(tokenizer) -> int:
    pad = getattr(tokenizer, "pad_token_id", None)
    return 0 if pad is None else int(pad)


def _as_pairs(pairs: PairSet | Sequence[Pair]) -> list[Pair]:
    pairs = list(pairs.pairs if isinstance(pairs, PairSet) else pairs)
    if not pairs:
        raise ValueError("need at least one pair to extract a direction")
    return pairs


def _sides(tokenizer, pairs: list[Pair], render: Render) -> list[tuple[list[int], int]]:
    """Hack sides first (P of them), then clean sides (P)."""
    hack = [encode_side(tokenizer, render(p.hack_side_prompt), p.hack) for p in pairs]
    clean = [encode_side(tokenizer, render(p.clean_side_prompt), p.clean) for p in pairs]
    return hack + clean


@contextlib.contextmanager
def _eval_ablated(model, adapter):
    """Model in eval mode with the quarantine ablated; the train flag is restored on exit."""
    was_training = model.training
    model.eval()
    try:
        with adapter.ablated():
            yield
    finally:
        model.train(was_training)


def _device(model) -> torch.device:
    return next(model.parameters()).device


# -- per-pair features -----------------------------------------------------------------------


def act_pair_features(
    model, tokenizer, adapter, pairs, render: Render, batch_size: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    """(hack, clean) pooled deployed bottleneck activations, each fp32 [P, M, r]."""
    pairs = _as_pairs(pairs)
    sides = _sides(tokenizer, pairs, render)
    device = _device(model)
    pooled = []
    with _eval_ablated(model, adapter), torch.no_grad():
        for i in range(0, len(sides), batch_size):
            b = batch_sides(sides[i : i + batch_size], _pad_id(tokenizer))
            with adapter.capture_bottleneck(b.completion_mask.to(device)) as cap:
                model(
                    input_ids=b.input_ids.to(device),
                    attention_mask=b.attention_mask.to(device),
                    use_cache=False,
                )
            pooled.append(cap.pooled.float().cpu())
    feats = torch.cat(pooled)
    return feats[: len(pairs)], feats[len(pairs) :]


def completion_nll(logits: torch.Tensor, input_ids: torch.Tensor, completion_mask: torch.Tensor):
    """Mean NLL over each row's completion tokens, fp32 [B] (token t is predicted at t - 1).

    Only the predicting positions are upcast to fp32 (prompt logits are never copied).
    """
    target_mask = completion_mask[:, 1:].to(logits.device) > 0
    rows = target_mask.nonzero()[:, 0]
    nll = F.cross_entropy(
        logits[:, :-1][target_mask].float(),
        input_ids[:, 1:].to(logits.device)[target_mask],
        reduction="none",
    )
    per_row = torch.zeros(logits.shape[0], device=logits.device).index_add(0, rows, nll)
    return per_row / target_mask.sum(1).clamp_min(1)


def grad_pair_features(
    model,
    tokenizer,
    adapter,
    pairs,
    render: Render,
    batch_size: int = 8,
    probe_tokens: str = "all",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(hack, clean) deployed c-probe gradients of each side's mean completion NLL, fp32 [P, M, r].

    One backward per batch: the loss is the sum of the rows' NLLs and rows never interact (causal
    attention, right padding), so row g's c-gradient is its own. Parameter .grad is not touched.
    `probe_tokens`: `all` positions, or the `completion`'s only (config.probe_tokens).
    """
    if probe_tokens not in ("all", "completion"):
        raise ValueError(f"probe_tokens must be 'all' or 'completion'; got {probe_tokens!r}")
    pairs = _as_pairs(pairs)
    sides = _sides(tokenizer, pairs, render)
    device = _device(model)
    r = adapter.r
    grads = []
    with _eval_ablated(model, adapter), torch.enable_grad():
        for i in range(0, len(sides), batch_size):
            b = batch_sides(sides[i : i + batch_size], _pad_id(tokenizer))
            mask = b.completion_mask.to(device) if probe_tokens == "completion" else None
            with adapter.c_probe(token_mask=mask) as probe:
                logits = model(
                    input_ids=b.input_ids.to(device),
                    attention_mask=b.attention_mask.to(device),
                    use_cache=False,
                ).logits
                nll = completion_nll(logits, b.input_ids, b.completion_mask)
                grads.append(probe.grads(nll.sum())[..., :r].float().cpu())
    feats = torch.cat(grads)
    return feats[: len(pairs)], feats[len(pairs) :]


# -- directions ------------------------------------------------------------------------------


def unit_rows(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Each row divided by its norm. A zero row stays zero (with a warning): it has no direction."""
    norms = x.norm(dim=-1, keepdim=True)
    dead = int((norms.squeeze(-1) <= eps).sum())
    if dead:
        warnings.warn(f"{dead} module row(s) of the direction are zero and stay zero", stacklevel=2)
    return x / norms.clamp_min(eps)


def direction_from_features(hack: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Per-module unit mean of hack - clean over pairs: [P, M, r] x 2 -> [M, r]."""
    if hack.shape != clean.shape or hack.dim() != 3:
        raise ValueError(
            f"hack/clean features must both be [P, M, r]; got {hack.shape}, {clean.shape}"
        )
    return unit_rows((hack.double() - clean.double()).mean(0)).float()


def v_act(model, tokenizer, adapter, pairs, render: Render, batch_size: int = 8) -> torch.Tensor:
    """Activation hack direction [M, r] (see module docstring)."""
    return direction_from_features(
        *act_pair_features(model, tokenizer, adapter, pairs, render, batch_size)
    )


def v_grad(model, tokenizer, adapter, pairs, render: Render, batch_size: int = 8) -> torch.Tensor:
    """Gradient hack direction [M, r] (see module docstring)."""
    return direction_from_features(
        *grad_pair_features(model, tokenizer, adapter, pairs, render, batch_size)
    )


def haar_placebo(shape: tuple[int, int], seed: int) -> torch.Tensor:
    """Haar-random unit rows [M, r] (independent uniform directions on S^{r-1}); seeded, CPU."""
    gen = torch.Generator().manual_seed(int(seed))
    g = torch.randn(tuple(shape), generator=gen, dtype=torch.float64)
    return (g / g.norm(dim=-1, keepdim=True)).float()


# -- scores ----------------------------------------------------------------------------------


def score_act(pooled: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Activation score per rollout: sum over modules of <pooled[g, m], v[m]>, fp64 [G]."""
    return module_dot_score(pooled, v)


def score_grad(cgrad: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Gradient score per rollout: sum over modules of <dNLL_g/dc[m], v[m]>, fp64 [G].

    Positive = the rollout's NLL gradient points like NLL(hack) - NLL(clean): it looks like a hack.
    """
    return module_dot_score(cgrad, v)


@dataclass(frozen=True)
class PairScores:
    hack: torch.Tensor  # [P]
    clean: torch.Tensor  # [P]
    paired_accuracy: float  # share of pairs with hack score > clean score
    auroc: float  # unpaired: the 2P scores vs side label

    def as_dict(self) -> dict:
        return {
            "paired_accuracy": self.paired_accuracy,
            "auroc": self.auroc,
            "n_pairs": len(self.hack),
        }


def pair_scores(
    hack_features: torch.Tensor, clean_features: torch.Tensor, v: torch.Tensor
) -> PairScores:
    """Score both sides of every pair against `v` (the startup sanity log; also the pair band)."""
    from sklearn.metrics import roc_auc_score

    hack = module_dot_score(hack_features, v)
    clean = module_dot_score(clean_features, v)
    labels = [1] * len(hack) + [0] * len(clean)
    auroc = float(roc_auc_score(labels, torch.cat([hack, clean]).numpy()))
    return PairScores(hack, clean, float((hack > clean).double().mean()), auroc)


@dataclass(frozen=True)
class DirectionFit:
    """A direction with the pair features it came from (for the sanity log and the pair band)."""

    kind: str  # "act" | "grad"
    direction: torch.Tensor  # [M, r]
    hack_features: torch.Tensor  # [P, M, r]
    clean_features: torch.Tensor
    pairs_sha256: str

    def scores(self, v: torch.Tensor | None = None) -> PairScores:
        """Pair scores against this direction (or another one, e.g. a placebo)."""
        return pair_scores(
            self.hack_features, self.clean_features, self.direction if v is None else v
        )


def extract_direction(
    kind: str,
    model,
    tokenizer,
    adapter,
    pairs,
    render: Render,
    batch_size: int = 8,
    probe_tokens: str = "all",
) -> DirectionFit:
    """kind "act" (routeA) or "grad" (routeV): features, direction and the pair-set hash at once.
    `probe_tokens` (grad only): the c-probe's positions, `all` or `completion`."""
    if kind not in ("act", "grad"):
        raise ValueError(f"direction kind must be 'act' or 'grad'; got {kind!r}")
    plist = _as_pairs(pairs)
    if kind == "act":
        hack, clean = act_pair_features(model, tokenizer, adapter, plist, render, batch_size)
    else:
        hack, clean = grad_pair_features(
            model, tokenizer, adapter, plist, render, batch_size, probe_tokens
        )
    return DirectionFit(
        kind, direction_from_features(hack, clean), hack, clean, pairs_sha256(plist)
    )
