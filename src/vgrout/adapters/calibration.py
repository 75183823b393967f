"""Calibration data for the contrastive inits: per-module mean input shifts, hack minus clean.

For each contrastive pair (prompt, hack completion, clean completion) and each targeted Linear, the
Linear's INPUT x is mean-pooled over the completion tokens of prompt+hack and of prompt+clean on the
*base* model; the difference is one row delta_p of D in R^{P x d_in}. The corda/scorda inits read
only D (never a rollout label).

Completion spans are computed from token ids, not by re-tokenising strings and counting: merges at
the prompt/completion boundary would otherwise shift the span by a token.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from vgrout.adapters.targets import AdapterConfig, find_targets

__all__ = ["Calibration", "PairLike", "calibrate", "completion_token_ids"]


class PairLike(Protocol):
    """Anything with `.prompt`, `.hack` and `.clean` strings (e.g. `vgrout.routing.pairs.Pair`).

    An optional `.clean_prompt` (not None) is used as the clean side's prompt (self-generated
    pairs whose clean completion was sampled hint-off).
    """

    prompt: str
    hack: str
    clean: str


@dataclass(frozen=True)
class Calibration:
    """Per-module mean input differences, hack minus clean.

    `deltas[name]` is a float32 CPU tensor [P, d_in]: row p is the mean-pooled input of module
    `name` over pair p's hack completion minus that over its clean completion. Build it with
    `calibrate(...)` or, in tests, `Calibration.from_dict({name: tensor})`.
    """

    deltas: Mapping[str, Tensor]

    @classmethod
    def from_dict(cls, deltas: Mapping[str, Tensor]) -> Calibration:
        """Wrap a plain `{module name: Tensor[P, d_in]}` dict (checked, copied to fp32 CPU)."""
        out = {}
        for name, d in deltas.items():
            d = torch.as_tensor(d)
            if d.dim() != 2 or d.shape[0] < 1:
                raise ValueError(
                    f"calibration for {name!r} must be a [P, d_in] tensor with P >= 1, "
                    f"got shape {tuple(d.shape)}"
                )
            if not torch.isfinite(d).all():
                raise ValueError(f"calibration for {name!r} has non-finite entries")
            out[name] = d.detach().to(device="cpu", dtype=torch.float32).clone()
        return cls(out)

    def for_module(self, name: str) -> Tensor:
        """D for one module; a clear error if the calibration does not cover it."""
        if name not in self.deltas:
            raise KeyError(
                f"calibration has no data for module {name!r}; it covers "
                f"{len(self.deltas)} modules (e.g. {sorted(self.deltas)[:3]}). Build it with "
                "calibrate(model, tokenizer, pairs, targets=cfg.targets) on the same model."
            )
        return self.deltas[name]

    def mean_shift(self, name: str) -> Tensor:
        """The signed mean input shift mean_p delta_p of one module ([d_in])."""
        return self.for_module(name).mean(0)

    @property
    def num_pairs(self) -> int:
        """P, the number of pairs (the same for every module)."""
        return next(iter(self.deltas.values())).shape[0] if self.deltas else 0


def _ids(tokenizer: Any, text: str, add_special_tokens: bool) -> list[int]:
    out = tokenizer(text, add_special_tokens=add_special_tokens)
    ids = out["input_ids"] if isinstance(out, Mapping) or hasattr(out, "keys") else out
    if ids and isinstance(ids[0], list):  # some tokenizers return a batch of one
        ids = ids[0]
    return [int(i) for i in ids]


def completion_token_ids(
    tokenizer: Any, prompt: str, completion: str, add_special_tokens: bool = True
) -> tuple[list[int], int]:
    """Token ids of prompt+completion and the index where the completion starts.

    Tokenises the prompt alone and prompt+completion; if the prompt ids are a prefix of the joint
    ids the split is exact. Otherwise (a merge across the boundary) the two parts are tokenised
    separately and concatenated, so the completion span is never off by a token. Raises if the
    completion has no tokens.
    """
    prompt_ids = _ids(tokenizer, prompt, add_special_tokens)
    joint_ids = _ids(tokenizer, prompt + completion, add_special_tokens)
    if joint_ids[: len(prompt_ids)] == prompt_ids and len(joint_ids) > len(prompt_ids):
        return joint_ids, len(prompt_ids)
    completion_ids = _ids(tokenizer, completion, False)
    if not completion_ids:
        raise ValueError(f"completion {completion[:40]!r} has no tokens; pairs need non-empty text")
    return prompt_ids + completion_ids, len(prompt_ids)


@torch.no_grad()
def calibrate(
    model: nn.Module,
    tokenizer: Any,
    pairs: Iterable[PairLike],
    targets: Sequence[str] | None = None,
    add_special_tokens: bool = True,
) -> Calibration:
    """Mean-pool every target Linear's input over completion tokens, hack minus clean.

    Runs on the model as given (call it on the base model, before `attach`, or inside
    `handle.disabled()`), one sequence at a time (no padding), in eval mode (restored after).
    `targets` defaults to `AdapterConfig().targets`.
    """
    targets = tuple(targets) if targets is not None else AdapterConfig().targets
    modules = find_targets(model, targets)
    pairs = list(pairs)
    if not pairs:
        raise ValueError("calibrate needs at least one pair")
    device = next(model.parameters()).device
    keep_one = "logits_to_keep" in inspect.signature(model.forward).parameters

    pooled: dict[str, Tensor] = {}
    span: dict[str, int] = {"start": 0}

    def make_pre_hook(name: str):
        def pre_hook(_module: nn.Module, args: tuple) -> None:
            x = args[0]
            pooled[name] = x[0, span["start"] :].float().mean(0).cpu()

        return pre_hook

    def pooled_inputs(prompt: str, completion: str) -> dict[str, Tensor]:
        ids, start = completion_token_ids(tokenizer, prompt, completion, add_special_tokens)
        span["start"] = start
        pooled.clear()
        kwargs = {"logits_to_keep": 1} if keep_one else {}
        model(input_ids=torch.tensor([ids], device=device), **kwargs)
        missing = set(modules) - set(pooled)
        if missing:
            raise RuntimeError(f"target modules never ran in the forward: {sorted(missing)[:3]}")
        return dict(pooled)

    handles = [m.register_forward_pre_hook(make_pre_hook(n)) for n, m in modules.items()]
    was_training = model.training
    model.eval()
    # If a BlockLoRA is attached, calibrate the base model underneath it.
    attached = getattr(model, "_vgrout_blocklora", None)
    base_model = attached.disabled() if attached is not None else contextlib.nullcontext()
    rows: dict[str, list[Tensor]] = {n: [] for n in modules}
    try:
        with base_model:
            for pair in pairs:
                clean_prompt = getattr(pair, "clean_prompt", None)
                hack = pooled_inputs(pair.prompt, pair.hack)
                clean = pooled_inputs(
                    pair.prompt if clean_prompt is None else clean_prompt, pair.clean
                )
                for n in modules:
                    rows[n].append(hack[n] - clean[n])
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return Calibration.from_dict({n: torch.stack(v) for n, v in rows.items()})
