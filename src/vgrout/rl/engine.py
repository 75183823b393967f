"""The rollout engine: one decode loop for all rows of a step, whatever model state samples each.

The training loop talks to generation through one small interface, `RolloutEngine.generate(prompts,
params, states)`: token-id prompts, sampling parameters, and per row the model state that samples it
(`full`, `deployed` = quarantine ablated, or `base`). It returns each row's completion ids up to and
including EOS. A vLLM backend (what TRL and verl use for multi-GPU generation) would implement the
same method; `Policy.generate` delegates to whichever engine it holds.

`TorchEngine` is the in-process backend:
- Sampling never sorts the vocabulary when top_k > 0: `torch.topk` picks the candidates, and
  temperature and top-p act on those only, with exactly the semantics and order of Hugging Face's
  `generate` (temperature -> top-k -> top-p warpers, ties at the k-th score kept). HF's warpers sort
  all 151,936 logits of every row at every step, which at Qwen3 scale costs more than the forward.
- Rows that repeat a prompt in the same model state (the G rollouts of a GRPO group) share one
  prompt forward; its KV cache is copied to each of them.
- Full-model and deployed-model rows decode together: the deployed block is merged into the weights
  and the quarantine runs as an unmerged low-rank term masked per row
  (`BlockLoRA.merged_per_row`), so `gen_deploy_frac > 0` no longer adds a second decode loop.
- The KV cache is dynamic (grown each step) or static (preallocated; with `compile` the decode step
  is `torch.compile`d, CUDA graphs on GPU). `cache="auto"` picks static + compile on CUDA and the
  dynamic cache on CPU, which measured fastest there (README, "Generation engine").
The torch global RNG drives sampling: callers seed it (the loop per step; evaluation forks it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

Tensor = torch.Tensor

STATES = ("full", "deployed", "base")
CACHES = ("auto", "dynamic", "static")


@dataclass
class SamplingParams:
    """temperature 0 = greedy; top_k 0 and top_p 1 disable those filters (HF's conventions)."""

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")


class RolloutEngine(Protocol):
    """What the training loop needs from a generation backend."""

    def generate(
        self,
        prompts: list[list[int]],
        params: SamplingParams,
        states: Sequence[str],
        on_done: Callable[[int, list[int]], None] | None = None,
    ) -> list[list[int]]:
        """One completion per prompt; row i is sampled from model state `states[i]`.
        `on_done(i, ids)`, if given, is called once per row as soon as row i is complete (so
        the caller can grade it while the other rows decode)."""
        ...


# ------------------------------------------------------------------------------------------------
# Sampling


def warp(logits: Tensor, params: SamplingParams) -> tuple[Tensor, Tensor]:
    """HF's temperature -> top-k -> top-p warpers, applied to the candidates only.

    logits: fp32 [B, V]. Returns (scores [B, K], token ids [B, K]): the temperature-scaled scores of
    the K best tokens in descending order, -inf where a filter removed the token. The kept tokens
    and softmax(scores) equal what HF's TemperatureLogitsWarper, TopKLogitsWarper and
    TopPLogitsWarper leave on the full vocabulary. Only with top_k off is the vocabulary sorted.
    """
    vocab = logits.shape[-1]
    top_k = params.top_k if 0 < params.top_k < vocab else 0
    # HF keeps every token tied with the k-th score: take a margin of extra candidates, and redo
    # the step over the whole vocabulary in the rare case that a tie runs past it.
    k = min(vocab, max(2 * top_k, top_k + 16)) if top_k else vocab
    scores, ids = _warp(logits, params, top_k, k)
    if scores is None:
        scores, ids = _warp(logits, params, top_k, vocab)
    return scores, ids


def _warp(logits: Tensor, params: SamplingParams, top_k: int, k: int):
    if k < logits.shape[-1]:
        scores, ids = torch.topk(logits, k)  # sorted, descending
    else:
        scores, ids = torch.sort(logits, descending=True)
    if params.temperature != 1.0:  # HF skips its warper at exactly 1.0 (the division may round)
        scores = scores / params.temperature
    if top_k:
        keep = scores >= scores[:, top_k - 1 : top_k]
        if k < logits.shape[-1] and bool(keep[:, -1].any()):
            return None, None
        scores = scores.masked_fill(~keep, float("-inf"))
    if params.top_p < 1.0:
        # HF's TopP in its own order: ascending scores, cumulative probability, drop the tokens
        # whose cumulative mass is <= 1 - top_p, always keep the most likely one.
        asc = scores.flip(-1)
        remove = asc.softmax(-1).cumsum(-1) <= 1 - params.top_p
        remove[:, -1] = False
        scores = asc.masked_fill(remove, float("-inf")).flip(-1)
    return scores, ids


def sample_next(logits: Tensor, params: SamplingParams) -> Tensor:
    """The next token id per row [B] from fp32 logits [B, V] (greedy when temperature is 0)."""
    if params.temperature == 0:
        return logits.argmax(-1)
    if params.top_p >= 1.0 and not 0 < params.top_k < logits.shape[-1]:
        scores = logits if params.temperature == 1.0 else logits / params.temperature
        return torch.multinomial(scores.softmax(-1), 1).squeeze(1)
    scores, ids = warp(logits, params)
    choice = torch.multinomial(scores.softmax(-1), 1)
    return ids.gather(1, choice).squeeze(1)


# ------------------------------------------------------------------------------------------------
# The in-process engine


def distinct_rows(keys: Sequence) -> tuple[list[int], list[int]]:
    """(first, inverse): the index of the first row of each distinct key, in order of first
    appearance, and per row the position of its key in `first` (keys[first[inverse[i]]] ==
    keys[i])."""
    slot: dict = {}
    first: list[int] = []
    inverse = []
    for i, key in enumerate(keys):
        if key not in slot:
            slot[key] = len(first)
            first.append(i)
        inverse.append(slot[key])
    return first, inverse


def _cache_bucket(length: int) -> int:
    # Static caches are sized in steps of 256 so that a compiled decode step is reused across
    # generate calls whose prompts differ a little in length.
    return -(-length // 256) * 256


class TorchEngine:
    """Generation with the model itself: merged adapter weights, HF's forward, our decode loop.

    model: a Hugging Face causal LM (anything taking input_ids, attention_mask, position_ids, cache,
        use_cache, logits_to_keep). adapter: its BlockLoRA handle, or None (every state is then
        the plain model). eos_id None generates exactly max_new_tokens (benchmarks).
    cache: "dynamic", "static" or "auto" (static on CUDA, dynamic elsewhere).
    compile: torch.compile the decode step (static cache only); None = on with CUDA.
    share_prefill: run the prompt forward once per distinct (prompt, state) and copy its KV to
        the rows that repeat it (a GRPO group); off = one prompt forward per row (for tests).
    """

    def __init__(
        self,
        model,
        adapter=None,
        *,
        eos_id: int | None,
        pad_id: int,
        device="cpu",
        cache: str = "auto",
        compile: bool | None = None,
        share_prefill: bool = True,
    ) -> None:
        if cache not in CACHES:
            raise ValueError(f"unknown cache {cache!r}; choose one of {CACHES}")
        self.model = model
        self.adapter = adapter
        self.eos_id = eos_id
        self.pad_id = pad_id
        self.device = torch.device(device)
        on_cuda = self.device.type == "cuda"
        self.cache = cache if cache != "auto" else ("static" if on_cuda else "dynamic")
        self.compile = on_cuda if compile is None else compile
        if self.compile and self.cache != "static":
            raise ValueError("compile=True needs cache='static' (a dynamic cache changes shape)")
        self.share_prefill = share_prefill
        self._compiled_call = None
        self._static_cache = None  # reused across calls: its buffers are the compiled graph's

    # -- model states ------------------------------------------------------------------------------
    def _weights(self, states: Sequence[str]):
        """One context that puts every row's model state into the weights for decoding."""
        kinds = set(states)
        if self.adapter is None:
            return contextlib.nullcontext()
        if kinds == {"base"}:
            return self.adapter.disabled()
        if kinds == {"full"}:
            return self.adapter.merged(ablate=False)
        if kinds == {"deployed"}:
            return self.adapter.merged(ablate=True)
        if kinds == {"full", "deployed"}:
            return self.adapter.merged_per_row([1.0 if s == "full" else 0.0 for s in states])
        raise ValueError(f"internal: no single weight state for {sorted(kinds)}")

    @torch.no_grad()
    def generate(
        self,
        prompts: list[list[int]],
        params: SamplingParams,
        states: Sequence[str] | str = "full",
        on_done: Callable[[int, list[int]], None] | None = None,
    ) -> list[list[int]]:
        """One completion per prompt, row i from model state states[i]; ids up to and including
        EOS (or max_new_tokens ids). Full and deployed rows share one decode loop; base rows
        mixed with others get a loop of their own. `on_done(i, ids)` is called once per row, at
        the decode step where row i emits EOS (the rest at the end)."""
        states = [states] * len(prompts) if isinstance(states, str) else list(states)
        if len(states) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(states)} states")
        unknown = sorted(set(states) - set(STATES))
        if unknown:
            raise ValueError(f"unknown model state(s) {unknown}; choose from {STATES}")
        if not prompts:
            return []
        if self.adapter is not None and "base" in states and len(set(states)) > 1:
            out: list[list[int] | None] = [None] * len(prompts)
            for group in (["base"], ["full", "deployed"]):
                idx = [i for i, s in enumerate(states) if s in group]
                if idx:
                    done = (
                        None if on_done is None else (lambda j, ids, idx=idx: on_done(idx[j], ids))
                    )
                    sub = self.generate(
                        [prompts[i] for i in idx], params, [states[i] for i in idx], done
                    )
                    for i, c in zip(idx, sub, strict=True):
                        out[i] = c
            return out  # type: ignore[return-value]
        was_training = self.model.training
        self.model.eval()
        try:
            with self._weights(states):
                return self._decode(prompts, params, states, on_done)
        finally:
            self.model.train(was_training)

    # -- the decode loop ---------------------------------------------------------------------------
    def _new_cache(self, batch: int, length: int):
        from transformers import DynamicCache, StaticCache

        if self.cache == "dynamic":
            return DynamicCache(config=self.model.config)
        key = (batch, length)
        if self._static_cache is not None and self._static_cache[0] == key:
            cache = self._static_cache[1]
            cache.reset()
            return cache
        cache = StaticCache(config=self.model.config, max_cache_len=length)
        self._static_cache = (key, cache)
        return cache

    def _step_fn(self):
        if not self.compile:
            return self.model
        if self._compiled_call is None:
            mode = "reduce-overhead" if self.device.type == "cuda" else None
            self._compiled_call = torch.compile(self.model.__call__, mode=mode, dynamic=False)
        return self._compiled_call

    def _prefill(self, prompts, ids: Tensor, attn: Tensor, pos: Tensor, cache, states):
        """The prompt forward: logits of the last prompt position [B, V], KV into `cache`.

        Rows that share their prompt and model state (the G rollouts of a GRPO group) share it: the
        forward runs once per distinct row and its KV is copied to the duplicates. Rows never
        interact, so every row's logits and KV are the values its own forward gives (bit-identical
        on CPU, tested), at 1/G of the prompt compute."""
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer, StaticLayer

        first, inverse = distinct_rows(list(zip(map(tuple, prompts), states, strict=True)))
        layer_type = StaticLayer if self.cache == "static" else DynamicLayer
        plain = all(type(layer) is layer_type for layer in cache.layers)
        if not self.share_prefill or len(first) == len(inverse) or not plain:
            return self.model(
                input_ids=ids, attention_mask=attn, position_ids=pos, cache=cache,
                use_cache=True, logits_to_keep=1,
            ).logits[:, -1]  # fmt: skip
        rows = torch.tensor(first, device=ids.device)
        inv = torch.tensor(inverse, device=ids.device)
        shared = DynamicCache(config=self.model.config)
        subset = (
            self.adapter.row_subset(first)
            if self.adapter is not None and set(states) == {"full", "deployed"}
            else contextlib.nullcontext()
        )
        with subset:
            logits = self.model(
                input_ids=ids[rows], attention_mask=attn[rows], position_ids=pos[rows],
                cache=shared, use_cache=True, logits_to_keep=1,
            ).logits[:, -1]  # fmt: skip
        for layer, src in zip(cache.layers, shared.layers, strict=True):
            layer.update(src.keys[inv], src.values[inv])
        return logits[inv]

    def _decode(
        self,
        prompts: list[list[int]],
        params: SamplingParams,
        states: Sequence[str],
        on_done: Callable[[int, list[int]], None] | None = None,
    ) -> list[list[int]]:
        n_rows, lp, n_new = len(prompts), max(len(p) for p in prompts), params.max_new_tokens
        static = self.cache == "static"
        total = _cache_bucket(lp + n_new) if static else lp + n_new
        ids = torch.full((n_rows, lp), self.pad_id, dtype=torch.long)
        attn = torch.zeros((n_rows, total), dtype=torch.long)  # grows one column per step
        for i, p in enumerate(prompts):
            if not p:
                raise ValueError(f"prompt {i} is empty")
            ids[i, lp - len(p) :] = torch.tensor(p)
            attn[i, lp - len(p) : lp] = 1
        ids, attn = ids.to(self.device), attn.to(self.device)
        pos = (attn[:, :lp].cumsum(1) - 1).clamp(min=0)
        cache = self._new_cache(n_rows, total)
        logits = self._prefill(prompts, ids, attn[:, :lp], pos, cache, states)
        step = self._step_fn()
        pos = pos[:, -1:] + 1
        tokens = torch.full((n_rows, n_new), self.pad_id, dtype=torch.long, device=self.device)
        done = torch.zeros(n_rows, dtype=torch.bool, device=self.device)
        for t in range(n_new):
            tok = sample_next(logits.float(), params)
            if self.eos_id is not None:
                tok = tok.masked_fill(done, self.pad_id)  # finished rows emit pad, as in HF
                ended = (tok == self.eos_id) & ~done  # pad may equal EOS
                done |= ended
            tokens[:, t] = tok
            if on_done is not None and self.eos_id is not None:
                for i in ended.nonzero().flatten().tolist():
                    on_done(i, tokens[i, : t + 1].tolist())
            if t == n_new - 1 or (self.eos_id is not None and bool(done.all())):
                break
            attn[:, lp + t] = 1
            logits = step(
                input_ids=tok[:, None],
                attention_mask=attn if static else attn[:, : lp + t + 1],
                position_ids=pos,
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            ).logits[:, -1]
            pos = pos + 1
        completions = []
        for i, row in enumerate(tokens.tolist()):
            if self.eos_id is not None and self.eos_id in row:
                row = row[: row.index(self.eos_id) + 1]
            elif on_done is not None:  # cut at max_new_tokens: complete only now
                on_done(i, row)
            completions.append(row)
        return completions
