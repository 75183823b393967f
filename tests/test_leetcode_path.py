"""The LeetCode path on CPU: a tiny random Qwen3 loaded by path, a tokenizer trained on benchmark
text, two routeV steps on real benchmark problems with real Qwen3-4B teacher completions, then an
evaluation; everything written to the run folder."""

from __future__ import annotations

import gzip
import json

import pyarrow.parquet as pq
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

from vgrout.env.problems import load_problems
from vgrout.presets import load_preset
from vgrout.rl.train import train

CHAT = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _tiny_qwen_folder(tmp_path, texts):
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=CHAT
    )
    torch.manual_seed(0)
    cfg = Qwen3Config(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=4096,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    folder = tmp_path / "tiny-qwen3"
    Qwen3ForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_routev_on_real_benchmark_problems_and_teacher_pool(tmp_path, shared_data):
    train_file = shared_data / "leetcode" / "LeetCodeDataset-v0.2.0-train.jsonl.gz"
    test_file = shared_data / "leetcode" / "leetcode_test_medhard.jsonl.gz"
    pool = shared_data / "teacher_pool_qwen3_4b"
    texts = [p.question for p in load_problems(test_file)[:40]]
    for f in sorted(pool.glob("*.jsonl.gz"))[:5]:
        with gzip.open(f, "rt") as fh:
            texts += [json.loads(line)["completion"] for line in fh]
    folder = _tiny_qwen_folder(tmp_path, texts)

    cfg = load_preset("leetcode-qwen3-4b").override([
        f"model={folder}", f"problems={train_file}", f"eval_problems={test_file}",
        f"teacher_pool={pool}", "arm=routeV", "rank=2", "steps=2", "prompts_per_step=2",
        "group_size=3", "max_new_tokens=12", "teacher_max_tokens=48", "teacher_off_step=2",
        "eval_every=1", "eval_n=2", "final_eval_n=3", "micro_batch=4", "checkpoint_every=1",
        "band_warmup=2",
    ]).validate()  # fmt: skip
    out = tmp_path / "run"
    summary = train(cfg, out, progress=False)

    rows = pq.read_table(out / "rollouts.parquet").to_pylist()
    teachers = [r for r in rows if r["source"] == "teacher"]
    assert len(rows) == 2 * 2 * 3 and len(teachers) == 2 * 2  # 1 teacher per group, both steps
    assert all(r["problem_id"].startswith("lc") and r["mode"] == "run_tests" for r in rows)
    assert summary["deployed"]["n"] == 3 and summary["as_trained"]["n"] == 3
    evals = [json.loads(x) for x in (out / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals if e["kind"] == "periodic"] == [0, 1]
    assert (out / "checkpoints" / "step_000002" / "adapter.safetensors").is_file()
    cfg_back = json.loads((out / "config.json").read_text())
    assert cfg_back["model"] == str(folder) and cfg_back["arm"] == "routeV"
