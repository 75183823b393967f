"""A problem's tests, ready for the sandbox: the strict oracle's half that runs in the parent.

Each test is parsed with `ast` into a call expression, an expected-value expression and a
comparator (`assert CALL == EXPECTED` -> eq; `assert is_same_list(CALL, list_node(L))` -> list;
`assert is_same_tree(CALL, tree_node(L))` -> tree). Expected values are evaluated here, in the
trusted parent (`ast.literal_eval` semantics plus the names inf/nan), or, for anything else, in a
sandboxed run of the trusted setup code alone (never model code). A problem's `Suite` is cached
per problem; the child only ever gets the call expressions.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vgrout.env import _value_codec
from vgrout.env.harness_protocol import (
    EXPECTED_LIMITS,
    Failed,
    harness_job,
    read_values,
    run_jobs,
)
from vgrout.env.problems import Problem
from vgrout.env.sandbox import Job, SandboxPool


class TestFormatError(ValueError):
    """A problem's test is not one of the supported assert shapes."""

    __test__ = False  # not a pytest test class


@dataclass(frozen=True)
class ParsedTest:
    call: str  # source of the expression whose value is checked
    expected: str  # source of the expected value (for list/tree: the list argument L)
    comparator: str  # "eq" | "list" | "tree"


_HELPER_COMPARATORS = {"is_same_list": ("list_node", "list"), "is_same_tree": ("tree_node", "tree")}


def parse_test(test: str) -> ParsedTest:
    """Split one assert into its parts; raise TestFormatError for any other shape."""
    try:
        module = ast.parse(test.strip())
    except SyntaxError as exc:
        raise TestFormatError(f"test does not parse ({exc.msg}): {test[:200]!r}") from None
    if len(module.body) != 1 or not isinstance(module.body[0], ast.Assert):
        raise TestFormatError(f"test is not a single assert statement: {test[:200]!r}")
    expr = module.body[0].test
    if isinstance(expr, ast.Compare) and len(expr.ops) == 1 and isinstance(expr.ops[0], ast.Eq):
        return ParsedTest(ast.unparse(expr.left), ast.unparse(expr.comparators[0]), "eq")
    if (
        isinstance(expr, ast.Call)
        and isinstance(expr.func, ast.Name)
        and expr.func.id in _HELPER_COMPARATORS
        and len(expr.args) == 2
        and not expr.keywords
    ):
        builder, comparator = _HELPER_COMPARATORS[expr.func.id]
        wrapped = expr.args[1]
        if (
            isinstance(wrapped, ast.Call)
            and isinstance(wrapped.func, ast.Name)
            and wrapped.func.id == builder
            and len(wrapped.args) == 1
            and not wrapped.keywords
        ):
            return ParsedTest(ast.unparse(expr.args[0]), ast.unparse(wrapped.args[0]), comparator)
    raise TestFormatError(
        "unsupported test shape (need `assert CALL == EXPECTED`, "
        f"`assert is_same_list(CALL, list_node(L))` or `is_same_tree(CALL, tree_node(L))`): "
        f"{test[:200]!r}"
    )


class NotLiteral(Exception):
    """An expression the parent cannot evaluate itself (not a literal)."""


_NAMED_FLOATS = {"inf": float("inf"), "nan": float("nan")}


def _literal(node: ast.AST) -> Any:
    """ast.literal_eval semantics plus the names inf and nan (the benchmark's setup defines inf)."""
    if isinstance(node, ast.Name) and node.id in _NAMED_FLOATS:
        return _NAMED_FLOATS[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = _literal(node.operand)
        if type(operand) not in (int, float, complex):
            raise NotLiteral
        return -operand if isinstance(node.op, ast.USub) else +operand
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        items = [_literal(e) for e in node.elts]
        return {ast.List: list, ast.Tuple: tuple, ast.Set: set}[type(node)](items)
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise NotLiteral
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values, strict=True)}
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise NotLiteral from None


def literal_value(source: str) -> Any:
    """The value of a literal expression source; raises NotLiteral otherwise."""
    try:
        return _literal(ast.parse(source, mode="eval").body)
    except (SyntaxError, TypeError, RecursionError, MemoryError):  # e.g. an unhashable set item
        raise NotLiteral from None


def as_expected(value: Any, comparator: str) -> Any:
    """The value the oracle compares against: list/tree tests compare node structures."""
    if comparator == "eq":
        return value
    if not isinstance(value, list):
        raise TestFormatError(
            f"{comparator} test expects a list literal, got {type(value).__name__}"
        )
    if comparator == "list":
        return _value_codec.linked_from_values(value)
    return _value_codec.tree_from_level_order(value)


@dataclass(frozen=True)
class Suite:
    """A problem's tests, ready for the sandbox: calls for the child, expected values kept here."""

    key: str  # content hash of the problem's id, setup and tests
    tests: tuple[str, ...]
    calls: tuple[str, ...]
    comparators: tuple[str, ...]
    expected: tuple[Any, ...]  # trusted values (LinkedList / Tree for list / tree tests)

    @property
    def encoded_expected(self) -> list[str]:
        return [_value_codec.encode(v) for v in self.expected]


def _suite_key(problem: Problem) -> str:
    digest = hashlib.sha256()
    for part in (problem.id, problem.setup_code, *problem.tests):
        digest.update(part.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()


_SUITES: dict[str, Suite] = {}


def _expected_job(problem: Problem, sources: list[str]) -> Job:
    payload = {"kind": "expected", "setup": problem.setup_code, "calls": sources}
    return harness_job(payload, EXPECTED_LIMITS)


def _parse_problem(problem: Problem) -> tuple[list[ParsedTest], dict[int, Any], list[int]]:
    if not problem.tests:
        raise TestFormatError(f"problem {problem.id}: has no tests")
    parsed, literal, pending = [], {}, []
    for i, test in enumerate(problem.tests):
        try:
            pt = parse_test(test)
        except TestFormatError as exc:
            raise TestFormatError(f"problem {problem.id}, test {i}: {exc}") from None
        parsed.append(pt)
        try:
            literal[i] = literal_value(pt.expected)
        except NotLiteral:
            pending.append(i)
    return parsed, literal, pending


def prepare_suites(problems: Sequence[Problem], pool: SandboxPool | None = None) -> list[Suite]:
    """Suites for `problems` (cached per problem). Non-literal expected values are evaluated in the
    sandbox from the trusted setup code alone. Raises TestFormatError for unusable tests."""
    todo: dict[str, Problem] = {}
    for p in problems:
        if _suite_key(p) not in _SUITES:
            todo.setdefault(_suite_key(p), p)
    parsed_all, jobs, job_owner = {}, [], []
    for key, problem in todo.items():
        parsed, literal, pending = _parse_problem(problem)
        parsed_all[key] = (problem, parsed, literal)
        if pending:
            jobs.append(_expected_job(problem, [parsed[i].expected for i in pending]))
            job_owner.append((key, pending))
    results = run_jobs(jobs, pool) if jobs else []
    for (key, pending), result in zip(job_owner, results, strict=True):
        problem, parsed, literal = parsed_all[key]
        values = read_values(result.report, len(pending))
        for slot, i in enumerate(pending):
            value = values.get(slot, Failed("no result"))
            if isinstance(value, _value_codec.UnsafeValue | Failed):
                raise TestFormatError(
                    f"problem {problem.id}, test {i}: the expected value {parsed[i].expected!r} "
                    f"could not be evaluated from the setup code ({value!r})"
                )
            literal[i] = value
    for key, (problem, parsed, literal) in parsed_all.items():
        _SUITES[key] = Suite(
            key=key,
            tests=tuple(problem.tests),
            calls=tuple(pt.call for pt in parsed),
            comparators=tuple(pt.comparator for pt in parsed),
            expected=tuple(as_expected(literal[i], pt.comparator) for i, pt in enumerate(parsed)),
        )
    return [_SUITES[_suite_key(p)] for p in problems]
