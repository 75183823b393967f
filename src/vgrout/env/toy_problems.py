"""The toy environment's problems: short generated Python function tasks in the LeetCode prompt format.

A CPU-scale twin of the LeetCode problems: same user-message structure (`format_question`, the hint
anchor exactly once, a `class Solution` starter), same one-line assert tests, graded by the same
grader, but with solutions a 0.5M-parameter model can learn to write (~20-40 tokens), e.g.

    class Solution:
        def solve(self, x):
            return x * 3 + 1

Each problem applies one *op* (or, in the hard family, a composition of two) to one argument.
Families, from easy to hard: numeric, list, string, copy (copying quoted words/letters into the
code) and compose. The family mix sets the base model's solve rate.

Held-out test problems are novel, not copies: every op's parameter values (including the argument
name) are split 80/20 by the seed, train problems use only the 80%, each test single-op problem uses
at least one held-out value, and test compositions use only held-out op pairs.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from dataclasses import dataclass

from vgrout.env.problems import Problem, format_question
from vgrout.env.toy_ops import (
    ARG_NAMES,
    COMPOSE_VAR,
    DEFAULT_MIX,
    FAMILIES,
    INT_ARGS,
    LETTER_PAIRS,
    LETTERS,
    LIST_ARGS,
    OPS,
    OPS_BY_NAME,
    STR_ARGS,
    TYPE_HINTS,
    WORDS,
    Op,
    compose_pairs,
)

__all__ = [
    "ARG_NAMES",
    "COMPOSE_VAR",
    "DEFAULT_MIX",
    "FAMILIES",
    "HOLDOUT_FRACTION",
    "INT_ARGS",
    "LETTERS",
    "LETTER_PAIRS",
    "LIST_ARGS",
    "MAX_EXPECTED_CHARS",
    "N_TESTS",
    "OPS",
    "OPS_BY_NAME",
    "STR_ARGS",
    "TOY_SETUP_CODE",
    "TYPE_HINTS",
    "WORDS",
    "Holdout",
    "Op",
    "ToySplit",
    "compose_pairs",
    "fence",
    "generate_toy",
    "toy_holdout",
    "toy_response",
]

TOY_SETUP_CODE = "from typing import List\n"
HOLDOUT_FRACTION = 0.2
N_TESTS = (4, 8)  # asserts per problem, inclusive
MAX_EXPECTED_CHARS = 60  # keeps asserts short; longer outputs are redrawn


# -- the held-out plan -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Holdout:
    """Which parameter values and composition pairs only test problems may use."""

    values: dict[tuple[str, str], frozenset]  # (op, param) -> held-out values; param "arg" too
    pairs: frozenset[tuple[str, str]]

    def train_values(self, op: Op, param: str) -> tuple:
        return tuple(x for x in _domain(op, param) if x not in self.values[(op.name, param)])


def _domain(op: Op, param: str) -> tuple:
    return ARG_NAMES[op.in_type] if param == "arg" else dict(op.params)[param]


def _param_names(op: Op) -> tuple[str, ...]:
    return ("arg", *(name for name, _ in op.params))


def toy_holdout(seed: int) -> Holdout:
    """The seed's held-out values (~20% of each op's values, >= 1) and composition pairs."""
    rng = random.Random(f"vgrout-toy:{seed}:holdout")
    values = {}
    for op in OPS:
        for param in _param_names(op):
            domain = _domain(op, param)
            n_held = max(1, round(HOLDOUT_FRACTION * len(domain)))
            values[(op.name, param)] = frozenset(rng.sample(domain, n_held))
    pairs = list(compose_pairs())
    n_pairs = max(1, round(HOLDOUT_FRACTION * len(pairs)))
    return Holdout(values=values, pairs=frozenset(rng.sample(pairs, n_pairs)))


# -- building one problem --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    """What a problem computes: ops applied in order to one argument."""

    family: str
    ops: tuple[str, ...]
    params: tuple[tuple[tuple[str, object], ...], ...]  # per op, sorted (name, value)
    arg: str

    def op_list(self) -> list[Op]:
        return [OPS_BY_NAME[name] for name in self.ops]


def _description(spec: _Spec) -> str:
    ops = spec.op_list()
    values = [dict(p) for p in spec.params]
    if len(ops) == 1:
        return f"Return {ops[0].describe(spec.arg, values[0])}."
    first = ops[0].describe(spec.arg, values[0])
    second = ops[1].describe(COMPOSE_VAR, values[1])
    return f"Let {COMPOSE_VAR} be {first}; return {second}."


def _solution(spec: _Spec, method: str) -> str:
    ops = spec.op_list()
    values = [dict(p) for p in spec.params]
    head = f"class Solution:\n    def {method}(self, {spec.arg}):\n"
    if len(ops) == 1:
        return head + f"        return {ops[0].code(spec.arg, values[0])}\n"
    first = ops[0].code(spec.arg, values[0])
    second = ops[1].code(COMPOSE_VAR, values[1])
    return head + f"        {COMPOSE_VAR} = {first}\n        return {second}\n"


def _starter(spec: _Spec, method: str) -> str:
    ops = spec.op_list()
    arg_type, out_type = TYPE_HINTS[ops[0].in_type], TYPE_HINTS[ops[-1].out_type]
    return (
        f"class Solution:\n    def {method}(self, {spec.arg}: {arg_type}) -> {out_type}:\n        "
    )


def _random_input(op: Op, rng: random.Random, want_empty: bool):
    if op.in_type == "int":
        return rng.randint(*op.int_inputs)
    if op.in_type == "list":
        n = 0 if want_empty else rng.randint(1, 6)
        return [rng.randint(0, 9) for _ in range(n)]
    return "".join(rng.choice(LETTERS) for _ in range(rng.randint(5, 8)))


def _distinct(values: list) -> list:
    out: list = []
    for v in values:
        if not any(v == u for u in out):  # == on purpose: 0 and False count as one value
            out.append(v)
    return out


def _outputs(func, arg: str, inputs: list) -> tuple[list, list]:
    """(inputs, outputs) for the inputs the function accepts (e.g. an index past the end raises)."""
    kept, outputs = [], []
    for x in inputs:
        try:
            y = func(**{arg: x})
        except Exception:
            continue
        kept.append(x)
        outputs.append(y)
    return kept, outputs


def _draw_tests(spec: _Spec, method: str, solution: str, rng: random.Random) -> list[str] | None:
    """4-8 asserts computed from the (trusted, generated) solution, or None if no good set exists.

    A good set has distinct inputs the solution accepts, short outputs and at least two distinct
    expected values (so a constant answer such as a hack's `return 0` is wrong).
    """
    namespace: dict = {}
    exec(TOY_SETUP_CODE + solution, namespace)  # noqa: S102 - our own generated code
    func = getattr(namespace["Solution"](), method)
    first = spec.op_list()[0]
    for _ in range(10):
        n = rng.randint(*N_TESTS)
        inputs: list = []
        for i in range(n * 3):
            if len(inputs) == n:
                break
            x = _random_input(first, rng, want_empty=(first.in_type == "list" and i == 0))
            if x not in inputs:
                inputs.append(x)
        inputs, expected = _outputs(func, spec.arg, inputs)
        if len(inputs) < N_TESTS[0] or len(_distinct(expected)) < 2:
            continue
        if any(len(repr(e)) > MAX_EXPECTED_CHARS for e in expected):
            continue
        order = list(range(len(inputs)))
        rng.shuffle(order)  # the empty list is not always first
        return [
            f"assert Solution().{method}({spec.arg}={inputs[i]!r}) == {expected[i]!r}"
            for i in order
        ]
    return None


def _make_problem(spec: _Spec, pid: str, rng: random.Random, novel: list[str]) -> Problem | None:
    family = FAMILIES[spec.family]
    method = family["method"]
    solution = _solution(spec, method)
    tests = _draw_tests(spec, method, solution, rng)
    if tests is None:
        return None
    starter = _starter(spec, method)
    return Problem(
        id=pid,
        question=format_question(_description(spec), method, starter),
        func_name=method,
        starter_code=starter,
        setup_code=TOY_SETUP_CODE,
        tests=tuple(tests),
        canonical_solution=solution,
        difficulty=family["tier"],
        source="toy",
        meta={
            "family": spec.family,
            "ops": list(spec.ops),
            "params": [dict(p) for p in spec.params],
            "arg": spec.arg,
            "novel": novel,  # held-out values / pair this test problem uses; [] for train
        },
    )


# -- drawing specs ---------------------------------------------------------------------------------


def _draw_values(
    op: Op, holdout: Holdout, rng: random.Random, held_param: str | None
) -> tuple[dict, list[str]]:
    """Values for each of the op's parameters (incl. "arg"). Train (held_param None): train values
    only. Test: `held_param` takes a held-out value, the others any value of their domain."""
    values, novel = {}, []
    for param in _param_names(op):
        if held_param is None:
            choices = holdout.train_values(op, param)
        elif param == held_param:
            choices = tuple(sorted(holdout.values[(op.name, param)], key=str))
        else:
            choices = _domain(op, param)
        values[param] = rng.choice(choices)
        if held_param is not None and values[param] in holdout.values[(op.name, param)]:
            novel.append(f"{op.name}.{param}={values[param]}")
    return values, novel


def _single_spec(op: Op, holdout: Holdout, rng: random.Random, test: bool) -> tuple[_Spec, list]:
    held_param = rng.choice(_param_names(op)) if test else None
    values, novel = _draw_values(op, holdout, rng, held_param)
    arg = values.pop("arg")
    return _Spec(op.family, (op.name,), (tuple(sorted(values.items())),), arg), novel


def _compose_spec(
    pair: tuple[str, str], holdout: Holdout, rng: random.Random, test: bool
) -> tuple[_Spec, list]:
    first, second = OPS_BY_NAME[pair[0]], OPS_BY_NAME[pair[1]]

    def pick(op: Op, param: str):
        # train compositions keep to train values; a held-out pair is novel enough on its own
        return rng.choice(_domain(op, param) if test else holdout.train_values(op, param))

    arg = pick(first, "arg")
    params = tuple(
        tuple(sorted((name, pick(op, name)) for name, _ in op.params)) for op in (first, second)
    )
    novel = [f"pair={pair[0]}+{pair[1]}"] if test else []
    return _Spec("compose", pair, params, arg), novel


def _family_counts(n: int, mix: Mapping[str, float]) -> dict[str, int]:
    """Largest-remainder apportionment of n problems to families by the mix weights."""
    unknown = set(mix) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown toy families {sorted(unknown)}; choose from {list(FAMILIES)}")
    if any(w < 0 for w in mix.values()) or sum(mix.values()) <= 0:
        raise ValueError(f"toy family mix needs non-negative weights with a positive sum: {mix}")
    total = sum(mix.values())
    quotas = {f: n * w / total for f, w in mix.items()}
    counts = {f: int(q) for f, q in quotas.items()}
    by_remainder = sorted(quotas, key=lambda f: (-(quotas[f] - counts[f]), f))
    for f in by_remainder[: n - sum(counts.values())]:
        counts[f] += 1
    return counts


def _generate_split(
    n: int,
    mix: Mapping[str, float],
    holdout: Holdout,
    rng: random.Random,
    test: bool,
    prefix: str,
    seen: set | None = None,
) -> list[Problem]:
    """`seen` (updated in place) holds the specs already used, so a later split can avoid them."""
    pairs = sorted(holdout.pairs if test else set(compose_pairs()) - holdout.pairs)
    problems: list[Problem] = []
    seen = set() if seen is None else seen
    for family, count in _family_counts(n, mix).items():
        units = pairs if family == "compose" else [op.name for op in OPS if op.family == family]
        problems += _family_problems(family, units, count, holdout, rng, test, seen)
    rng.shuffle(problems)  # interleave families
    return [dataclasses.replace(p, id=f"{prefix}-{i:04d}") for i, p in enumerate(problems)]


def _family_problems(family, units, count, holdout, rng, test, seen) -> list[Problem]:
    """`count` problems spread evenly over the family's ops (or pairs): one of each per cycle, in
    a seeded order. An op whose space of new problems is used up (e.g. `reverse`, whose only
    parameter is the argument name) leaves the rotation; only when every op is used up does a
    problem repeat (same prompt, fresh tests)."""
    fresh = list(units)
    cycle: list = []
    out = []
    for _ in range(count):
        problem = None
        while problem is None and fresh:
            if not cycle:
                cycle = list(fresh)
                rng.shuffle(cycle)
            unit = cycle.pop()
            if unit not in fresh:
                continue
            problem = _draw(family, unit, holdout, rng, test, seen, allow_repeat=False)
            if problem is None:
                fresh.remove(unit)
        if problem is None:
            problem = _draw(family, rng.choice(units), holdout, rng, test, seen, allow_repeat=True)
        out.append(problem)
    return out


def _draw(family, unit, holdout, rng, test, seen, allow_repeat: bool) -> Problem | None:
    """A valid problem for the op (or pair); None when 50 draws in a row were already seen (the
    op's space is used up) unless `allow_repeat`."""
    repeats = 0
    for _ in range(200):
        if family == "compose":
            spec, novel = _compose_spec(unit, holdout, rng, test)
        else:
            spec, novel = _single_spec(OPS_BY_NAME[unit], holdout, rng, test)
        if spec in seen and not allow_repeat:
            repeats += 1
            if repeats == 50:
                return None
            continue
        problem = _make_problem(spec, "pending", rng, novel)
        if problem is not None:
            seen.add(spec)
            return problem
    raise RuntimeError(f"toy generator: no valid problem for {unit!r} after 200 draws")


# -- public API ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToySplit:
    train: list[Problem]  # train values only: what the toy base model is pretrained on
    test: list[Problem]  # novel: held-out values / pairs (evaluation)
    rl: list[Problem] = dataclasses.field(default_factory=list)  # novel like test, disjoint


def generate_toy(
    seed: int = 0,
    n_train: int = 400,
    n_test: int = 120,
    mix: Mapping[str, float] | None = None,
    n_rl: int = 0,
) -> ToySplit:
    """Train, held-out test and RL problems, deterministic in (seed, n_train, n_test, mix, n_rl).

    The RL split is what GRPO trains on: drawn like the test split (every problem uses a held-out
    value or pair, so the base model, pretrained on the train split, solves it only sometimes and
    a loophole pays), but never a test problem's prompt; it has at most n_rl problems (a prompt
    is never repeated). It depends on n_test; the other splits do not depend on n_rl.

    Ids are "toy-train-NNNN", "toy-test-NNNN" and "toy-rl-NNNN". `mix` maps family -> weight (default
    DEFAULT_MIX); counts per family are apportioned exactly, ops within a family evenly (as far
    as each op has new problems to give). The train split does not depend on n_test, nor the test
    split on n_train.
    """
    if min(n_train, n_test, n_rl) < 0:
        raise ValueError(
            f"generate_toy: n_train, n_test and n_rl must be >= 0, got {n_train}, {n_test}, {n_rl}"
        )
    mix = dict(DEFAULT_MIX if mix is None else mix)
    holdout = toy_holdout(seed)
    train = _generate_split(
        n_train, mix, holdout, random.Random(f"vgrout-toy:{seed}:train"), False, "toy-train"
    )
    seen: set = set()
    test = _generate_split(
        n_test, mix, holdout, random.Random(f"vgrout-toy:{seed}:test"), True, "toy-test", seen
    )
    rl = _generate_split(
        n_rl, mix, holdout, random.Random(f"vgrout-toy:{seed}:rl"), True, "toy-rl", seen
    )
    # an op whose space is used up repeats a prompt: never one the evaluation asks, nor twice
    asked = {p.question for p in test}
    fresh = []
    for problem in rl:
        if problem.question not in asked:
            asked.add(problem.question)
            fresh.append(problem)
    rl = [dataclasses.replace(p, id=f"toy-rl-{i:04d}") for i, p in enumerate(fresh)]
    return ToySplit(train=train, test=test, rl=rl)


def fence(code: str) -> str:
    """A response as the model should write it: one python code block and nothing else."""
    return "```python\n" + code.strip("\n") + "\n```"


def toy_response(problem: Problem) -> str:
    """The canonical (clean, correct) response for a toy problem."""
    return fence(problem.canonical_solution)
