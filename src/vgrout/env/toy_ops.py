"""The toy problems' vocabulary: the ops a problem applies, their parameter domains and phrasing,
the argument names, the families (method name, difficulty tier, default mix) and which op pairs
compose. Tables only; `vgrout.env.toy_problems` draws problems from them."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

# Argument names are a parameter of every op ("Return word reversed." vs "Return s reversed.").
# `r` is kept free for the intermediate value of compositions and `x` only appears as an int.
INT_ARGS = ("x", "n", "k", "a", "b", "m", "num", "val", "y", "z", "i", "j", "c", "d", "q")
LIST_ARGS = (
    "xs", "nums", "vals", "arr", "items", "data", "ys", "seq", "lst", "values", "ns", "zs",
    "row", "col", "bag",
)  # fmt: skip
STR_ARGS = (
    "s", "word", "text", "name", "line", "w", "t", "msg", "key", "p", "label", "tag", "code",
    "src", "u",
)  # fmt: skip
ARG_NAMES = {"int": INT_ARGS, "list": LIST_ARGS, "str": STR_ARGS}
TYPE_HINTS = {"int": "int", "bool": "bool", "list": "List[int]", "str": "str"}

WORDS = (
    "sun", "cat", "dog", "red", "sky", "tree", "fish", "moon", "star", "blue", "rain", "snow",
    "bird", "leaf", "rock", "wind", "fire", "lake", "hill", "rose", "wolf", "bear", "milk",
    "gold", "ship", "king", "door", "book", "lamp", "frog",
)  # fmt: skip
LETTERS = tuple("abcdefghijklmnopqrstuvwxyz")
LETTER_PAIRS = (
    "qz", "xk", "vb", "jw", "zp", "kx", "wq", "bz", "fj", "pv", "yx", "gq", "mz", "hx", "dk",
    "cj", "tz", "rw", "nq", "lv",
)  # fmt: skip


@dataclass(frozen=True)
class Op:
    """One step: `phrase` describes it in English, `expr` computes it; `{v}` is the input."""

    name: str
    family: str
    in_type: str  # "int" | "list" | "str"
    out_type: str  # "int" | "bool" | "list" | "str"
    params: tuple[tuple[str, tuple], ...]  # (parameter name, domain of values)
    phrase: str  # e.g. "{v} times {a} plus {b}"
    expr: str  # e.g. "{v} * {a} + {b}"
    int_inputs: tuple[int, int] = (0, 25)  # range of int inputs when this op is applied first
    first_ok: bool = True  # may start a composition
    second_ok: bool = True  # may end a composition

    def describe(self, v: str, values: Mapping[str, object]) -> str:
        return self.phrase.format(v=v, **{k: str(x) for k, x in values.items()})

    def code(self, v: str, values: Mapping[str, object]) -> str:
        return self.expr.format(v=v, **{k: repr(x) for k, x in values.items()})


def _ints(lo: int, hi: int) -> tuple[int, ...]:
    return tuple(range(lo, hi + 1))


OPS: tuple[Op, ...] = (
    # numeric: one int in, easy
    Op("affine", "numeric", "int", "int", (("a", _ints(2, 9)), ("b", _ints(1, 9))),
       "{v} times {a} plus {b}", "{v} * {a} + {b}"),
    Op("clamp", "numeric", "int", "int", (("lo", _ints(1, 9)), ("hi", _ints(10, 19))),
       "{v} limited to the range {lo} to {hi}", "min(max({v}, {lo}), {hi})"),
    Op("divisible", "numeric", "int", "bool", (("a", _ints(2, 12)),),
       "True if {v} is divisible by {a}, else False", "{v} % {a} == 0", first_ok=False),
    Op("mod", "numeric", "int", "int", (("a", _ints(2, 12)),),
       "the remainder of {v} divided by {a}", "{v} % {a}"),
    # list: a list of small ints in, easy
    Op("list_sum", "list", "list", "int", (("k", _ints(1, 9)),),
       "the sum of {v} plus {k}", "sum({v}) + {k}"),
    Op("list_max", "list", "list", "int", (("d", _ints(0, 9)),),
       "the largest number in {v}, or {d} if {v} is empty", "max({v}, default={d})"),
    Op("list_count", "list", "list", "int", (("c", _ints(0, 9)),),
       "how many times {c} appears in {v}", "{v}.count({c})"),
    Op("list_filter", "list", "list", "list", (("t", _ints(0, 9)),),
       "the numbers in {v} that are greater than {t}", "[x for x in {v} if x > {t}]"),
    # string: one lowercase string in, medium
    Op("reverse", "string", "str", "str", (), "{v} reversed", "{v}[::-1]"),
    Op("upper", "string", "str", "str", (), "{v} in upper case", "{v}.upper()"),
    Op("char_at", "string", "str", "str", (("k", _ints(0, 4)),),
       "the letter at index {k} of {v}", "{v}[{k}]", first_ok=False),
    Op("head", "string", "str", "str", (("k", _ints(2, 6)),),
       "the first {k} letters of {v}", "{v}[:{k}]"),
    # copy: quoted words or letters from the prompt must be copied into the code, medium
    Op("repeat", "copy", "int", "str", (("w", WORDS),),
       "the word '{w}' repeated {v} times", "{w} * {v}", int_inputs=(0, 4), second_ok=False),
    Op("append", "copy", "str", "str", (("w", WORDS),),
       "{v} followed by the word '{w}'", "{v} + {w}"),
    Op("surround", "copy", "str", "str", (("c", LETTERS),),
       "{v} with the letter '{c}' added at both ends", "{c} + {v} + {c}"),
    Op("prefix", "copy", "str", "str", (("g", LETTER_PAIRS),),
       "the letters '{g}' followed by {v}", "{g} + {v}"),
)  # fmt: skip
OPS_BY_NAME = {op.name: op for op in OPS}

FAMILIES: dict[str, dict] = {
    # family -> method name on Solution and difficulty tier
    "numeric": {"method": "solve", "tier": "easy"},
    "list": {"method": "process", "tier": "easy"},
    "string": {"method": "convert", "tier": "medium"},
    "copy": {"method": "build", "tier": "medium"},
    "compose": {"method": "combine", "tier": "hard"},
}
DEFAULT_MIX: dict[str, float] = {
    "numeric": 0.25,
    "list": 0.20,
    "string": 0.20,
    "copy": 0.15,
    "compose": 0.20,
}
COMPOSE_VAR = "r"  # the intermediate value in a composition's solution


# Pairs whose answer does not depend on the input: the letter at index k of 'sun' * n is the same
# for every n that is long enough.
_CONSTANT_PAIRS = frozenset({("repeat", "char_at")})


def compose_pairs() -> tuple[tuple[str, str], ...]:
    """Every (first, second) op pair whose types chain; an op is never composed with itself."""
    return tuple(
        (a.name, b.name)
        for a, b in itertools.product(OPS, OPS)
        if a is not b
        and a.first_ok
        and b.second_ok
        and a.out_type == b.in_type
        and (a.name, b.name) not in _CONSTANT_PAIRS
    )
