"""The model as the loop sees it: prompt rendering, generation, and per-token log-probs.

Generation is delegated to the rollout engine (`vgrout.engine`: one small interface, so that it can
later move to vLLM without touching the training loop). Sequences are laid out as [left-padded prompt | right-padded completion], so every
row's completion starts at the same position and `logits_to_keep` can skip the prompt's logits.
Completion masks come from lengths, never from `token != pad` (pad may equal EOS, and EOS is a real
completion token that must be trained).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from vgrout.engine import SamplingParams, TorchEngine
from vgrout.grpo import token_logprobs

Tensor = torch.Tensor


@dataclass
class Batch:
    input_ids: Tensor  # [N, Lp + Lc]
    attention_mask: Tensor  # [N, Lp + Lc]
    position_ids: Tensor  # [N, Lp + Lc]
    completion_ids: Tensor  # [N, Lc]
    completion_mask: Tensor  # [N, Lc] float, 1 on real completion tokens (incl. EOS)
    prompt_len: int  # Lp

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def rows(self, idx: Tensor | slice) -> Batch:
        return Batch(
            self.input_ids[idx],
            self.attention_mask[idx],
            self.position_ids[idx],
            self.completion_ids[idx],
            self.completion_mask[idx],
            self.prompt_len,
        )

    @property
    def input_completion_mask(self) -> Tensor:
        """[N, Lp + Lc] mask of completion positions in the input (for activation pooling)."""
        pad = torch.zeros(len(self), self.prompt_len, device=self.completion_mask.device)
        return torch.cat([pad, self.completion_mask], dim=1)


def make_batch(
    prompts: list[list[int]], completions: list[list[int]], pad_id: int, device="cpu"
) -> Batch:
    """Lay out rows as [left-padded prompt | right-padded completion]."""
    if len(prompts) != len(completions):
        raise ValueError("make_batch: prompts and completions differ in length")
    if any(len(c) == 0 for c in completions):
        raise ValueError("make_batch: every row needs at least one completion token")
    lp = max(len(p) for p in prompts)
    lc = max(len(c) for c in completions)
    n = len(prompts)
    ids = torch.full((n, lp + lc), pad_id, dtype=torch.long)
    attn = torch.zeros((n, lp + lc), dtype=torch.long)
    cmask = torch.zeros((n, lc))
    for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):
        ids[i, lp - len(p) : lp] = torch.tensor(p)
        ids[i, lp : lp + len(c)] = torch.tensor(c)
        attn[i, lp - len(p) : lp + len(c)] = 1
        cmask[i, : len(c)] = 1.0
    pos = (attn.cumsum(dim=1) - 1).clamp(min=0)
    return Batch(
        ids.to(device),
        attn.to(device),
        pos.to(device),
        ids[:, lp:].to(device),
        cmask.to(device),
        lp,
    )


def completion_logprobs(model, batch: Batch) -> Tensor:
    """log p(completion token) per position, [N, Lc] fp32 (0 where masked)."""
    lc = batch.completion_ids.shape[1]
    out = model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        logits_to_keep=lc + 1,
        use_cache=False,
    )
    logits = out.logits[:, :-1]  # position t predicts token t+1: these predict the completion
    return token_logprobs(logits, batch.completion_ids) * batch.completion_mask


class Policy:
    """A causal LM + its tokenizer + (optionally) its BlockLoRA handle."""

    def __init__(self, model, tokenizer, adapter=None, render=None, device="cpu"):
        self.model = model
        self.tokenizer = tokenizer
        self.adapter = adapter
        self.device = device
        self._render = render
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id
        # The rollout backend: one small interface, so another (e.g. vLLM) can replace it.
        self.engine = TorchEngine(
            model, adapter, eos_id=self.eos_id, pad_id=self.pad_id, device=device
        )

    # -- prompts -------------------------------------------------------------------------------
    def render_text(self, question: str) -> str:
        """The prompt text for a user message (chat template, assistant turn opened)."""
        return self._render(self.tokenizer, question)

    def prompt_ids(self, question: str) -> list[int]:
        return self.tokenizer(self.render_text(question), add_special_tokens=False)["input_ids"]

    def completion_ids(self, text: str, max_tokens: int) -> list[int]:
        """Token ids of a cached completion, truncated to `max_tokens`, ending with EOS if it fits."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"][: max_tokens - 1]
        return ids + [self.eos_id]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    # -- model states --------------------------------------------------------------------------
    def state(self, name: str):
        """Context for a model state: `full`, `deployed` (quarantine ablated) or `base`."""
        if self.adapter is None or name == "full":
            return contextlib.nullcontext()
        if name == "deployed":
            return self.adapter.ablated()
        if name == "base":
            return self.adapter.disabled()
        raise ValueError(f"unknown model state {name!r}")

    # -- generation ----------------------------------------------------------------------------
    def generate(
        self, prompts: list[list[int]], params: SamplingParams, state: str | list[str] = "full"
    ) -> list[list[int]]:
        """Sample one completion per prompt, all in one decode loop (see `vgrout.engine`).

        `state` is one model state for every row, or a list with one per row (`full` and
        `deployed` rows decode together). Uses the torch global RNG: callers seed it (the loop
        seeds per step; evaluation forks it). Returns completion ids up to and including EOS (or
        max_new_tokens ids if cut).
        """
        return self.engine.generate(prompts, params, state)

    # -- scoring -------------------------------------------------------------------------------
    def logprobs(self, batch: Batch, state: str = "full", grad: bool = False) -> Tensor:
        ctx = contextlib.nullcontext() if grad else torch.no_grad()
        with ctx, self.state(state):
            return completion_logprobs(self.model, batch)
