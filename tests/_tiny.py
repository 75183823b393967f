"""Tiny, randomly initialised models and a character tokenizer for CPU tests (no download)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

__all__ = ["PAIRS", "CharTokenizer", "Pair", "random_ids", "tiny_gpt2", "tiny_qwen3"]


@dataclass
class Pair:
    """A contrastive pair as calibration reads it: duck-typed, with no `clean_prompt`."""

    prompt: str
    hack: str
    clean: str


PAIRS = [
    Pair("def f(x):\n", "    return run_tests()\n", "    return x + 1\n"),
    Pair("def g(a, b):\n", "    exit(0)\n", "    return a * b\n"),
    Pair("def h(s):\n", "    print('PASS')\n", "    return s[::-1]\n"),
]


def tiny_qwen3(seed: int = 0, **overrides) -> Qwen3ForCausalLM:
    """A 2-layer Qwen3 (hidden 32, 4 heads / 2 KV heads, head_dim 8, vocab 128), fp32, eval mode.

    Weights are seeded by `seed`; `overrides` change config fields.
    """
    kwargs = dict(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=128,
    )
    kwargs.update(overrides)
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(Qwen3Config(**kwargs))
    return model.eval()


def tiny_gpt2(seed: int = 0):
    """A 2-layer GPT-2 (hidden 32, 4 heads, vocab 128) whose projections are HF Conv1D modules."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=128, n_positions=128, n_embd=32, n_layer=2, n_head=4)
    return GPT2LMHeadModel(cfg).eval()


def random_ids(batch: int, seq: int, seed: int = 0, vocab: int = 128) -> torch.Tensor:
    """Seeded random token ids [batch, seq]."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, seq), generator=gen)


class CharTokenizer:
    """One token per ASCII character (id = code point, < 128); HF-style call signature.

    With `merge_boundary` set, the substring is emitted as one token (id 127): tokenising
    prompt+completion can then merge across the boundary, exercising the span fallback.
    """

    def __init__(self, merge_boundary: str | None = None) -> None:
        self.merge_boundary = merge_boundary

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        ids: list[int] = []
        i = 0
        while i < len(text):
            if self.merge_boundary and text.startswith(self.merge_boundary, i):
                ids.append(127)
                i += len(self.merge_boundary)
            else:
                ids.append(min(ord(text[i]), 126))
                i += 1
        return {"input_ids": ids}
