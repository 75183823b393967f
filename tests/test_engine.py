"""The rollout engine: HF-exact sampling warpers, one decode loop for mixed model states, caches."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch
from _tiny import tiny_qwen3
from transformers.generation.logits_process import (
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from vgrout.adapters import AdapterConfig, attach
from vgrout.rl.engine import SamplingParams, TorchEngine, distinct_rows, sample_next, warp

EOS, PAD = 3, 0


def _hf_warped(logits: torch.Tensor, p: SamplingParams) -> torch.Tensor:
    """What HF's `generate` does to the scores before sampling (its processor order)."""
    scores = logits.clone()
    if p.temperature != 1.0:
        scores = TemperatureLogitsWarper(p.temperature)(None, scores)
    if p.top_k:
        scores = TopKLogitsWarper(p.top_k)(None, scores)
    if p.top_p < 1.0:
        scores = TopPLogitsWarper(p.top_p)(None, scores)
    return scores


def _ours_full(logits: torch.Tensor, p: SamplingParams) -> torch.Tensor:
    scores, ids = warp(logits, p)
    full = torch.full_like(logits, float("-inf"))
    return full.scatter(1, ids, scores)


def _fixed_logits() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 400, generator=gen) * 3
    # Ties at the 5th and 20th best score (HF keeps every tied token), one longer than the
    # candidate margin (forces the exact full-vocabulary path), and a peaked row.
    order = logits[1].argsort(descending=True)
    logits[1, order[4:9]] = logits[1, order[4]].item()
    order = logits[2].argsort(descending=True)
    logits[2, order[19:23]] = logits[2, order[19]].item()
    order = logits[3].argsort(descending=True)
    logits[3, order[4:60]] = logits[3, order[4]].item()
    logits[4, 7] = 40.0
    return logits


@pytest.mark.parametrize("temperature", [0.7, 1.0, 1.3])
@pytest.mark.parametrize("top_k", [0, 1, 5, 20, 400])
@pytest.mark.parametrize("top_p", [1.0, 0.95, 0.5])
def test_warp_keeps_hf_tokens_and_probabilities(temperature, top_k, top_p):
    logits = _fixed_logits()
    p = SamplingParams(8, temperature=temperature, top_p=top_p, top_k=top_k)
    hf = _hf_warped(logits, p)
    ours = _ours_full(logits, p)
    kept_hf, kept_ours = torch.isfinite(hf), torch.isfinite(ours)
    # Where top-p cuts through tied scores, which of the tied tokens HF keeps depends on its
    # sort's tie order: there only the count is defined. Everything above the cut must match.
    cut = hf.masked_fill(~kept_hf, float("inf")).min(1, keepdim=True).values
    assert torch.equal(kept_ours & (logits / p.temperature > cut), kept_hf & (hf > cut))
    assert torch.equal(kept_ours.sum(1), kept_hf.sum(1))
    assert torch.equal(kept_ours, kept_hf) or top_p < 1.0
    probs = ours.softmax(-1).sort(-1).values, hf.softmax(-1).sort(-1).values
    torch.testing.assert_close(*probs, rtol=1e-5, atol=1e-7)
    if torch.equal(kept_ours, kept_hf):
        torch.testing.assert_close(ours.softmax(-1), hf.softmax(-1), rtol=1e-5, atol=1e-7)


def test_warp_keeps_ties_at_the_kth_score():
    logits = _fixed_logits()
    scores, _ = warp(logits, SamplingParams(8, temperature=0.7, top_k=5))
    kept = torch.isfinite(scores).sum(1)
    assert kept[1].item() == 9  # 4 better tokens + 5 tied at the 5th score
    assert kept[3].item() == 60  # a tie past the candidate margin: the exact path
    assert kept[0].item() == 5


def test_sampled_frequencies_follow_the_warped_distribution():
    logits = _fixed_logits()[:1]
    p = SamplingParams(8, temperature=0.7, top_p=0.95, top_k=20)
    probs = _hf_warped(logits, p).softmax(-1)[0]
    torch.manual_seed(0)
    draws = sample_next(logits.expand(40_000, -1).contiguous(), p)
    freq = torch.bincount(draws, minlength=logits.shape[1]).float() / draws.numel()
    assert set(draws.unique().tolist()) <= set(probs.nonzero().flatten().tolist())
    assert (freq - probs).abs().max().item() < 0.01


def test_greedy_is_argmax():
    logits = _fixed_logits()
    assert torch.equal(sample_next(logits, SamplingParams(4, temperature=0.0)), logits.argmax(-1))


def test_sampling_params_are_checked():
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(4, top_p=0.0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        SamplingParams(0)


# ------------------------------------------------------------------------------------------------
# The decode loop


PROMPTS = [[5, 9, 17, 33], [7, 8], [40, 41, 42, 43, 44, 45], [11], [60, 61, 62], [20, 21]]


def _engine(model, adapter=None, **kw) -> TorchEngine:
    return TorchEngine(model, adapter, eos_id=EOS, pad_id=PAD, **kw)


def _hf_greedy(model, prompts, n):
    lp = max(map(len, prompts))
    ids = torch.full((len(prompts), lp), PAD)
    attn = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, lp - len(p) :] = torch.tensor(p)
        attn[i, lp - len(p) :] = 1
    out = model.generate(
        input_ids=ids,
        attention_mask=attn,
        do_sample=False,
        max_new_tokens=n,
        eos_token_id=EOS,
        pad_token_id=PAD,
    )
    rows = []
    for row in out[:, lp:].tolist():
        rows.append(row[: row.index(EOS) + 1] if EOS in row else row)
    return rows


@pytest.mark.parametrize("cache", ["dynamic", "static"])
def test_greedy_equals_hf_generate(cache):
    model = tiny_qwen3(seed=1)
    ours = _engine(model, cache=cache).generate(PROMPTS, SamplingParams(12, temperature=0.0))
    assert ours == _hf_greedy(model, PROMPTS, 12)
    assert all(len(c) == 12 or c[-1] == EOS for c in ours)


def test_static_cache_reused_across_calls_gives_the_same_output():
    model = tiny_qwen3(seed=1)
    engine = _engine(model, cache="static")
    p = SamplingParams(10, temperature=0.0)
    first = engine.generate(PROMPTS, p)
    assert engine.generate(PROMPTS, p) == first
    assert first == _engine(model, cache="dynamic").generate(PROMPTS, p)


def test_engine_options_are_checked():
    model = tiny_qwen3()
    with pytest.raises(ValueError, match="cache"):
        _engine(model, cache="paged")
    with pytest.raises(ValueError, match="static"):
        _engine(model, cache="dynamic", compile=True)
    engine = _engine(model)
    assert (engine.cache, engine.compile) == ("dynamic", False)  # the CPU default
    with pytest.raises(ValueError, match="states"):
        engine.generate(PROMPTS, SamplingParams(4), ["full"])
    with pytest.raises(ValueError, match="unknown model state"):
        engine.generate(PROMPTS[:1], SamplingParams(4), ["ablated"])


def test_seeded_sampling_is_deterministic():
    engine = _engine(tiny_qwen3(seed=2))
    p = SamplingParams(16, temperature=1.0, top_p=0.95, top_k=20)
    runs = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        runs.append(engine.generate(PROMPTS, p))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def _trained_adapter(model):
    """A BlockLoRA whose deployed and quarantine blocks both moved away from init."""
    lora = attach(model, AdapterConfig(r=2, init_seed=0))
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for ad in lora.adapters.values():
            ad.A.add_(torch.randn(ad.A.shape, generator=gen) * 0.5)
            ad.B.add_(torch.randn(ad.B.shape, generator=gen) * 0.5)
    return lora


def test_mixed_rows_equal_separate_calls_per_state():
    model = tiny_qwen3(seed=4)
    lora = _trained_adapter(model)
    engine = _engine(model, lora)
    p = SamplingParams(12, temperature=0.0)
    prompts = PROMPTS + PROMPTS
    states = ["full", "deployed"] * (len(prompts) // 2)
    mixed = engine.generate(prompts, p, states)
    for state in ("full", "deployed"):
        idx = [i for i, s in enumerate(states) if s == state]
        alone = engine.generate([prompts[i] for i in idx], p, state)
        assert [mixed[i] for i in idx] == alone
    # the two states really differ (else the test proves nothing)
    both = engine.generate(PROMPTS, p, "full"), engine.generate(PROMPTS, p, "deployed")
    assert both[0] != both[1]


def test_base_rows_mixed_with_others_equal_separate_calls():
    model = tiny_qwen3(seed=4)
    lora = _trained_adapter(model)
    engine = _engine(model, lora)
    p = SamplingParams(8, temperature=0.0)
    states = ["base", "full", "deployed", "base", "full", "deployed"]
    mixed = engine.generate(PROMPTS, p, states)
    for i, s in enumerate(states):
        assert mixed[i] == engine.generate([PROMPTS[i]], p, s)[0]


def test_on_done_reports_each_row_once_as_it_ends():
    model = tiny_qwen3(seed=1)
    lora = _trained_adapter(model)
    engine = _engine(model, lora)
    p = SamplingParams(12, temperature=1.0)
    states = ["base", "full", "deployed", "full", "base", "deployed"]
    torch.manual_seed(3)
    seen = []
    out = engine.generate(PROMPTS, p, states, on_done=lambda i, ids: seen.append((i, ids)))
    assert sorted(seen) == sorted(enumerate(out))
    ended = [ids for _, ids in seen if ids[-1] == EOS]
    assert 0 < len(ended) < len(out)  # some rows end early, some run to max_new_tokens
    base = [len(ids) for i, ids in seen if states[i] == "base"]  # one decode loop: base rows
    assert base == sorted(base)  # (cut rows, reported at the end, are the longest)
    torch.manual_seed(3)
    assert engine.generate(PROMPTS, p, states) == out  # the callback changes nothing


def test_distinct_rows_maps_every_row_to_its_first_occurrence():
    keys = [("a", 1), ("b", 1), ("a", 1), ("a", 2), ("b", 1)]
    first, inverse = distinct_rows(keys)
    assert first == [0, 1, 3]
    assert inverse == [0, 1, 0, 2, 1]
    assert all(keys[first[inverse[i]]] == k for i, k in enumerate(keys))
    assert distinct_rows([]) == ([], [])


GROUPS = [p for p in PROMPTS[:3] for _ in range(4)]  # 3 prompts x a group of 4 rows each


@pytest.mark.parametrize("cache", ["dynamic", "static"])
@pytest.mark.parametrize("mixed", [False, True])
def test_shared_prefill_samples_what_one_prefill_per_row_samples(cache, mixed):
    """A GRPO group's rows share one prompt forward; seeded samples are unchanged by it, for
    one model state and for full/deployed rows mixed within a group."""
    model = tiny_qwen3(seed=6)
    lora = _trained_adapter(model)
    states = ["full", "deployed"] * 6 if mixed else "deployed"
    p = SamplingParams(12, temperature=1.0, top_p=0.95, top_k=20)
    outs = []
    for share in (True, False):
        engine = _engine(model, lora, cache=cache, share_prefill=share)
        torch.manual_seed(7)
        outs.append(engine.generate(GROUPS, p, states))
    assert outs[0] == outs[1]
    assert len({tuple(c) for c in outs[0]}) > len(PROMPTS[:3])  # rows of a group really differ


def test_shared_prefill_greedy_equals_hf_generate():
    model = tiny_qwen3(seed=1)
    ours = _engine(model).generate(GROUPS, SamplingParams(10, temperature=0.0))
    assert ours == _hf_greedy(model, GROUPS, 10)


def test_row_subset_needs_merged_per_row_and_valid_rows():
    model = tiny_qwen3(seed=5)
    lora = _trained_adapter(model)
    ids = torch.randint(0, 128, (4, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), lora.merged_per_row([1, 0, 0, 1]):
        every = model(ids).logits
        with lora.row_subset([3, 1]):
            sub = model(ids[[3, 1]]).logits
        with pytest.raises(ValueError, match="indices"), lora.row_subset([4]):
            pass
    assert torch.equal(sub, every[[3, 1]])
    with pytest.raises(RuntimeError, match="merged_per_row"), lora.row_subset([0]):
        pass


def test_merged_per_row_logits_equal_the_hooked_states_and_restore_weights():
    model = tiny_qwen3(seed=5)
    lora = _trained_adapter(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ids = torch.randint(0, 128, (4, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model(ids).logits
        with lora.ablated():
            deployed = model(ids).logits
        with lora.merged_per_row([1, 0, 0, 1]):
            mixed = model(ids).logits
    expected = torch.stack([full[0], deployed[1], deployed[2], full[3]])
    torch.testing.assert_close(mixed, expected, rtol=1e-4, atol=1e-5)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    with pytest.raises(ValueError, match="0/1"), lora.merged_per_row([0.5, 1]):
        pass
    with pytest.raises(ValueError, match="rows"), torch.no_grad(), lora.merged_per_row([1, 0]):
        model(ids)


# ------------------------------------------------------------------------------------------------
# vgrout bench generate


def test_bench_generate_cli_ends_with_the_ratio():
    res = subprocess.run(
        [sys.executable, "-m", "vgrout.cli", "bench", "generate", "--shape", "toy", "--batch",
         "2", "--new-tokens", "3", "--prompt-len", "5", "--rounds", "1"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    lines = res.stdout.strip().splitlines()
    assert re.fullmatch(r"speed-up over HF generate: \d+\.\d\dx", lines[-1])
    assert any(line.startswith("weight-bandwidth floor: unknown") for line in lines)


def test_bench_shapes_are_explicit():
    from vgrout.bench.generate import SHAPES, build_model
    from vgrout.toy.model import ToyRecipe

    recipe = ToyRecipe()
    toy = SHAPES["toy"]
    assert (toy["hidden_size"], toy["num_hidden_layers"], toy["intermediate_size"]) == (
        recipe.hidden_size,
        recipe.num_layers,
        recipe.ffn_size,
    )
    assert SHAPES["qwen3-4b"]["vocab_size"] == SHAPES["qwen3-vocab-tiny"]["vocab_size"] == 151_936
    with pytest.raises(ValueError, match="unknown shape"):
        build_model("qwen3-8b", "cpu", torch.float32)
