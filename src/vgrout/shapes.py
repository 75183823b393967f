"""Random weights of a published model shape, and an offline tokenizer, for benchmarks.

No model hub is reachable from the machines this runs on, so `model=random:SHAPE` builds a model
of a named published shape from its config values (written here from the model's config.json) with
random weights, directly on the target device, and a byte-level BPE tokenizer trained locally on the
run's own problem texts. The numbers it gives are speed figures only: a random model writes no
code. Torch-free at import (the config validates names here). A random model samples ids across the whole vocabulary; ids beyond the local tokenizer's
vocabulary decode to nothing, so completions are mostly empty text at full token length.
"""

from __future__ import annotations

RANDOM_PREFIX = "random:"

QWEN3_SHAPES: dict[str, dict] = {
    # Qwen/Qwen3-4B config.json
    "qwen3-4b": dict(
        vocab_size=151936, hidden_size=2560, num_hidden_layers=36, num_attention_heads=32,
        num_key_value_heads=8, head_dim=128, intermediate_size=9728, rope_theta=1000000.0,
        tie_word_embeddings=True, max_position_embeddings=40960, rms_norm_eps=1e-6,
    ),
    # Qwen/Qwen3-1.7B config.json
    "qwen3-1.7b": dict(
        vocab_size=151936, hidden_size=2048, num_hidden_layers=28, num_attention_heads=16,
        num_key_value_heads=8, head_dim=128, intermediate_size=6144, rope_theta=1000000.0,
        tie_word_embeddings=True, max_position_embeddings=40960, rms_norm_eps=1e-6,
    ),
    # Qwen3's vocabulary on a 2-layer, 64-wide body: the head's cost at CPU scale (tests)
    "qwen3-vocab-tiny": dict(
        vocab_size=151936, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, intermediate_size=192, rope_theta=1000000.0,
        tie_word_embeddings=True, max_position_embeddings=40960, rms_norm_eps=1e-6,
    ),
}  # fmt: skip

# The Qwen chat layout (system/user/assistant turns); `enable_thinking` is accepted and ignored.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def shape_name(model: str) -> str | None:
    """`qwen3-4b` for `random:qwen3-4b`; None for any other model name."""
    if not model.startswith(RANDOM_PREFIX):
        return None
    name = model[len(RANDOM_PREFIX) :]
    if name not in QWEN3_SHAPES:
        raise ValueError(
            f"config field model={model!r}: unknown shape {name!r}; choose one of "
            f"{', '.join(RANDOM_PREFIX + s for s in QWEN3_SHAPES)}"
        )
    return name


def random_model(name: str, device: str, dtype, seed: int = 0):
    """A Qwen3 causal LM of shape `name` with random weights, built on `device` in `dtype`."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen3Config

    cfg = Qwen3Config(**QWEN3_SHAPES[name], eos_token_id=2, pad_token_id=0, bos_token_id=None)
    torch.manual_seed(seed)
    with torch.device(device):  # never materialise a 4B model on the host first
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    model.name_or_path = RANDOM_PREFIX + name
    return model


def offline_tokenizer(texts: list[str], vocab_size: int = 32000):
    """A byte-level BPE trained on `texts` (Qwen-style special tokens and chat layout).

    Labelled: it stands in for the model's real tokenizer, which needs the hub. Byte-level like
    Qwen's, with a vocabulary trained on the same texts, so prompt lengths in tokens are of the
    real order. Ids: <|endoftext|> 0 (pad), <|im_start|> 1, <|im_end|> 2 (EOS).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
    )
    tok.name_or_path = "offline byte-level BPE (benchmark stand-in for the hub tokenizer)"
    return tok
