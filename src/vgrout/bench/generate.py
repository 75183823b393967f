"""`vgrout bench generate`: decode speed of vgrout's rollout engine vs Hugging Face `generate`.

Random weights of a named published shape (no download), one batch of random prompts of equal
length, the LeetCode preset's sampling, no EOS (every row generates exactly `new_tokens`). Both
sides run interleaved round by round (machine noise hits them alike); the medians are reported.
ms per decode step = (time for N new tokens - time for 1 new token) / (N - 1), the same formula
for both sides; tokens/s = batch x N / time for N. The last line is the ratio of the two times
for N tokens.
"""

from __future__ import annotations

import statistics
import time

import torch

from vgrout.shapes import QWEN3_SHAPES

# Published shapes live in vgrout.shapes (one home, written from the models' config.json; never
# inferred: a benchmark at the wrong shape is worse than none); the toy base is added here.
SHAPES: dict[str, dict] = {
    # The default toy base (vgrout.toy.model.ToyRecipe defaults; its trained BPE has 754 tokens).
    "toy": dict(
        vocab_size=754,
        hidden_size=96,
        intermediate_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=24,
        max_position_embeddings=512,
        tie_word_embeddings=True,
    ),
    **QWEN3_SHAPES,
}

# Peak memory bandwidth (TB/s, vendor datasheets), matched in order against the device name.
GPU_BANDWIDTH_TBS: tuple[tuple[str, float], ...] = (
    ("H200", 4.8),
    ("H100 PCIe", 2.0),
    ("H100 NVL", 3.9),
    ("H100", 3.35),
    ("A100-SXM4-80GB", 2.039),
    ("A100 80GB PCIe", 1.935),
    ("A100", 1.555),
    ("L40S", 0.864),
    ("L4", 0.3),
    ("A10G", 0.6),
    ("RTX 4090", 1.008),
    ("V100", 0.9),
)


def build_model(shape: str, device: str, dtype: torch.dtype, seed: int = 0):
    """A randomly initialised Qwen3ForCausalLM of a named shape, built directly on `device`."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; choose one of {sorted(SHAPES)}")
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen3ForCausalLM(Qwen3Config(**SHAPES[shape], dtype=dtype))
    return model.to(dtype).eval()


def bandwidth_tbs(device: torch.device) -> tuple[float | None, str]:
    """(peak TB/s or None, device name) for a known GPU."""
    if device.type != "cuda":
        return None, device.type
    name = torch.cuda.get_device_name(device)
    for key, tbs in GPU_BANDWIDTH_TBS:
        if key in name:
            return tbs, name
    return None, name


def _weight_bytes(model) -> int:
    seen, total = set(), 0
    for p in model.parameters():  # tied embeddings are one tensor: count it once
        if p.data_ptr() not in seen:
            seen.add(p.data_ptr())
            total += p.numel() * p.element_size()
    return total


def bench_generate(
    shape: str = "qwen3-vocab-tiny",
    batch: int = 56,
    new_tokens: int = 32,
    prompt_len: int = 256,
    device: str | None = None,
    rounds: int = 3,
    cache: str = "auto",
    compile: bool | None = None,
) -> list[str]:
    from vgrout.presets import load_preset
    from vgrout.rl.engine import SamplingParams, TorchEngine

    if new_tokens < 2 or batch < 1 or prompt_len < 1 or rounds < 1:
        raise ValueError("bench generate needs new_tokens >= 2, batch, prompt_len, rounds >= 1")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    model = build_model(shape, str(dev), dtype)
    preset = load_preset("leetcode-qwen3-4b")
    params = SamplingParams(new_tokens, preset.temperature, preset.top_p, preset.top_k)
    gen = torch.Generator().manual_seed(0)
    vocab = SHAPES[shape]["vocab_size"]
    prompt_ids = torch.randint(0, vocab, (batch, prompt_len), generator=gen)
    engine = TorchEngine(model, eos_id=None, pad_id=0, device=dev, cache=cache, compile=compile)
    prompts = prompt_ids.tolist()
    ids, attn = prompt_ids.to(dev), torch.ones_like(prompt_ids, device=dev)

    def hf(n: int) -> None:
        model.generate(
            input_ids=ids,
            attention_mask=attn,
            do_sample=True,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            max_new_tokens=n,
            eos_token_id=None,
            pad_token_id=0,
        )

    def ours(n: int) -> None:
        engine.generate(prompts, SamplingParams(n, params.temperature, params.top_p, params.top_k))

    def timed(fn, n: int) -> float:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        fn(n)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return time.perf_counter() - t0

    torch.manual_seed(0)
    with torch.no_grad():
        for fn in (hf, ours):  # warm-up (and compilation, if any)
            fn(2)
        times = {(side, n): [] for side in ("hf", "ours") for n in (1, new_tokens)}
        for _ in range(rounds):
            for side, fn in (("hf", hf), ("ours", ours)):
                for n in (new_tokens, 1):
                    times[side, n].append(timed(fn, n))
    med = {k: statistics.median(v) for k, v in times.items()}

    n_params = sum(p.numel() for p in {p.data_ptr(): p for p in model.parameters()}.values())
    lines = [
        f"shape {shape}: {n_params / 1e6:.1f}M parameters, {str(dtype).split('.')[-1]} on {dev}; "
        f"batch {batch}, prompt {prompt_len}, {new_tokens} new tokens; temperature "
        f"{params.temperature}, top_p {params.top_p}, top_k {params.top_k}; median of {rounds} "
        f"interleaved rounds"
    ]
    labels = {
        "hf": "HF generate (dynamic cache, HF warpers)",
        "ours": f"vgrout engine ({engine.cache} cache, compile {'on' if engine.compile else 'off'})",
    }
    for side in ("hf", "ours"):
        step_ms = 1e3 * (med[side, new_tokens] - med[side, 1]) / (new_tokens - 1)
        tps = batch * new_tokens / med[side, new_tokens]
        lines.append(
            f"{labels[side]}: {step_ms:.2f} ms/decode step, {tps:,.0f} tokens/s "
            f"({med[side, new_tokens]:.3f} s for {new_tokens} tokens)"
        )
    tbs, name = bandwidth_tbs(dev)
    weight_gb = _weight_bytes(model) / 1e9
    if tbs is None:
        lines.append(f"weight-bandwidth floor: unknown ({name}: bandwidth not in the table)")
    else:
        lines.append(
            f"weight-bandwidth floor: {weight_gb / tbs:.2f} ms/decode step "
            f"({weight_gb:.2f} GB of weights at {tbs} TB/s, {name})"
        )
    lines.append(
        f"speed-up over HF generate: {med['hf', new_tokens] / med['ours', new_tokens]:.2f}x"
    )
    for line in lines:
        print(line)
    return lines
