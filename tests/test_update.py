"""The policy update at scale: chunked log-probs and micro-batches change memory, never the numbers."""

from __future__ import annotations

import pytest
import torch
from _tiny import random_ids, tiny_qwen3

from vgrout.adapters import AdapterConfig, attach
from vgrout.config import TrainConfig
from vgrout.rl.grpo import chunked_token_logprobs, token_logprobs
from vgrout.rl.policy import (
    completion_logprobs,
    make_batch,
    micro_batch_rows,
    shared_prompt_logprobs,
)
from vgrout.rl.update import policy_update
from vgrout.routing.gates import gate_for_arm


def ragged_batch(n=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    prompts = [random_ids(1, int(torch.randint(2, 7, (1,), generator=gen)), seed + i)[0].tolist()
               for i in range(n)]  # fmt: skip
    completions = [
        random_ids(1, int(torch.randint(1, 9, (1,), generator=gen)), 100 + seed + i)[0].tolist()
        for i in range(n)
    ]
    return make_batch(prompts, completions, pad_id=0)


def hf_reference(model, batch):
    """The unchunked path: HF's logits for the completion positions, log-softmax in fp32."""
    lc = batch.completion_ids.shape[1]
    out = model(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask,
        position_ids=batch.position_ids, logits_to_keep=lc + 1, use_cache=False,
    )  # fmt: skip
    return token_logprobs(out.logits[:, :-1], batch.completion_ids) * batch.completion_mask


def frozen_head_model():
    model = tiny_qwen3(seed=3)  # fp32
    for p in model.get_output_embeddings().parameters():
        p.requires_grad_(False)
    model.get_input_embeddings().weight.requires_grad_(False)
    return model


@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_chunked_logprobs_equal_hf_values_and_gradients(chunk):
    model = frozen_head_model()
    batch = ragged_batch()
    weights = torch.randn(batch.completion_ids.shape, generator=torch.Generator().manual_seed(1))
    params = [p for p in model.parameters() if p.requires_grad]

    ref = hf_reference(model, batch)
    ref_grads = torch.autograd.grad((ref * weights).sum(), params)
    got = completion_logprobs(model, batch, chunk_tokens=chunk)
    got_grads = torch.autograd.grad((got * weights).sum(), params)

    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    assert (got[batch.completion_mask == 0] == 0).all()
    for g, r in zip(got_grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)


def test_chunked_logprobs_gradient_wrt_hidden_states():
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(7, 6, generator=gen, requires_grad=True)
    weight = torch.randn(11, 6, generator=gen)
    targets = torch.randint(0, 11, (7,), generator=gen)
    upstream = torch.randn(7, generator=gen)
    ref = token_logprobs((hidden @ weight.T).unsqueeze(0), targets.unsqueeze(0)).squeeze(0)
    (ref_grad,) = torch.autograd.grad((ref * upstream).sum(), hidden)
    got = chunked_token_logprobs(hidden, weight, targets, 2)
    (got_grad,) = torch.autograd.grad((got * upstream).sum(), hidden)
    torch.testing.assert_close(got, ref)
    torch.testing.assert_close(got_grad, ref_grad)
    with torch.no_grad():  # no grad wanted: nothing to save, same values
        torch.testing.assert_close(chunked_token_logprobs(hidden, weight, targets, 3), ref)


def test_chunked_logprobs_refuse_a_trained_head():
    with pytest.raises(ValueError, match="frozen output head"):
        chunked_token_logprobs(torch.randn(2, 3), torch.randn(4, 3, requires_grad=True),
                               torch.tensor([0, 1]), 1)  # fmt: skip
    with pytest.raises(ValueError, match="chunk"):
        chunked_token_logprobs(torch.randn(2, 3), torch.randn(4, 3), torch.tensor([0, 1]), 0)


def test_a_trained_head_takes_hf_forward():
    model = tiny_qwen3(seed=3)  # every parameter trainable, head included
    batch = ragged_batch()
    torch.testing.assert_close(completion_logprobs(model, batch), hf_reference(model, batch))


def grouped_batch(groups=3, size=4, seed=0):
    """GRPO-shaped rows: `groups` prompts (of different lengths) x `size` completions each."""
    gen = torch.Generator().manual_seed(seed)
    prompts, completions = [], []
    for g in range(groups):
        prompt = random_ids(1, 3 + 2 * g, seed + g)[0].tolist()
        for j in range(size):
            n = int(torch.randint(1, 9, (1,), generator=gen))
            prompts.append(prompt)
            completions.append(random_ids(1, n, 100 + seed + 10 * g + j)[0].tolist())
    return make_batch(prompts, completions, pad_id=0)


@pytest.mark.parametrize("chunk", [0, 3])
def test_shared_prompts_give_the_values_and_gradients_of_one_forward_per_row(chunk):
    model = frozen_head_model()
    adapter = attach(model, AdapterConfig(r=2))
    with torch.no_grad():
        for p in adapter.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    batch = grouped_batch()
    n = len(batch)
    # route masks that differ within a group: keep (0,0), absorb (1,0) and rout (1,1) rows
    m = torch.tensor([0.0, 1.0, 1.0, 0.0] * 3)
    d = torch.tensor([0.0, 0.0, 1.0, 0.0] * 3)
    keys = list(zip(m.tolist(), d.tolist(), strict=True))
    weights = torch.randn(batch.completion_ids.shape, generator=torch.Generator().manual_seed(1))
    params = [p for p in model.parameters() if p.requires_grad] + list(adapter.parameters())

    with adapter.route(m, d):
        ref = completion_logprobs(model, batch, chunk)
    ref_grads = torch.autograd.grad((ref * weights).sum(), params)
    seen = []

    def route(index):
        seen.append(len(index))
        return adapter.route(m[index], d[index])

    got = shared_prompt_logprobs(model, batch, keys, route, chunk)
    got_grads = torch.autograd.grad((got * weights).sum(), params)
    assert seen == [3 * 3, n]  # 3 prompts x 3 distinct masks, then every completion
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    assert (got[batch.completion_mask == 0] == 0).all()
    for g, r in zip(got_grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)
    with torch.no_grad():  # one state for all rows: one prompt forward per group
        torch.testing.assert_close(
            shared_prompt_logprobs(model, batch), completion_logprobs(model, batch)
        )


def update_grads(micro_batch: int, arm: str, batch, advantages, labels=None, share=True):
    model = tiny_qwen3(seed=5)
    adapter = attach(model, AdapterConfig(r=2))
    with torch.no_grad():  # a non-zero delta so both blocks shape the forward
        for p in adapter.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    policy = type("P", (), {"adapter": adapter, "model": model})()
    policy.logprobs = lambda sub, state="full", share_prompts=False: completion_logprobs(
        model, sub
    ).detach()
    cfg = TrainConfig(micro_batch=micro_batch, prompts_per_step=1, group_size=len(batch),
                      max_new_tokens=8, kl_beta=0.0, share_prompt_forward=share)  # fmt: skip
    gate = gate_for_arm(arm, len(batch), labels=labels)
    rows = [type("R", (), {"advantage": float(a)})() for a in advantages]
    n, lc = batch.completion_ids.shape
    stats = policy_update(cfg, policy, batch, rows, gate, torch.zeros(n, lc),
                          torch.zeros(n, dtype=torch.bool))  # fmt: skip
    return [p.grad.clone() for p in adapter.parameters()], stats


@pytest.mark.parametrize("arm", ["none", "plain", "oracle"])
def test_gradient_does_not_depend_on_micro_batch(arm):
    batch = ragged_batch(n=5, seed=2)
    adv = [1.0, -0.5, 0.25, -1.0, 0.75]
    labels = [True, False, True, False, False] if arm == "oracle" else None
    ref, ref_stats = update_grads(5, arm, batch, adv, labels)
    for micro in (1, 2, 0):
        got, stats = update_grads(micro, arm, batch, adv, labels)
        assert stats["loss"] == pytest.approx(ref_stats["loss"], rel=1e-5, abs=1e-7)
        for g, r in zip(got, ref, strict=True):
            torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("arm", ["none", "oracle"])
def test_shared_prompt_update_has_the_per_row_gradient(arm):
    batch = grouped_batch(groups=2, size=4, seed=4)
    adv = [1.0, -0.5, 0.25, -0.75, 0.5, -1.0, 0.25, 0.25]
    labels = [True, False, False, True, False, True, False, False] if arm == "oracle" else None
    ref, ref_stats = update_grads(8, arm, batch, adv, labels, share=False)
    for micro in (8, 3):
        got, stats = update_grads(micro, arm, batch, adv, labels, share=True)
        assert stats["loss"] == pytest.approx(ref_stats["loss"], rel=1e-5, abs=1e-7)
        for g, r in zip(got, ref, strict=True):
            torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-7)


def test_auto_micro_batch_keeps_explicit_values_and_fits_the_batch():
    model, batch = tiny_qwen3(), ragged_batch(n=5)
    assert micro_batch_rows(3, model, batch) == 3
    assert 1 <= micro_batch_rows(0, model, batch) <= 5  # a tiny model on any machine: all rows
    assert micro_batch_rows(0, model, batch) == 5


def test_auto_chunks_only_when_the_logits_exceed_one_chunk(monkeypatch):
    """A batch whose logits fit one chunk (the toy's) takes HF's forward bit for bit, so seeded toy
    runs keep their exact numbers; a larger one takes the chunked path (same values)."""
    import vgrout.rl.policy as policy_mod

    model = frozen_head_model()
    batch = ragged_batch()
    assert torch.equal(completion_logprobs(model, batch), hf_reference(model, batch))
    calls = []
    real = policy_mod.chunked_token_logprobs
    monkeypatch.setattr(
        policy_mod, "chunked_token_logprobs", lambda *a: calls.append(1) or real(*a)
    )
    completion_logprobs(model, batch)
    assert calls == []
    monkeypatch.setattr(policy_mod, "LOGIT_CHUNK_ELEMENTS", 8)
    got = completion_logprobs(model, batch)
    assert calls
    torch.testing.assert_close(got, hf_reference(model, batch), rtol=1e-5, atol=1e-6)
