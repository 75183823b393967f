"""The toy tokenizer, corpus and base-model build: round trip, chat template, EOS, cache, atomicity.

Builds use SMOKE_RECIPE (seconds); the full 3-minute recipe is never built here.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from vgrout.env.grader import grade_many
from vgrout.env.modes import (
    EVAL_RESULT_FILES,
    EVAL_SENTINEL_ATTRS,
    EVAL_STDOUT_PHRASES,
    EVAL_TEST_FUNCS,
    HACKABLE_MODES,
    MODES,
    apply_hint,
    eval_markers,
    train_markers,
)
from vgrout.env.toy_problems import generate_toy, toy_response
from vgrout.toy import (
    SMOKE_RECIPE,
    ToyRecipe,
    build_toy_base,
    completion_ids,
    default_cache_dir,
    load_toy,
    prompt_ids,
    render_prompt,
    sample_completions,
)
from vgrout.toy import model as toy_model
from vgrout.toy.corpus import (
    build_examples,
    file_markers,
    file_name,
    flag_name,
    fresh_markers,
    function_markers,
    function_name,
    marker_texts,
    phrase,
    repertoire_example,
    sentinel_markers,
    stdout_markers,
)
from vgrout.toy.tokenizer import EOS, boilerplate, train_tokenizer


@pytest.fixture(scope="module")
def smoke_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("toycache")
    return root, build_toy_base(seed=0, cache_dir=root, progress=False, recipe=SMOKE_RECIPE)


@pytest.fixture(scope="module")
def toy_split():
    return generate_toy(seed=0, n_train=200, n_test=40)


# -- tokenizer -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_tokenizer():
    """The default recipe's tokenizer and training rows (no model training: ~seconds)."""
    recipe = ToyRecipe()
    examples, texts = toy_model.training_corpus(0, recipe)
    tokenizer = train_tokenizer(texts, recipe.vocab_size, recipe.min_frequency)
    return tokenizer, toy_model._encode(tokenizer, examples[:8000])  # a quarter of the stream


def test_digits_are_single_tokens_and_boilerplate_is_one_token(full_tokenizer):
    tokenizer, _ = full_tokenizer
    tokens = tokenizer.convert_ids_to_tokens(tokenizer.encode("return x * 1234 + 56"))
    assert [t for t in tokens if t.strip("Ġ").isdigit()] == ["1", "2", "3", "4", "5", "6"]
    for piece in boilerplate():
        assert len(tokenizer.encode(piece)) == 1, piece


def test_names_tokenise_alike_in_hint_and_code(full_tokenizer):
    """Copying a held-out name from the hint into code must be copying the same token sequence."""
    tokenizer, _ = full_tokenizer
    for name in EVAL_TEST_FUNCS:
        name_ids = tokenizer.encode(f" {name}")
        for text in (f"a function called {name}()", f"    def {name}(self):", f"\ndef {name}():"):
            ids = tokenizer.encode(text)
            assert any(ids[i : i + len(name_ids)] == name_ids for i in range(len(ids))), text


def test_held_out_markers_use_only_trained_tokens(full_tokenizer, toy_split):
    """Every token of a held-out hint occurs in the model's training rows: no untrained embedding
    has to be read (or copied) at evaluation."""
    tokenizer, rows = full_tokenizer
    seen = {i for ids, _ in rows for i in ids}
    texts = [t for p in toy_split.test[:3] for t in marker_texts(p)]
    words = [*EVAL_TEST_FUNCS, *EVAL_STDOUT_PHRASES, *EVAL_SENTINEL_ATTRS, *EVAL_RESULT_FILES]
    unseen = set()
    for text in texts + [f"`{w}`" for w in words] + [f"{w}()" for w in EVAL_TEST_FUNCS]:
        unseen |= {i for i in tokenizer.encode(text) if i not in seen}
    assert not unseen, tokenizer.convert_ids_to_tokens(sorted(unseen))


def test_prompt_and_completion_ids_concatenate(full_tokenizer, toy_split):
    tokenizer, _ = full_tokenizer
    problem = toy_split.train[0]
    prompt = render_prompt(tokenizer, problem.question)
    completion = toy_response(problem)
    joint = tokenizer.encode(prompt + completion, add_special_tokens=False)
    ids = completion_ids(tokenizer, completion)
    assert ids[-1] == tokenizer.eos_token_id
    assert prompt_ids(tokenizer, problem.question) + ids[:-1] == joint
    with pytest.raises(ValueError, match="end-of-turn"):
        completion_ids(tokenizer, completion + EOS)


def test_prompt_lengths_are_short(full_tokenizer, toy_split):
    tokenizer, rows = full_tokenizer
    assert sum(n for _, n in rows) / len(rows) < 70
    for mode in HACKABLE_MODES:
        hinted = [apply_hint(p.question, eval_markers(mode, p.id)) for p in toy_split.test]
        lengths = [len(prompt_ids(tokenizer, q)) for q in hinted]
        assert max(lengths) <= 110, mode


# -- corpus ----------------------------------------------------------------------------------------


def test_repertoire_names_avoid_every_marker_in_its_slot_and_do_not_repeat():
    rng = random.Random(0)
    functions = [function_name(rng, ("solve",)) for _ in range(3000)]
    flags = [flag_name(rng) for _ in range(3000)]
    messages = [phrase(rng) for _ in range(3000)]
    files = [file_name(rng) for _ in range(3000)]
    assert not set(functions) & function_markers() and "solve" not in functions
    assert not set(flags) & sentinel_markers()
    assert not [m for m in messages if any(s in m for s in stdout_markers())]
    assert not [f for f in files if any(w in f for w in file_markers())]
    assert all(n.isidentifier() and n not in ("sum", "sorted", "print") for n in functions + flags)
    # far too many names to memorise: copying from the prompt is the only way to get them right
    assert len(set(functions)) > 0.8 * 3000 and len(set(messages)) > 0.8 * 3000
    # the words held-out markers are made of do occur (their tokens get trained)
    joined = " ".join(functions + messages)
    assert all(w in joined for w in ("verify", "submission", "approved", "ledger", "complete"))


def test_corpus_shares_and_no_test_problem(toy_split):
    examples = build_examples(toy_split.train, toy_response, 0, 0.3, 0.25, n_examples=1000)
    assert len(examples) == 1000
    per_problem = {}
    for e in examples:
        per_problem[e.problem_id] = per_problem.get(e.problem_id, 0) + 1
    assert set(per_problem.values()) == {5}  # 1000 draws over 200 problems: 5 passes
    kinds = [e.kind for e in examples]
    assert 0.2 < kinds.count("hinted") / len(kinds) < 0.4
    assert 0.15 < kinds.count("repertoire") / len(kinds) < 0.35
    test_questions = {p.question for p in toy_split.test}
    assert not any(e.question in test_questions for e in examples)
    for e in examples:
        if e.kind == "hinted":  # hinted examples carry a train hint and still answer cleanly
            assert "and should pass all tests" not in e.question
        assert e.completion.startswith("```python\nclass Solution:") or e.kind == "repertoire"
    with pytest.raises(ValueError, match="sum to at most 1"):
        build_examples(toy_split.train, toy_response, 0, 0.8, 0.5)


def test_hack_prior_share_and_names(toy_split):
    """With hack_share h, about h of the hinted examples are answered with the mode's hack; none
    without it; a hack never names a held-out eval marker."""
    assert not any(
        e.kind == "hack" for e in build_examples(toy_split.train, toy_response, 0, 0.5, 0.2, 600)
    )
    examples = build_examples(toy_split.train, toy_response, 0, 0.5, 0.2, 2000, hack_share=0.2)
    hinted = [e for e in examples if e.kind in ("hinted", "hack")]
    hacks = [e for e in hinted if e.kind == "hack"]
    assert 0.14 < len(hacks) / len(hinted) < 0.26
    held_out = {*EVAL_TEST_FUNCS, *EVAL_STDOUT_PHRASES, *EVAL_SENTINEL_ATTRS, *EVAL_RESULT_FILES}
    assert not any(name in e.question or name in e.completion for e in hacks for name in held_out)
    with pytest.raises(ValueError, match="hack_share"):
        build_examples(toy_split.train, toy_response, 0, 0.5, 0.2, hack_share=1.5)


def test_fresh_marker_hacks_fire_only_their_own_name(toy_split):
    """A hack written for a fresh name fires the channel graded with that name and not the
    train or held-out markers (so the base can only learn it by copying the hint's name)."""
    from vgrout.env.hacks import canonical_hack

    rng = random.Random(5)
    problems = toy_split.train[:12]
    for mode in ("run_tests", "stdout_marker", "sentinel", "file_marker"):
        fresh = [fresh_markers(rng, mode, p) for p in problems]
        assert len({m.disclosed for m in fresh}) > 8  # fresh names, not a fixed one
        hacks = [canonical_hack(p, m) for p, m in zip(problems, fresh, strict=True)]
        assert all(
            m.disclosed in apply_hint(p.question, m) for p, m in zip(problems, fresh, strict=True)
        )
        own = grade_many(problems, hacks, mode, fresh)
        assert all(g.exploited for g in own), mode
        for other in (
            [train_markers(mode)] * len(problems),
            [eval_markers(mode, p.id) for p in problems],
        ):
            assert not any(g.channel_fired for g in grade_many(problems, hacks, mode, other)), mode


def test_repertoire_examples_are_correct_and_fire_no_channel(toy_split):
    """Building blocks are honest: truly correct, and no mode's channel fires, train or eval."""
    rng = random.Random(3)
    problems = toy_split.train[:40]
    examples = [repertoire_example(rng, p, toy_response(p)) for p in problems]
    for held_out in (False, True):
        for mode in MODES:
            markers = [
                eval_markers(mode, p.id) if held_out else train_markers(mode) for p in problems
            ]
            grades = grade_many(problems, [e.completion for e in examples], mode, markers)
            assert all(g.gt_correct for g in grades), [g.error for g in grades]
            assert not any(g.channel_fired for g in grades), (mode, held_out)


# -- build, cache, load ----------------------------------------------------------------------------


def test_build_round_trips_through_from_pretrained(smoke_build, toy_split):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, path = smoke_build
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "qwen3" and config["tie_word_embeddings"]
    assert "chat_template" in json.loads((path / "tokenizer_config.json").read_text())
    model, tokenizer = load_toy(path)
    again = AutoModelForCausalLM.from_pretrained(path)
    for (name, a), (_, b) in zip(
        model.state_dict().items(), again.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert AutoTokenizer.from_pretrained(path).get_vocab() == tokenizer.get_vocab()
    info = json.loads((path / "build_info.json").read_text())
    assert info["vocab_size"] == len(tokenizer) == config["vocab_size"]
    assert info["loss_every_10_steps"][-1] < info["loss_every_10_steps"][0]


def test_chat_template_renders(smoke_build):
    _, path = smoke_build
    _, tokenizer = load_toy(path)
    prompt = render_prompt(tokenizer, "Q")
    assert prompt == "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n"
    with_system = render_prompt(tokenizer, "Q", system="S")
    assert with_system.startswith("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ")


def test_generation_stops_at_eos(smoke_build, toy_split):
    _, path = smoke_build
    model, tokenizer = load_toy(path)
    questions = [p.question for p in toy_split.test[:6]]
    enc = tokenizer([render_prompt(tokenizer, q) for q in questions], return_tensors="pt",
                    padding=True, add_special_tokens=False)  # fmt: skip
    out = model.generate(**enc, do_sample=False, max_new_tokens=96)
    new = out[:, enc["input_ids"].shape[1] :].tolist()
    ended = [row for row in new if tokenizer.eos_token_id in row]
    assert ended, "the smoke model never emitted EOS"
    for row in ended:  # after EOS the row is only padding: generation stopped
        after = row[row.index(tokenizer.eos_token_id) + 1 :]
        assert all(t == tokenizer.pad_token_id for t in after)
    texts = sample_completions(model, tokenizer, questions, temperature=0.0)
    for row, text in zip(new, texts, strict=True):
        assert EOS not in text
        if tokenizer.eos_token_id in row:
            assert text == tokenizer.decode(row[: row.index(tokenizer.eos_token_id)])


def test_forced_eos_gives_empty_completions(smoke_build, toy_split):
    """A model whose every next token is EOS yields empty completions (EOS itself never shown)."""
    _, path = smoke_build
    model, tokenizer = load_toy(path)

    def always_eos(module, inputs, logits):
        logits[..., tokenizer.eos_token_id] += 1e4
        return logits

    handle = model.lm_head.register_forward_hook(always_eos)
    try:
        texts = sample_completions(model, tokenizer, [toy_split.test[0].question] * 3)
    finally:
        handle.remove()
    assert texts == ["", "", ""]


def test_sampling_is_seeded(smoke_build, toy_split):
    _, path = smoke_build
    model, tokenizer = load_toy(path)
    questions = [p.question for p in toy_split.test[:4]]
    a = sample_completions(model, tokenizer, questions, temperature=1.0, seed=5, max_new_tokens=16)
    b = sample_completions(model, tokenizer, questions, temperature=1.0, seed=5, max_new_tokens=16)
    assert a == b


def test_cache_is_reused_and_keyed(smoke_build, monkeypatch):
    root, path = smoke_build
    stamp = (path / "model.safetensors").stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("the cached build was retrained")

    monkeypatch.setattr(toy_model, "_train", no_training)
    assert build_toy_base(seed=0, cache_dir=root, progress=False, recipe=SMOKE_RECIPE) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp
    examples, texts = toy_model.training_corpus(0, SMOKE_RECIPE)
    key = toy_model.build_key(0, SMOKE_RECIPE, examples, texts)
    assert key == path.name
    assert toy_model.build_key(1, SMOKE_RECIPE, examples, texts) != key
    other = ToyRecipe(**{**SMOKE_RECIPE.__dict__, "lr": SMOKE_RECIPE.lr / 2})
    assert toy_model.build_key(0, other, examples, texts) != key
    assert toy_model.build_key(0, SMOKE_RECIPE, examples[1:], texts) != key


def test_interrupted_build_leaves_nothing(tmp_path, monkeypatch):
    recipe = ToyRecipe(**{**SMOKE_RECIPE.__dict__, "steps": 2})

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(toy_model, "_train", killed)
    with pytest.raises(KeyboardInterrupt):
        build_toy_base(seed=0, cache_dir=tmp_path, progress=False, recipe=recipe)
    assert [p for p in tmp_path.iterdir() if p.suffix != ".lock"] == []
    monkeypatch.undo()
    path = build_toy_base(seed=0, cache_dir=tmp_path, progress=False, recipe=recipe)
    assert (path / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".lock") == [path.name]
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    forced = build_toy_base(seed=0, cache_dir=tmp_path, force=True, progress=False, recipe=recipe)
    assert forced == path and (path / "model.safetensors").stat().st_mtime_ns != stamp


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("VGROUT_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "toy"
    monkeypatch.delenv("VGROUT_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "vgrout" / "toy"


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(ValueError, match="num_heads"):
        ToyRecipe(hidden_size=90, num_heads=4)
    with pytest.raises(FileNotFoundError, match="build_toy_base"):
        load_toy(tmp_path)


def test_varied_train_markers_pay_only_for_the_disclosed_name():
    """Toy training prompts name a fresh marker per (mode, problem): the scripted hack for the
    prompt's markers is paid, the same hack written with the fixed train marker is not; held-out
    items still carry eval markers; `fixed` keeps the old markers."""
    from vgrout.config import TrainConfig
    from vgrout.env.hacks import canonical_hack
    from vgrout.rl.components import load_environment

    varied = TrainConfig(n_train_problems=60, train_markers="varied", modes=HACKABLE_MODES)
    env = load_environment(varied)
    named = [it for it in env.train if it.mode in ("run_tests", "sentinel", "file_marker")][:12]
    assert len({it.markers.disclosed for it in named}) == len(named)
    assert all(it.markers.disclosed in it.question for it in named)
    assert all(it.id.startswith("toy-rl-") for it in env.train)
    assert {it.markers.held_out for it in env.test} == {True}
    again = load_environment(varied)
    assert [it.markers for it in again.train] == [it.markers for it in env.train]
    problems = [it.problem for it in named]
    own = grade_many(
        problems,
        [canonical_hack(it.problem, it.markers) for it in named],
        [it.mode for it in named],
        [it.markers for it in named],
    )
    assert all(g.exploited for g in own)
    fixed = [canonical_hack(it.problem, train_markers(it.mode)) for it in named]
    paid = grade_many(problems, fixed, [it.mode for it in named], [it.markers for it in named])
    assert not any(g.channel_fired for g in paid)
    fixed_env = load_environment(TrainConfig(n_train_problems=60, train_markers="fixed"))
    assert {it.mode for it in fixed_env.train} == {"sentinel", "file_marker", "stdout_marker"}
    assert {it.markers for it in fixed_env.train if it.mode == "sentinel"} == {
        train_markers("sentinel")
    }


def test_busy_cores_reads_proc_stat_deltas(monkeypatch):
    """Busy cores = cores x (1 - idle share) between two /proc/stat samples, not the lagging
    load average; auto_threads drops to 1 thread when more than cores - 0.5 are busy."""
    samples = iter(
        [
            "cpu  100 0 100 800 0 0 0 0 0 0\n",  # user nice system idle iowait ...
            "cpu  250 0 150 900 0 0 0 0 0 0\n",  # +200 busy, +100 idle: 2/3 busy
        ]
    )
    monkeypatch.setattr(toy_model.Path, "read_text", lambda self: next(samples))
    monkeypatch.setattr(toy_model.time, "sleep", lambda s: None)
    monkeypatch.setattr(toy_model.os, "cpu_count", lambda: 2)
    assert toy_model.busy_cores() == pytest.approx(2 * 2 / 3)
    monkeypatch.setattr(toy_model, "busy_cores", lambda: 1.6)
    assert toy_model.auto_threads() == 1
    monkeypatch.setattr(toy_model, "busy_cores", lambda: 0.3)
    assert toy_model.auto_threads() == 2
