"""The model as the loop sees it: prompt rendering, generation, and per-token log-probs.

Generation is delegated to the rollout engine (`vgrout.rl.engine`: one small interface, so that it can
later move to vLLM without touching the training loop). Sequences are laid out as [left-padded prompt | right-padded completion], so every
row's completion starts at the same position and `logits_to_keep` can skip the prompt's logits.
Completion masks come from lengths, never from `token != pad` (pad may equal EOS, and EOS is a real
completion token that must be trained).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from vgrout.rl.engine import SamplingParams, TorchEngine
from vgrout.rl.grpo import chunked_token_logprobs, token_logprobs

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


LOGIT_CHUNK_ELEMENTS = 2**27
"""Tokens x vocabulary of fp32 logits alive at once in `completion_logprobs` (512 MiB): ~880
tokens of Qwen3's 151,936 vocabulary; the toy's whole batch in one chunk."""


def completion_logprobs(model, batch: Batch, chunk_tokens: int = 0) -> Tensor:
    """log p(completion token) per position, [N, Lc] fp32 (0 where masked).

    When the batch's logits exceed one chunk (LOGIT_CHUNK_ELEMENTS tokens x vocabulary, e.g.
    Qwen3's 151,936 vocabulary at a real batch), runs the decoder body once, then the output head
    + log-softmax over `chunk_tokens` real completion tokens at a time (0 = LOGIT_CHUNK_ELEMENTS /
    vocab), so neither HF's [N, Lc, V] logits nor an fp32 copy of them is materialised. Smaller
    batches (the toy's) and models whose head is not a plain linear layer (logit soft-capping or
    scaling) take HF's own forward: the same values up to float rounding, and a seeded toy run
    keeps the exact bits it had before chunking existed (its published runs re-run bit for bit).
    `chunk_tokens > 0` forces the chunked path.
    """
    if batch.prompt_len < 1:
        raise ValueError("completion_logprobs: rows need at least one prompt token")
    lc = batch.completion_ids.shape[1]
    head = _chunked_head(model, batch, chunk_tokens)
    if head is None:
        out = model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            logits_to_keep=lc + 1,
            use_cache=False,
        )
        logits = out.logits[:, :-1]  # position t predicts token t+1: these predict the completion
        return token_logprobs(logits, batch.completion_ids) * batch.completion_mask
    hidden = model.base_model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        use_cache=False,
    ).last_hidden_state
    lp = batch.prompt_len
    h = hidden[:, lp - 1 : lp + lc - 1]  # the positions that predict the completion tokens
    return _head_logprobs(h, head, batch, chunk_tokens)


def _head_logprobs(h: Tensor, head, batch: Batch, chunk_tokens: int) -> Tensor:
    """[N, Lc] log-probs of the completion tokens from the hidden states that predict them
    (h [N, Lc, H]), the output head applied over `chunk_tokens` real tokens at a time."""
    real = batch.completion_mask > 0
    chunk = chunk_tokens or max(1, LOGIT_CHUNK_ELEMENTS // head.weight.shape[0])
    logp = chunked_token_logprobs(h[real], head.weight, batch.completion_ids[real], chunk)
    zeros = torch.zeros(real.shape, dtype=logp.dtype, device=logp.device)
    return zeros.masked_scatter(real, logp)


def shared_prompt_logprobs(
    model,
    batch: Batch,
    keys: Sequence | None = None,
    rows_context=None,
    chunk_tokens: int = 0,
    prompt_grad: bool = True,
) -> Tensor:
    """`completion_logprobs`, with each distinct prompt run once (a GRPO group's G rows share it).

    Rows with the same prompt and the same `keys[i]` (their model state: e.g. route masks; None =
    one state for all) run their prompt once; the completions then attend to its KV cache, copied
    per row. Same values and gradient as one full forward per row up to float rounding (tested):
    the prompt's hidden states depend only on its own tokens and state, and autograd sums the
    copies' gradients back into the one prompt forward. `rows_context(index)` returns the context
    that puts batch rows `index` (a LongTensor) into their state (None: nothing to set). Falls
    back to the per-row forward when no prompt repeats or under gradient checkpointing (which
    turns HF's cache off).

    `prompt_grad=False` runs the prompts under no_grad, always split from the completions: nothing
    is differentiated through the prompt (a c-probe then sees the completion's positions only).
    It needs HF's cache, so it refuses a model with gradient checkpointing on.
    """
    from transformers import DynamicCache

    from vgrout.rl.engine import distinct_rows

    context = rows_context or (lambda _index: contextlib.nullcontext())
    lp, lc = batch.prompt_len, batch.completion_ids.shape[1]
    if lp < 1:
        raise ValueError("shared_prompt_logprobs: rows need at least one prompt token")
    keys = [None] * len(batch) if keys is None else list(keys)
    prompts = [tuple(row) for row in batch.input_ids[:, :lp].tolist()]
    first, inverse = distinct_rows(list(zip(prompts, keys, strict=True)))
    every = torch.arange(len(batch))
    if not prompt_grad and checkpointing_on(model):
        raise ValueError(
            "shared_prompt_logprobs(prompt_grad=False) needs the KV cache, which gradient "
            "checkpointing turns off: disable checkpointing, or probe with a token mask instead"
        )
    if prompt_grad and (len(first) == len(batch) or checkpointing_on(model)):
        with context(every):
            return completion_logprobs(model, batch, chunk_tokens)
    rows = torch.tensor(first)  # on the CPU, like the route masks it indexes
    dev = batch.input_ids.device
    on_dev, inv = rows.to(dev), torch.tensor(inverse, device=dev)
    head = _chunked_head(model, batch, chunk_tokens)
    # with a chunked head: hidden states, the head applied below; else HF's logits
    body = model.base_model if head is not None else model
    extra = {} if head is not None else {"logits_to_keep": 1}
    cache = DynamicCache(config=model.config)
    with context(rows), contextlib.nullcontext() if prompt_grad else torch.no_grad():
        pre = body(
            input_ids=batch.input_ids[on_dev, :lp],
            attention_mask=batch.attention_mask[on_dev, :lp],
            position_ids=batch.position_ids[on_dev, :lp],
            cache=cache, use_cache=True, **extra,
        )  # fmt: skip
    cache.batch_select_indices(inv)  # differentiable: the copies' grads sum back
    with context(every):
        out = body(
            input_ids=batch.input_ids[:, lp:], attention_mask=batch.attention_mask,
            position_ids=batch.position_ids[:, lp:], cache=cache, use_cache=True,
            **({} if head is not None else {"logits_to_keep": lc}),
        )  # fmt: skip
    if head is None:  # position t predicts token t+1: the prompt's last, then the completion's
        logits = torch.cat([pre.logits[inv, -1:], out.logits[:, :-1]], dim=1)
        return token_logprobs(logits, batch.completion_ids) * batch.completion_mask
    h = torch.cat([pre.last_hidden_state[inv, -1:], out.last_hidden_state[:, :-1]], dim=1)
    return _head_logprobs(h, head, batch, chunk_tokens)


def checkpointing_on(model) -> bool:
    # transformers 5.24 renamed the property (the old name warns)
    for name in ("is_activation_checkpointing", "is_gradient_checkpointing"):
        if hasattr(type(model), name):
            return bool(getattr(model, name))
    return False


def _chunked_head(model, batch: Batch, chunk_tokens: int):
    """The output head to apply in token chunks, or None for HF's own forward (see above)."""
    head = _plain_head(model)
    if head is None or chunk_tokens:
        return head
    n_real = int(batch.completion_mask.sum())
    return None if n_real * head.weight.shape[0] <= LOGIT_CHUNK_ELEMENTS else head  # 1 chunk


def _plain_head(model):
    """The output head if logits are exactly `hidden @ head.weight.T`, else None."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    cfg = getattr(model, "config", None)
    text_cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    if (
        not isinstance(head, torch.nn.Linear)
        or head.bias is not None
        or head.weight.requires_grad
        or getattr(text_cfg, "final_logit_softcapping", None)
        or getattr(text_cfg, "logit_scale", None) not in (None, 1, 1.0)
        or not hasattr(model, "base_model")
        or model.base_model is model
    ):
        return None
    return head


def micro_batch_rows(setting: int, model, batch: Batch) -> int:
    """Rows per forward/backward chunk: `setting` when > 0; 0 sizes it by free memory.

    Auto is a conservative estimate of what one row's training forward keeps for backward (per
    token and layer ~12 hidden + 4 intermediate activations, no gradient checkpointing) against
    60% of the free accelerator memory (CUDA) or available RAM (CPU), after one chunk of logits.
    The gradient does not depend on the choice: rows never interact and the loss normaliser is
    a constant.
    """
    n = len(batch)
    if setting > 0:
        return setting
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else None
    cfg = cfg or model.config
    hidden = getattr(cfg, "hidden_size", 1024)
    inter = getattr(cfg, "intermediate_size", 4 * hidden)
    layers = getattr(cfg, "num_hidden_layers", 24)
    elem = next(model.parameters()).element_size()
    per_row = batch.input_ids.shape[1] * layers * (12 * hidden + 4 * inter) * elem
    device = batch.input_ids.device
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
    else:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    budget = 0.6 * free - 3 * 4 * LOGIT_CHUNK_ELEMENTS  # a chunk's fp32 logits and softmax
    return int(max(1, min(n, budget // max(1, per_row))))


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
        self,
        prompts: list[list[int]],
        params: SamplingParams,
        state: str | list[str] = "full",
        on_done=None,
    ) -> list[list[int]]:
        """Sample one completion per prompt, all in one decode loop (see `vgrout.rl.engine`).

        `state` is one model state for every row, or a list with one per row (`full` and
        `deployed` rows decode together). Uses the torch global RNG: callers seed it (the loop
        seeds per step; evaluation forks it). Returns completion ids up to and including EOS (or
        max_new_tokens ids if cut). `on_done(i, ids)` is called as soon as row i is complete.
        """
        return self.engine.generate(prompts, params, state, on_done)

    # -- scoring -------------------------------------------------------------------------------
    def logprobs(
        self, batch: Batch, state: str = "full", grad: bool = False, share_prompts: bool = False
    ) -> Tensor:
        """Completion log-probs in one model state; `share_prompts`: each distinct prompt runs
        once (`shared_prompt_logprobs`)."""
        ctx = contextlib.nullcontext() if grad else torch.no_grad()
        with ctx, self.state(state):
            if share_prompts:
                return shared_prompt_logprobs(self.model, batch)
            return completion_logprobs(self.model, batch)
