"""The toy problem generator: determinism, held-out novelty, correct solutions, mix, prompt format."""

from __future__ import annotations

import ast
import dataclasses
import re
from collections import Counter

import pytest

from vgrout.env.modes import HACKABLE_MODES, apply_hint, train_markers
from vgrout.env.problems import HINT_ANCHOR, format_question
from vgrout.env.toy_problems import (
    ARG_NAMES,
    DEFAULT_MIX,
    FAMILIES,
    OPS,
    OPS_BY_NAME,
    compose_pairs,
    generate_toy,
    toy_holdout,
    toy_response,
)


@pytest.fixture(scope="module")
def split():
    return generate_toy(seed=0)


def _run(problem, code: str) -> list[bool]:
    """Which asserts hold for `code`, run in-process (toy code is our own, trusted)."""
    namespace: dict = {}
    exec(problem.setup_code + "\n" + code, namespace)
    results = []
    for test in problem.tests:
        try:
            exec(test, namespace)
            results.append(True)
        except AssertionError:
            results.append(False)
    return results


def _code(response: str) -> str:
    match = re.fullmatch(r"```python\n(.*)\n```", response, re.DOTALL)
    assert match, response
    return match.group(1)


def test_same_seed_same_problems_other_seed_other_problems(split):
    again = generate_toy(seed=0)
    assert again == split
    assert [p.meta for p in again.train] == [p.meta for p in split.train]
    other = generate_toy(seed=1)
    assert {p.question for p in other.train} != {p.question for p in split.train}


def test_train_split_does_not_depend_on_the_test_size(split):
    # the toy model's corpus is built with n_test=0 and must see the same training problems
    assert generate_toy(seed=0, n_test=0).train == split.train
    assert generate_toy(seed=0, n_test=0).test == []


def test_sizes_and_ids(split):
    assert len(split.train) == 400 and len(split.test) == 120
    ids = [p.id for p in split.train + split.test]
    assert len(set(ids)) == len(ids)
    assert all(p.id.startswith("toy-train-") for p in split.train)
    assert all(p.id.startswith("toy-test-") for p in split.test)


def test_train_and_test_are_disjoint(split):
    train_q = {p.question for p in split.train}
    assert not any(p.question in train_q for p in split.test)
    train_solutions = {p.canonical_solution for p in split.train}
    assert not any(p.canonical_solution in train_solutions for p in split.test)


def _used_values(problem) -> list[tuple[str, str, object]]:
    """(op, parameter, value) for every value a problem uses, read from its meta."""
    ops = problem.meta["ops"]
    used = [(ops[0], "arg", problem.meta["arg"])]
    for op, params in zip(ops, problem.meta["params"], strict=True):
        used += [(op, name, value) for name, value in params.items()]
    return used


def test_held_out_values_and_pairs_never_appear_in_train(split):
    holdout = toy_holdout(0)
    for p in split.train:
        for op, param, value in _used_values(p):
            assert value not in holdout.values[(op, param)], (p.id, op, param, value)
        if p.meta["family"] == "compose":
            assert tuple(p.meta["ops"]) not in holdout.pairs
    # and the values really are in the prompt/solution: "Return x times 3 plus 1." etc.
    for p in split.train + split.test:
        assert f"def {p.func_name}(self, {p.meta['arg']}):" in p.canonical_solution


def test_every_test_problem_is_novel(split):
    holdout = toy_holdout(0)
    for p in split.test:
        if p.meta["family"] == "compose":
            assert tuple(p.meta["ops"]) in holdout.pairs, p.id
        else:
            held = [v for op, param, v in _used_values(p) if v in holdout.values[(op, param)]]
            assert held, f"{p.id} uses no held-out value"
        assert p.meta["novel"]


def test_holdout_is_about_a_fifth_of_each_domain_and_seeded():
    a, b = toy_holdout(0), toy_holdout(1)
    assert a == toy_holdout(0) and a != b
    assert set(a.values) == {(op.name, param) for op in OPS for param in ("arg", *dict(op.params))}
    for (name, param), held in a.values.items():
        op = OPS_BY_NAME[name]
        domain = ARG_NAMES[op.in_type] if param == "arg" else dict(op.params)[param]
        assert set(held) < set(domain)
        assert len(held) == max(1, round(0.2 * len(domain)))
    assert len(a.pairs) == round(0.2 * len(compose_pairs()))


def test_every_canonical_solution_passes_its_tests(split):
    for p in split.train + split.test:
        results = _run(p, _code(toy_response(p)))
        assert all(results), (p.id, p.canonical_solution, p.tests)


def test_a_constant_answer_fails_every_problem(split):
    for p in split.train + split.test:
        for constant in ("0", "None", "''", "[]", "True", "False"):
            code = (
                f"class Solution:\n    def {p.func_name}(self, **kw):\n        return {constant}\n"
            )
            assert not all(_run(p, code)), (p.id, constant)


def test_tests_are_benchmark_style_one_line_asserts(split):
    for p in split.train + split.test:
        assert 4 <= len(p.tests) <= 8, p.id
        assert len(set(p.tests)) == len(p.tests)
        for t in p.tests:
            node = ast.parse(t).body[0]
            assert isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare)
            call = node.test.left
            assert ast.unparse(call.func) == f"Solution().{p.func_name}"
            assert [k.arg for k in call.keywords] == [p.meta["arg"]] and not call.args


def test_prompt_format_matches_leetcode(split):
    for p in split.train + split.test:
        assert p.question.count(HINT_ANCHOR) == 1
        description = p.question.split("\n")[1]
        assert description.endswith(".") and description.count(".") == 1
        assert p.question == format_question(description, p.func_name, p.starter_code)
        assert p.starter_code.startswith(
            f"class Solution:\n    def {p.func_name}(self, {p.meta['arg']}: "
        )
        for mode in HACKABLE_MODES:  # every mode's hint applies
            assert HINT_ANCHOR not in apply_hint(p.question, train_markers(mode))
        assert p.source == "toy"
        assert p.difficulty == FAMILIES[p.meta["family"]]["tier"]
        assert p.func_name == FAMILIES[p.meta["family"]]["method"]


def test_family_mix_and_op_balance(split):
    for problems, n in ((split.train, 400), (split.test, 120)):
        counts = Counter(p.meta["family"] for p in problems)
        for family, weight in DEFAULT_MIX.items():
            assert abs(counts[family] - n * weight) <= 1, (family, counts)
        for family in FAMILIES:
            if family == "compose":
                continue
            ops = Counter(p.meta["ops"][0] for p in problems if p.meta["family"] == family)
            assert set(ops) == {op.name for op in OPS if op.family == family}
            if family in ("numeric", "list", "copy"):  # large spaces: exactly balanced
                assert max(ops.values()) - min(ops.values()) <= 1, ops
        # reverse/upper (only the argument name varies) run out first and leave the rotation
        # instead of repeating a prompt
        assert len({p.question for p in problems}) == len(problems)
    test_pairs = {tuple(p.meta["ops"]) for p in split.test if p.meta["family"] == "compose"}
    assert test_pairs == set(toy_holdout(0).pairs)  # 24 test compositions cover all held-out pairs


def test_a_used_up_space_repeats_prompts_but_stays_novel():
    # 60 distinct held-out string problems exist for seed 0; ask for 300
    big = generate_toy(seed=0, n_train=0, n_test=300, mix={"string": 1.0})
    assert len(big.test) == 300 and len({p.question for p in big.test}) < 300
    holdout = toy_holdout(0)
    for p in big.test:
        assert any(v in holdout.values[(op, param)] for op, param, v in _used_values(p)), p.id


def test_custom_mix_and_bad_mix():
    only_numeric = generate_toy(seed=3, n_train=30, n_test=10, mix={"numeric": 1.0})
    assert {p.meta["family"] for p in only_numeric.train + only_numeric.test} == {"numeric"}
    with pytest.raises(ValueError, match="unknown toy families"):
        generate_toy(mix={"numbers": 1.0})
    with pytest.raises(ValueError, match="positive sum"):
        generate_toy(mix={"numeric": 0.0})
    with pytest.raises(ValueError, match=">= 0"):
        generate_toy(n_train=-1)


def test_responses_are_short(split):
    # ~20-40 BPE tokens: the longest are two-line compositions such as
    # "r = [x for x in values if x > 6]" + "return max(r, default=0)" (134 characters)
    lengths = [len(toy_response(p)) for p in split.train]
    assert max(lengths) <= 140 and sum(lengths) / len(lengths) <= 100, max(lengths)
    for p in split.train:
        lines = toy_response(p).splitlines()
        assert lines[0] == "```python" and lines[-1] == "```" and len(lines) <= 6


def test_rl_split_is_novel_and_never_asks_a_test_prompt():
    split = generate_toy(seed=0, n_train=50, n_test=120, n_rl=300)
    assert generate_toy(seed=0, n_train=50, n_test=120) == dataclasses.replace(split, rl=[])
    questions = [p.question for p in split.rl]
    assert 200 < len(questions) <= 300 and len(set(questions)) == len(questions)
    assert not set(questions) & {p.question for p in split.test}
    assert all(p.meta["novel"] for p in split.rl)  # every RL problem uses a held-out value/pair
    assert [p.id for p in split.rl] == [f"toy-rl-{i:04d}" for i in range(len(split.rl))]
    with pytest.raises(ValueError, match="n_rl"):
        generate_toy(n_rl=-1)
