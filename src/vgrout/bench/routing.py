"""Micro-benchmark: what does routing cost over a plain LoRA of the same rank?

Times, on a toy-size Qwen3 (hidden 96, 4 layers by default) and one batch of rollouts:
- plain LoRA: a minimal rank-2r LoRA hook (x A^T B^T), no frozen init copies, no masks;
- BlockLoRA + masks: the training forward+backward with a mixed keep/absorb/rout batch;
- BlockLoRA unmasked: the same without masks (absorb/none arms);
- routeV scoring: the c-probe forward (quarantine ablated) + torch.autograd.grad on the probe
  leaves (no parameter gradients).
Variants run interleaved, repeat after repeat, and medians are reported, so drift in a shared
machine's load hits every variant alike. Run: `python -m vgrout.bench.routing`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vgrout.adapters import AdapterConfig, attach, find_targets

__all__ = ["bench_routing", "main"]


def _toy_model(hidden: int, layers: int, vocab: int, seed: int) -> nn.Module:
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    heads = 4
    cfg = Qwen3Config(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=hidden * 8 // 3,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=2,
        head_dim=hidden // heads,
        max_position_embeddings=512,
        tie_word_embeddings=True,
    )
    return Qwen3ForCausalLM(cfg).train()


def _attach_plain_lora(model: nn.Module, rank: int, targets) -> list[nn.Parameter]:
    """The baseline: y + B (A x) per target, trainable A, B; nothing else."""
    for p in model.parameters():
        p.requires_grad_(False)
    params: list[nn.Parameter] = []
    for module in find_targets(model, targets).values():
        d_out, d_in = module.weight.shape
        a = nn.Parameter(torch.randn(rank, d_in) / d_in**0.5)
        b = nn.Parameter(torch.randn(d_out, rank) / d_out**0.5)
        params += [a, b]

        def hook(_m, args, out, a=a, b=b):
            x = args[0]
            return out + F.linear(F.linear(x, a.to(x.dtype)), b.to(x.dtype))

        module.register_forward_hook(hook)
    return params


def _timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_routing(
    batch: int = 32,
    seq: int = 64,
    repeats: int = 7,
    hidden: int = 96,
    layers: int = 4,
    r: int = 8,
    vocab: int = 640,
    seed: int = 0,
    threads: int | None = None,
) -> list[str]:
    """Run the benchmark; return report lines, the last one the routing overhead ratio
    (BlockLoRA + masks over plain LoRA, forward+backward, medians; target < 1.3x).

    Each line also shows the ratio of the fastest repeats (min), which is steadier than the
    median on a loaded machine. `threads` sets torch's intra-op threads for the run (restored).
    """
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run(batch, seq, repeats, hidden, layers, r, vocab, seed)
    finally:
        torch.set_num_threads(old_threads)


def _run(
    batch: int, seq: int, repeats: int, hidden: int, layers: int, r: int, vocab: int, seed: int
) -> list[str]:
    cfg = AdapterConfig(r=r)
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, seq), generator=gen)
    targets = torch.randint(0, vocab, (batch, seq), generator=gen)
    zones = torch.arange(batch) % 3  # keep, absorb, rout in equal shares
    m = (zones > 0).float()
    d = (zones == 2).float()

    plain_model = _toy_model(hidden, layers, vocab, seed)
    plain_params = _attach_plain_lora(plain_model, 2 * r, cfg.targets)
    block_model = _toy_model(hidden, layers, vocab, seed)
    lora = attach(block_model, cfg)

    def loss_of(model: nn.Module) -> torch.Tensor:
        logits = model(ids).logits
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum")

    def plain_step() -> None:
        loss_of(plain_model).backward()
        for p in plain_params:
            p.grad = None

    def block_step(masked: bool) -> None:
        if masked:
            with lora.route(m, d):
                loss = loss_of(block_model)
        else:
            loss = loss_of(block_model)
        loss.backward()
        for p in lora.parameters():
            p.grad = None

    def score_step() -> None:  # as vgrout.routing.router scores: deployed model, probe leaves only
        with lora.ablated(), lora.c_probe() as probe:
            probe.grads(loss_of(block_model))

    variants = {
        "plain LoRA (rank 2r)": plain_step,
        "BlockLoRA + masks": lambda: block_step(True),
        "BlockLoRA unmasked": lambda: block_step(False),
        "routeV scoring (c-probe)": score_step,
    }
    for fn in variants.values():  # warm-up (allocator, kernels)
        fn()
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            times[name].append(_timed(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    fastest = {k: min(v) for k, v in times.items()}
    plain = med["plain LoRA (rank 2r)"]
    plain_fastest = fastest["plain LoRA (rank 2r)"]
    lines = [
        f"toy Qwen3 hidden={hidden} layers={layers} vocab={vocab}, r={r} (rank 2r={2 * r}), "
        f"batch={batch} x seq={seq}, {torch.get_num_threads()} threads, "
        f"median of {repeats} interleaved repeats (forward+backward)",
    ]
    for name, t in med.items():
        lines.append(
            f"{name:<26} median {t * 1e3:8.1f} ms  {t / plain:5.2f}x plain"
            f"   (min {fastest[name] * 1e3:8.1f} ms  {fastest[name] / plain_fastest:5.2f}x)"
        )
    overhead = med["BlockLoRA + masks"] / plain
    lines.append(f"overhead BlockLoRA+masks / plain LoRA: {overhead:.2f}x")
    return lines


def main() -> None:
    """Print the benchmark report (`python -m vgrout.bench.routing [repeats] [threads]`)."""
    import sys

    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else None
    for line in bench_routing(repeats=repeats, threads=threads):
        print(line)


if __name__ == "__main__":
    main()
