"""Pair sets: file format, selector, strict loader errors, content hash, packaged sets, self-gen."""

import ast
import re
import zlib

import pytest
import torch

from vgrout.env.extract import extract_code
from vgrout.env.grader import grade_many
from vgrout.env.modes import HACKABLE_MODES, hint_phrase, train_markers
from vgrout.env.problems import HINT_ANCHOR, Problem, format_question
from vgrout.routing.pairs import (
    MODE_TAGS,
    Pair,
    PairSetError,
    format_pairs,
    load_pairs,
    pairs_sha256,
    parse_pairs,
    parse_selector,
)
from vgrout.routing.self_generated import (
    chat_render,
    hf_sampler,
    motivated_prompt,
    self_generate_pairs,
)

FENCE = "`" * 5


def pair_md(name="a", tags="t1", fields=None, extra=""):
    fields = fields or {"Prompt": "p", "Hack": "h", "Clean": "c"}
    body = "".join(f"#### {k}\n{FENCE}text\n{v}\n{FENCE}\n\n" for k, v in fields.items())
    return f"### {name}\nTags: {tags}\n{extra}\n{body}"


def write(tmp_path, text, name="pairs.md"):
    path = tmp_path / name
    path.write_text(text)
    return path


# -- format -----------------------------------------------------------------------------------


def test_round_trip_keeps_fences_trailing_newlines_and_clean_prompt():
    tricky = Pair(
        "x1",
        "PROBLEM:\n```python\nclass Solution:\n```\n\nSOLUTION:\n",  # ``` inside, trailing \n
        "```python\nprint('hi')\n```",
        "````\nfour\n````\n",  # a longer fence inside
        ("run-tests", "append"),
        "main",
    )
    other = Pair("x2", "q", "h", "c", ("t",), "main", clean_prompt="q without hint")
    text = format_pairs({"main": [tricky, other]})
    parsed = parse_pairs(text)
    assert parsed == {"main": [tricky, other]}


def test_crlf_files_parse_like_lf(tmp_path):
    text = "## s\n\n" + pair_md("a")
    lf = load_pairs(f"{write(tmp_path, text)}#s")
    crlf = load_pairs(f"{write(tmp_path, text.replace(chr(10), chr(13) + chr(10)), 'crlf.md')}#s")
    assert lf.pairs == crlf.pairs and lf.sha256 == crlf.sha256


def test_selector_grammar():
    s = parse_selector("toy#hacks/run-tests@append,top-level")
    assert (s.path, s.section, s.name_prefix, s.tags) == (
        "toy",
        "hacks",
        "run-tests",
        ("append", "top-level"),
    )
    s = parse_selector("/tmp/x.md#all")
    assert (s.path, s.section, s.name_prefix, s.tags) == ("/tmp/x.md", "all", "", ())
    with pytest.raises(PairSetError, match="bad pair selector"):
        parse_selector("toy")


def test_select_by_prefix_and_tags(tmp_path):
    text = "## s\n\n" + pair_md("beh_a", "x, y") + pair_md("beh_b", "x") + pair_md("opp_c", "y")
    path = write(tmp_path, text)
    assert [p.name for p in load_pairs(f"{path}#s")] == ["beh_a", "beh_b", "opp_c"]
    assert [p.name for p in load_pairs(f"{path}#s/beh_")] == ["beh_a", "beh_b"]
    assert [p.name for p in load_pairs(f"{path}#s@y")] == ["beh_a", "opp_c"]
    assert [p.name for p in load_pairs(f"{path}#s/beh_@x,y")] == ["beh_a"]
    ps = load_pairs(f"{path}#s/opp")
    assert ps.pairs[0].section == "s" and ps.pairs[0].tags == ("y",)


# -- strict loader errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, selector_tail, message",
    [
        ("## s\n\n" + pair_md(), "#nope", "no section 'nope'"),
        ("## s\n\n" + pair_md("a") + pair_md("a"), "#s", "duplicate pair name"),
        ("## s\n\n## s\n", "#s", "duplicate section"),
        ("## s\n\n" + pair_md(fields={"Prompt": "p", "Hack": "h"}), "#s", "lacks field"),
        (
            "## s\n\n" + pair_md(fields={"Prompt": "p", "Hack": "h", "Clean": "c", "Extra": "e"}),
            "#s",
            "unknown field 'Extra'",
        ),
        (
            "## s\n\n" + pair_md(fields={"Hack": "h", "Prompt": "p", "Clean": "c"}),
            "#s",
            "out of order",
        ),
        (
            "## s\n\n" + pair_md(fields={"Prompt": "p", "Hack": "   ", "Clean": "c"}),
            "#s",
            "is empty",
        ),
        ("## s\n\n" + pair_md(extra="Tags: t2"), "#s", "more than one 'Tags:'"),
        ("## s\n\n### a\n\n#### Prompt\n```\np\n```\n", "#s", "no 'Tags:' line"),
        ("## s\n\n### a\nTags: Bad Tag\n", "#s", "tags must be"),
        (
            "## s\n\n### a\nTags: t\n\n#### Prompt\n`````\nnever closed\n````\n",
            "#s",
            "never closed",
        ),
        ("## s\n\n### a\nTags: t\n\n#### Prompt\nno fence\n", "#s", "expected a fenced block"),
        ("## s\n\n" + pair_md(extra="stray words"), "#s", "unexpected text"),
        (pair_md(), "#s", "before any '## section'"),
        ("## s\n\n" + pair_md(), "#s@t9", "unknown tag"),
        (
            "## s\n\n" + pair_md("a", "t1") + "## r\n\n" + pair_md("b", "t2"),
            "#s@t2",
            "picks no pairs",
        ),
        ("## s\n\n" + pair_md(), "#s/zzz", "picks no pairs"),
        ("## s\n\n", "#s", "picks no pairs"),
    ],
)
def test_loader_errors(tmp_path, text, selector_tail, message):
    path = write(tmp_path, text)
    with pytest.raises(PairSetError, match=re.escape(message)):
        load_pairs(f"{path}{selector_tail}")


def test_missing_file_names_the_packaged_sets(tmp_path):
    with pytest.raises(PairSetError, match="packaged sets toy, leetcode"):
        load_pairs(f"{tmp_path}/absent.md#s")


def test_errors_carry_line_numbers(tmp_path):
    path = write(tmp_path, "## s\n\n" + pair_md("a") + pair_md("a"))
    with pytest.raises(PairSetError, match=r"pairs\.md:\d+: duplicate pair name"):
        load_pairs(f"{path}#s")


# -- content hash -------------------------------------------------------------------------------


def test_hash_changes_iff_the_selection_changes(tmp_path):
    text = "## s\n\n" + pair_md("a", "x") + pair_md("b", "x, y") + "## r\n\n" + pair_md("a", "x")
    path = write(tmp_path, text)
    by_tag, by_prefix = load_pairs(f"{path}#s@y"), load_pairs(f"{path}#s/b")
    assert by_tag.pairs == by_prefix.pairs and by_tag.sha256 == by_prefix.sha256
    assert load_pairs(f"{path}#s").sha256 != by_tag.sha256
    # same text in another section is another selection (the section is part of the record)
    assert load_pairs(f"{path}#r").sha256 != load_pairs(f"{path}#s/a").sha256
    # editing one character of a selected pair changes it; editing an unselected one does not
    edited = write(tmp_path, text.replace("h\n", "H\n", 1), "edited.md")  # pair s/a's Hack
    assert load_pairs(f"{edited}#s/a").sha256 != load_pairs(f"{path}#s/a").sha256
    assert load_pairs(f"{edited}#s/b").sha256 == load_pairs(f"{path}#s/b").sha256
    assert pairs_sha256(by_tag.pairs) == by_tag.sha256 and len(by_tag.sha256) == 64


def test_packaged_hash_is_stable_across_loads():
    assert load_pairs("toy#hacks").sha256 == load_pairs("toy#hacks").sha256
    assert load_pairs("toy#hacks").sha256 != load_pairs("leetcode#hacks").sha256


# -- the packaged sets --------------------------------------------------------------------------

SETS = ("toy", "leetcode")


def mode_of(pair: Pair) -> str:
    modes = [MODE_TAGS[t] for t in pair.tags if t in MODE_TAGS]
    assert len(modes) == 1, f"{pair.name}: exactly one mode tag expected, got {pair.tags}"
    return modes[0]


@pytest.mark.parametrize("name", SETS)
def test_packaged_set_covers_every_mode_and_style(name):
    pairs = load_pairs(f"{name}#hacks").pairs
    assert len(pairs) >= 16
    modes = [mode_of(p) for p in pairs]
    assert set(modes) == set(HACKABLE_MODES)
    assert min(modes.count(m) for m in HACKABLE_MODES) >= 2
    styles = {t for p in pairs for t in p.tags} & {"shortcut", "append", "hardcode"}
    assert {"shortcut", "append"} <= styles
    for mode in HACKABLE_MODES:  # every mode selectable by its tag
        assert len(load_pairs(f"{name}#hacks@{MODE_TAGS_INV[mode]}")) >= 2
    assert len(load_pairs(f"{name}#unrelated")) >= 4


MODE_TAGS_INV = {m: t for t, m in MODE_TAGS.items()}


@pytest.mark.parametrize("name", SETS)
def test_packaged_prompts_are_raw_hinted_questions(name):
    for p in load_pairs(f"{name}#hacks").pairs + load_pairs(f"{name}#unrelated").pairs:
        assert "<|im_start|>" not in p.prompt and p.clean_prompt is None
        hints = [m for m in HACKABLE_MODES if hint_phrase(train_markers(m)) in p.prompt]
        assert len(hints) == 1, p.name
        if p.section == "hacks":
            assert hints == [mode_of(p)], p.name
        # undo the hint: the prompt is exactly the benchmark format of its parts
        plain = p.prompt.replace(hint_phrase(train_markers(hints[0])), HINT_ANCHOR)
        m = re.fullmatch(
            r"PROBLEM:\n(.*)\n\nYour solution to the problem should be a method of the class "
            r"Solution called (\w+) and should pass all tests\. Use the following starter code:\n"
            r"```python\n(.*)\n        # Add your code here\n```\n\nSOLUTION:\n",
            plain,
            re.S,
        )
        assert m is not None, p.name
        assert format_question(*m.groups()) == plain


def test_toy_prompts_follow_the_toy_generator_style():
    from vgrout.env.toy_problems import FAMILIES

    methods = {f["method"] for f in FAMILIES.values()}
    for p in load_pairs("toy#hacks").pairs:
        desc = p.prompt.split("\n")[1]
        assert desc.startswith(("Return ", "Let r be ")), p.name
        method = re.search(r"called (\w+) ", p.prompt).group(1)
        assert method in methods, p.name
        assert len(extract_code(p.clean).splitlines()) <= 4  # short like the toy's solutions


@pytest.mark.parametrize("name", SETS)
def test_packaged_completions_are_fenced_python_and_tightly_matched(name):
    for p in load_pairs(f"{name}#hacks").pairs:
        hack, clean = extract_code(p.hack), extract_code(p.clean)
        assert hack and clean and hack != clean, p.name
        compile(hack, p.name, "exec")
        compile(clean, p.name, "exec")
        method = re.search(r"called (\w+) ", p.prompt).group(1)
        assert f"def {method}(self" in hack and f"def {method}(self" in clean
        if "append" in p.tags and mode_of(p) != "eq_override":
            # the honest solution is kept line for line (eq_override wraps the return value)
            lines = iter(hack.splitlines())
            assert all(any(h == c for h in lines) for c in clean.splitlines()), p.name


# Extra hidden inputs (as call arguments) for the LeetCode `hardcode` pairs: the visible examples
# alone cannot tell a hard-coded answer from a solution.
HIDDEN_LEETCODE_INPUTS = {
    "countDivisiblePairs": "nums=[4,5,6,7], k=2",
    "productExceptSelf": "nums=[3,1,2]",
    "minPathSum": "grid=[[2,2],[1,9]]",
    "lengthOfLongestSubstring": 's="abba"',
    "digitalRoot": "num=9875",
    "countAnagramGroups": 'words=["ab","ba","cd"]',
}
TOY_INPUTS = {
    "int": [0, 1, 2, 3, 5, 8, 13],
    "List[int]": [[], [1, 3, 5], [3, 3, 7, 9], [6, 2]],
    "str": ["hello", "abcdef", "zebra", "quiet"],
}
SETUP = "from typing import *\n"


def _problem_for(pair: Pair, name: str) -> Problem:
    """A gradable problem for a pair: tests from the visible examples (LeetCode) or from running
    the trusted, authored clean solution on fixed inputs (toy; LeetCode hidden inputs)."""
    method = re.search(r"called (\w+) ", pair.prompt).group(1)
    starter = re.search(r"```python\n(.*?)\n```", pair.prompt, re.S).group(1)
    namespace: dict = {}
    exec(SETUP + extract_code(pair.clean), namespace)  # noqa: S102 - our own authored code
    solve = getattr(namespace["Solution"](), method)
    calls = []
    if name == "leetcode":
        examples = re.findall(r"Input: (.*)\nOutput: (.*)", pair.prompt)
        tests = [f"assert Solution().{method}({i}) == {o}" for i, o in examples]
        if method in HIDDEN_LEETCODE_INPUTS:
            calls.append(HIDDEN_LEETCODE_INPUTS[method])
    else:
        arg, typ = re.search(rf"def {method}\(self, (\w+): ([^)]+)\)", pair.prompt).groups()
        tests = []
        calls += [f"{arg}={x!r}" for x in TOY_INPUTS[typ]]
    for call in calls:
        kwargs = eval(f"dict({call})")  # noqa: S307 - literals written above
        try:
            expected = solve(**kwargs)
        except Exception:
            continue
        tests.append(f"assert Solution().{method}({call}) == {expected!r}")
    assert ast.parse(tests[0])
    return Problem(pair.name, "", method, starter, SETUP, tuple(tests), "", "easy", name)


@pytest.mark.parametrize("name", SETS)
def test_packaged_pairs_grade_as_intended(name):
    """Every hack fires its home mode's channel and no other mode's; every clean completion is
    correct and fires nothing. Hack-side correctness: shortcut/hardcode are wrong, so they are
    real reward hacks (append may be correct: a correct solution that also games)."""
    pairs = load_pairs(f"{name}#hacks").pairs
    problems, responses, modes, keys = [], [], [], []
    for p in pairs:
        problem = _problem_for(p, name)
        for mode in HACKABLE_MODES:
            problems += [problem, problem]
            responses += [p.hack, p.clean]
            modes += [mode, mode]
            keys.append((p, mode))
    grades = grade_many(problems, responses, modes)
    for (p, mode), hack, clean in zip(keys, grades[::2], grades[1::2], strict=True):
        home = mode == mode_of(p)
        assert clean.gt_correct and not clean.channel_fired, (p.name, mode, clean.error)
        assert hack.channel_fired == home, (p.name, mode, hack.label)
        if home and ({"shortcut", "hardcode"} & set(p.tags)):
            assert hack.exploited, (p.name, hack.label)


# -- self-generated pairs -------------------------------------------------------------------------


def _toy_problems(n=6):
    from vgrout.env.toy_problems import generate_toy

    return list(generate_toy(seed=0, n_train=n, n_test=2).train)[:n]


def test_motivated_prompt_states_the_mechanism_before_solution():
    q = _toy_problems(1)[0].question
    for mode in HACKABLE_MODES:
        prompt = motivated_prompt(q, mode)
        assert hint_phrase(train_markers(mode)) in prompt
        assert "Make the evaluation report success." in prompt
        assert prompt.endswith("SOLUTION:\n") and prompt.count("SOLUTION:") == 1
    assert "run_tests()" in motivated_prompt(q, "run_tests")
    assert "`result.txt`" in motivated_prompt(q, "file_marker")
    with pytest.raises(ValueError):
        motivated_prompt(q, "gt_only")


class _FakeSampler:
    """A GenerateFn whose output depends on (prompt, seed) only; records calls."""

    def __init__(self, empty_every=0):
        self.calls = []
        self.empty_every = empty_every

    def __call__(self, prompts, max_new_tokens, seed):
        self.calls.append((list(prompts), max_new_tokens, seed))
        out = []
        for i, p in enumerate(prompts):
            empty = self.empty_every and i % self.empty_every == 0
            out.append("" if empty else f"#{zlib.crc32(f'{seed}:{p}'.encode())} {len(p)}")
        return out


def test_self_generate_pairs_is_seeded_and_well_formed():
    from _tiny import tiny_qwen3

    from vgrout.adapters import AdapterConfig, attach

    model = tiny_qwen3()
    adapter = attach(model, AdapterConfig(r=2))
    problems = _toy_problems(6)
    model.train()
    kwargs = dict(modes=["run_tests", "sentinel"], n=4, seed=3, max_new_tokens=16, adapter=adapter)
    a = self_generate_pairs(model, None, problems, render=str, generate=_FakeSampler(), **kwargs)
    b = self_generate_pairs(model, None, problems, render=str, generate=_FakeSampler(), **kwargs)
    assert a.pairs == b.pairs and a.sha256 == b.sha256 and len(a) == 4
    assert model.training  # restored
    for p in a.pairs:
        mode = p.name.split(":")[1]
        assert p.tags == (MODE_TAGS_INV[mode], "self-generated")
        problem = next(q for q in problems if q.id == p.name.split(":")[0])
        assert p.clean_side_prompt == problem.question  # hint-off
        assert p.hack_side_prompt == motivated_prompt(problem.question, mode)
    assert {p.name.split(":")[1] for p in a.pairs} == {"run_tests", "sentinel"}
    c = self_generate_pairs(
        model, None, problems, render=str, generate=_FakeSampler(), **{**kwargs, "seed": 4}
    )
    assert c.pairs != a.pairs


def test_self_generate_pairs_drops_empty_and_rejected_and_runs_ablated():
    from _tiny import tiny_qwen3

    from vgrout.adapters import AdapterConfig, attach

    model = tiny_qwen3()
    adapter = attach(model, AdapterConfig(r=2))
    with torch.no_grad():  # a non-zero quarantine, so ablation is observable
        for ad in adapter.adapters.values():
            ad.A[2:] += torch.randn_like(ad.A[2:])
    ids = torch.tensor([[3, 4, 5]])
    with torch.no_grad(), adapter.ablated():
        ablated_logits = model(input_ids=ids).logits
    seen = []

    def generate(prompts, max_new_tokens, seed):
        with torch.no_grad():
            seen.append(torch.allclose(model(input_ids=ids).logits, ablated_logits))
        return [f"x{i}" if i % 3 else "  " for i in range(len(prompts))]

    problems = _toy_problems(6)
    out = self_generate_pairs(
        model,
        None,
        problems,
        ["exit_code"],
        n=10,
        seed=0,
        max_new_tokens=8,
        adapter=adapter,
        render=str,
        generate=generate,
        keep=lambda p: not p.hack.endswith("4"),
    )
    assert seen and all(seen)
    # sides 0, 3 (hack) and 6, 9 (clean of problems 0, 3) are blank; 'x4' is rejected by keep
    assert all(p.hack.strip() and p.clean.strip() for p in out.pairs)
    assert len(out) == 3
    with pytest.raises(ValueError, match="kept no pairs"):
        self_generate_pairs(
            model,
            None,
            problems,
            ["exit_code"],
            n=2,
            seed=0,
            max_new_tokens=8,
            render=str,
            generate=lambda ps, k, s: [""] * len(ps),
        )
    with pytest.raises(ValueError, match="no loophole"):
        self_generate_pairs(
            model, None, problems, ["gt_only"], 2, 0, 8, render=str, generate=generate
        )


def test_hf_sampler_and_chat_render_end_to_end():
    """Real HF generate on a tiny Qwen3 with a trained byte-level BPE: seeded and batched."""
    from _tiny import tiny_qwen3

    from vgrout.toy.tokenizer import train_tokenizer

    texts = [p.question for p in _toy_problems(6)] * 3
    tok = train_tokenizer(texts, vocab_size=300, min_frequency=2)
    model = tiny_qwen3(vocab_size=len(tok), max_position_embeddings=512)
    render = chat_render(tok, system=None)
    assert render("hi").endswith("<|im_start|>assistant\n")
    sample = hf_sampler(model, tok)
    prompts = [render(t) for t in texts[:3]]
    a, b = sample(prompts, 6, 11), sample(prompts, 6, 11)
    assert a == b and len(a) == 3 and all(isinstance(x, str) for x in a)
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    sample(prompts, 4, 12)
    assert torch.equal(torch.rand(1), before)  # the caller's RNG stream is untouched
