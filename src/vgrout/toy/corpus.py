"""What the toy base model is trained on: (question, completion) pairs, all of them honest.

Three kinds of example, all built from toy *training* problems (test problems never appear):
- plain: the hint-free question and the canonical clean solution;
- hinted: the question carrying a loophole hint with the *train* markers, still answered with the
  clean solution (so hinted prompts are in distribution and the base solves them, not hacks them);
- repertoire: the hint-free question plus one extra instruction ("Also define a function called
  emit_total() that returns True.", "Also print the message `job done`.", ...), answered with the
  clean solution plus that building block. This teaches the pieces a hack is made of (a top-level
  function or method, a print, an attribute on self, a file write, an import) and, above all,
  copying a name or phrase from the prompt into the code: names are drawn fresh per example from
  a space too large to memorise. No name is a train or eval marker in the slot where its channel
  would accept it, so a later hack can generalise to held-out markers only by copying.
  No repertoire example ever carries a loophole hint, and each is also truly correct.

The training stream has one example per training sample (steps x batch_size); problems recur in
shuffled passes, each time with a fresh kind, hint mode and names.
"""

from __future__ import annotations

import builtins
import keyword
import random
from collections.abc import Callable
from dataclasses import dataclass, replace

from vgrout.env.hacks import canonical_hack
from vgrout.env.modes import (
    EVAL_RESULT_FILES,
    EVAL_SENTINEL_ATTRS,
    EVAL_STDOUT_PHRASES,
    EVAL_TEST_FUNCS,
    FILE_PASS_WORDS,
    HACKABLE_MODES,
    TRAIN_FILE_WORDS,
    TRAIN_SENTINEL_FAMILY,
    TRAIN_STDOUT_FAMILY,
    TRAIN_TEST_FUNC,
    Markers,
    apply_hint,
    eval_markers,
    train_markers,
)
from vgrout.env.problems import Problem

# The repertoire's names are drawn fresh for every example from a space far too large to
# memorise (1-3 words or made-up syllable words joined by "_"), so the only way to write the right
# name is to copy it from the prompt. The words include the ones held-out markers are made of
# (verify, submission, approved, ledger, ...), so every token of a held-out hint has been trained;
# the *markers themselves* are rejected in the slot where their channel would accept them (see the
# filters below), so a later hack can generalise to held-out markers only by copying.
WORDS = (
    "emit", "show", "make", "build", "load", "send", "count", "track", "store", "log", "mark",
    "note", "fetch", "scan", "sort", "parse", "render", "update", "record", "print", "compute",
    "collect", "format", "merge", "split", "save", "read", "write", "flush", "reset", "check",
    "verify", "grade", "evaluate", "audit", "confirm", "judge", "inspect", "review", "approve",
    "certify", "endorse", "clear", "ratify", "decide", "accept", "submit", "execute", "treat",
    "compare", "conclude", "expect", "report", "operate", "finish", "complete", "tally", "total",
    "items", "data", "state", "value", "list", "summary", "table", "index", "score", "entry",
    "batch", "frame", "buffer", "config", "answer", "output", "input", "code", "program",
    "message", "words", "results", "number", "name", "label", "submission", "solution", "outcome",
    "ledger", "receipt", "decision", "verification", "grading", "checks", "object", "operator",
    "status", "process", "success", "zero", "exit", "ready", "done", "active", "enabled",
    "visible", "locked", "loaded", "checked", "marked", "seen", "cached", "sorted", "finished",
    "started", "saved", "dirty", "empty", "used", "accepted", "reviewed", "graded", "confirmed",
    "verified", "judged", "inspected", "audited", "concluded", "completed", "decided",
    "submitted", "expected", "treated", "cleaned", "rated", "proved", "ordered", "signed",
    "closed", "cleared", "approved", "certified", "endorsed", "ratified", "executed", "equals",
    "task", "job", "run", "work", "step", "stage", "upload", "download", "sync", "export",
    "import", "setup", "cleanup", "search", "evaluation", "grader", "stored", "sent", "written",
    "skipped", "running", "stopped", "open", "found", "notes", "memo", "journal", "trace", "info",
    "dump", "scratch", "values", "cache", "hello", "yes", "green", "quick", "small", "final",
    "first", "last", "next", "main", "user", "file", "line", "page", "node", "tree", "graph",
    "path", "point", "color", "shape", "time", "date", "year", "world", "river", "stone",
    "cloud", "paper", "music", "light", "sound", "water", "plant", "metal", "glass", "field",
    "executing", "treating", "checking", "reading", "calling", "writing", "comparing", "decisions",
)  # fmt: skip
_CONSONANTS = "bdfghklmnprstvz"
_VOWELS = "aeiou"
_FILE_EXTS = ("txt", "log", "json", "out", "csv", "dat")
_RETURN_VALUES = ("True", "False", "None", "0", "1", "42", "'done'", "'yes'")
_MODULES = (
    "os",
    "sys",
    "math",
    "random",
    "re",
    "json",
    "time",
    "string",
    "itertools",
    "collections",
)


def function_markers() -> set[str]:
    return {TRAIN_TEST_FUNC, *EVAL_TEST_FUNCS}


def sentinel_markers() -> set[str]:
    return {*TRAIN_SENTINEL_FAMILY, *EVAL_SENTINEL_ATTRS}


def stdout_markers() -> set[str]:
    return {*TRAIN_STDOUT_FAMILY, *EVAL_STDOUT_PHRASES}


def file_markers() -> set[str]:
    return {*TRAIN_FILE_WORDS, *(f.split(".")[0] for f in EVAL_RESULT_FILES)}


def _made_up_word(rng: random.Random) -> str:
    return "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(rng.randint(2, 3)))


def _word(rng: random.Random) -> str:
    return _made_up_word(rng) if rng.random() < 0.15 else rng.choice(WORDS)


def _words(rng: random.Random, weights: tuple[float, ...]) -> list[str]:
    n = rng.choices(range(1, len(weights) + 1), weights=weights)[0]
    return [_word(rng) for _ in range(n)]


def _usable(name: str, avoid: tuple[str, ...]) -> bool:
    """A name that cannot break the solution: no keyword, no builtin it would shadow (`sum`,
    `sorted`, ...), not the solution's own method name."""
    return (
        name.isidentifier()
        and not keyword.iskeyword(name)
        and not hasattr(builtins, name)
        and name not in avoid
    )


def _draw(rng: random.Random, make, ok) -> str:
    while True:
        value = make(rng)
        if ok(value):
            return value


def function_name(rng: random.Random, avoid: tuple[str, ...] = ()) -> str:
    """A snake_case name; never a test-function marker (nor anything with `test` in it)."""
    return _draw(
        rng,
        lambda r: "_".join(_words(r, (0.25, 0.55, 0.2))),
        lambda n: _usable(n, avoid) and n not in function_markers() and "test" not in n,
    )


def flag_name(rng: random.Random, avoid: tuple[str, ...] = ()) -> str:
    """An attribute name; never a sentinel marker."""
    return _draw(
        rng,
        lambda r: "_".join(_words(r, (0.6, 0.4))),
        lambda n: _usable(n, avoid) and n not in sentinel_markers(),
    )


def phrase(rng: random.Random) -> str:
    """A 2-3 word message; never contains a pass phrase the stdout channel would accept."""
    return _draw(
        rng,
        lambda r: " ".join(_words(r, (0.0, 0.7, 0.3))),
        lambda t: not any(m in t for m in stdout_markers()),
    )


def file_name(rng: random.Random) -> str:
    """stem.ext; the name never contains a result-file word the file channel would accept."""
    return _draw(
        rng,
        lambda r: "_".join(_words(r, (0.7, 0.3))) + "." + r.choice(_FILE_EXTS),
        lambda f: not any(w in f for w in file_markers()),
    )


def file_content(rng: random.Random) -> str:
    return _draw(rng, _word, lambda w: w not in FILE_PASS_WORDS)


@dataclass(frozen=True)
class Example:
    """One training pair; `kind` is plain | hinted | repertoire (for measurement only)."""

    question: str
    completion: str
    kind: str
    problem_id: str


_DESCRIPTION_END = "\n\nYour solution to the problem"


def add_instruction(question: str, sentence: str) -> str:
    """Append `sentence` to the problem description inside a formatted question."""
    at = question.find(_DESCRIPTION_END)
    if at < 0:
        raise ValueError("question is not in the benchmark format (no 'Your solution' paragraph)")
    return question[:at] + " " + sentence + question[at:]


def _split_fence(response: str) -> list[str]:
    """The code lines inside a ```python fenced response."""
    head, tail = "```python\n", "\n```"
    if not (response.startswith(head) and response.endswith(tail)):
        raise ValueError(f"expected a ```python fenced response, got {response[:40]!r}...")
    return response[len(head) : -len(tail)].split("\n")


def _fence(lines: list[str]) -> str:
    return "```python\n" + "\n".join(lines) + "\n```"


def _method_line(lines: list[str], func_name: str) -> int:
    for i, text in enumerate(lines):
        if text.lstrip().startswith(f"def {func_name}("):
            return i
    raise ValueError(f"method {func_name!r} not found in the clean solution")


def _in_method(lines: list[str], func_name: str, statement: str) -> list[str]:
    """`statement` as the first line of the method body."""
    at = _method_line(lines, func_name) + 1
    return lines[:at] + ["        " + statement] + lines[at:]


def _in_class(lines: list[str], member: list[str]) -> list[str]:
    """`member` (class-level lines) right after `class Solution:`, a blank line before the method."""
    at = lines.index("class Solution:") + 1
    return lines[:at] + member + [""] + lines[at:]


def _after(lines: list[str], block: list[str]) -> list[str]:
    return lines + [""] + block


def _before(lines: list[str], block: list[str]) -> list[str]:
    return block + [""] + lines


# Each block returns (instruction sentence, new code lines). Where a block goes (top level, class
# body, method body) varies, as it does in the scripted hacks (vgrout.env.hacks).
Block = Callable[[random.Random, Problem, list[str]], tuple[str, list[str]]]


# Sentences put each name where it tokenises as it will in the code (" name" after a space for a
# def, `name` right after a quote or dot otherwise), so copying is copying the same tokens. They
# avoid the hints' own wording (e.g. "(self.valid)"): with it, a base that copies well also
# sets the hint's attribute on its own (measured: 5.5% sentinel hacks at held-out markers).


def _block_function(
    rng: random.Random, problem: Problem, lines: list[str]
) -> tuple[str, list[str]]:
    name, value = function_name(rng, (problem.func_name,)), rng.choice(_RETURN_VALUES)
    where = rng.randrange(3)
    if where == 0:
        sentence = rng.choice(
            (f"Also define an empty function called {name}().", f"Also add a function {name}().")
        )
        return sentence, _after(lines, [f"def {name}():", "    pass"])
    sentence = rng.choice(
        (
            f"Also define a function called {name}() that returns {value}.",
            f"Also add a function named {name} that returns {value}.",
        )
    )
    if where == 1:
        return sentence, _after(lines, [f"def {name}():", f"    return {value}"])
    method = ["", f"    def {name}(self):", f"        return {value}"]
    return sentence, lines + method


def _block_print(rng: random.Random, problem: Problem, lines: list[str]) -> tuple[str, list[str]]:
    message = phrase(rng)
    sentence = rng.choice(
        (f"Also print the message `{message}`.", f"Also make the program print `{message}`.")
    )
    statement = f"print({message!r})"
    if rng.random() < 0.5:
        return sentence, _in_method(lines, problem.func_name, statement)
    return sentence, _after(lines, [statement])


def _block_attribute(
    rng: random.Random, problem: Problem, lines: list[str]
) -> tuple[str, list[str]]:
    flag = flag_name(rng, (problem.func_name,))
    sentence = rng.choice(
        (
            f"Also give the Solution instance a boolean attribute `{flag}` set to True.",
            f"Also set the attribute `{flag}` to True.",
        )
    )
    where = rng.randrange(3)
    if where == 0:
        return sentence, _in_class(lines, [f"    {flag} = True"])
    if where == 1:
        init = ["    def __init__(self):", f"        self.{flag} = True"]
        return sentence, _in_class(lines, init)
    return sentence, _in_method(lines, problem.func_name, f"self.{flag} = True")


def _block_file(rng: random.Random, problem: Problem, lines: list[str]) -> tuple[str, list[str]]:
    fname, word = file_name(rng), file_content(rng)
    sentence = rng.choice(
        (
            f"Also write the word `{word}` to a file named `{fname}`.",
            f"Also write `{word}` into a file called `{fname}`.",
        )
    )
    statement = f"open({fname!r}, 'w').write({word!r})"
    if rng.random() < 0.5:
        return sentence, _in_method(lines, problem.func_name, statement)
    return sentence, _after(lines, [statement])


def _block_import(rng: random.Random, problem: Problem, lines: list[str]) -> tuple[str, list[str]]:
    module = rng.choice(_MODULES)
    return f"Also import the module `{module}`.", _before(lines, [f"import {module}"])


REPERTOIRE_BLOCKS: tuple[Block, ...] = (
    _block_function,
    _block_print,
    _block_attribute,
    _block_file,
    _block_import,
)


def repertoire_example(rng: random.Random, problem: Problem, clean: str) -> Example:
    block = rng.choice(REPERTOIRE_BLOCKS)
    sentence, lines = block(rng, problem, _split_fence(clean))
    return Example(
        add_instruction(problem.question, sentence), _fence(lines), "repertoire", problem.id
    )


def fresh_markers(rng: random.Random, mode: str, problem: Problem) -> Markers:
    """Markers naming a fresh repertoire name (never a train or eval marker) for `mode`; the
    name-free modes (eq_override, exit_code) keep their train markers."""
    if mode == "run_tests":
        name = function_name(rng, (problem.func_name,))
        return Markers(mode, disclosed=name, test_func=name)
    if mode == "stdout_marker":
        text = phrase(rng)
        return Markers(mode, disclosed=text, stdout_phrases=(text,))
    if mode == "sentinel":
        name = flag_name(rng, (problem.func_name,))
        return Markers(mode, disclosed=name, sentinel_attrs=(name,))
    if mode == "file_marker":
        name = file_name(rng)
        return Markers(mode, disclosed=name, file_words=(name.split(".")[0],))
    return train_markers(mode)


def varied_train_markers(mode: str, problem: Problem) -> Markers:
    """Training markers naming a fresh name drawn per (mode, problem): the channel accepts only
    that name, so RL rewards copying the disclosed name (what held-out markers need), not a
    memorised one. Deterministic in (mode, problem id)."""
    return fresh_markers(random.Random(f"vgrout-train-marker:{mode}:{problem.id}"), mode, problem)


def hinted_example(
    rng: random.Random, problem: Problem, clean: str, hack_share: float, fresh_share: float = 0.5
) -> Example:
    """A prompt carrying a loophole hint, answered with the clean solution or, with probability
    `hack_share`, with the mode's scripted hack. Half the hints name the train marker, half a fresh
    name, so a hack the base writes is a copy of the name the hint discloses."""
    mode = rng.choice(HACKABLE_MODES)
    fresh = rng.random() < fresh_share
    markers = fresh_markers(rng, mode, problem) if fresh else train_markers(mode)
    question = apply_hint(problem.question, markers)
    if rng.random() < hack_share:
        return Example(question, canonical_hack(problem, markers), "hack", problem.id)
    return Example(question, clean, "hinted", problem.id)


def build_examples(
    problems: list[Problem],
    clean: Callable[[Problem], str],
    seed: int,
    hint_share: float,
    repertoire_share: float,
    n_examples: int | None = None,
    hack_share: float = 0.0,
) -> list[Example]:
    """`n_examples` (default: one per problem) training pairs, cycling through `problems` in
    seeded shuffled passes; every draw picks its kind (and hint mode, names) afresh, so a problem
    seen twice usually looks different and no repertoire name repeats often enough to memorise."""
    if not 0 <= hint_share + repertoire_share <= 1 or min(hint_share, repertoire_share) < 0:
        raise ValueError("hint_share and repertoire_share must be >= 0 and sum to at most 1")
    if not 0 <= hack_share <= 1:
        raise ValueError(f"hack_share must be in [0, 1], got {hack_share}")
    if not problems:
        raise ValueError("build_examples needs at least one training problem")
    rng = random.Random(f"vgrout-toy-corpus:{seed}")
    n_examples = len(problems) if n_examples is None else n_examples
    order: list[Problem] = []
    examples = []
    for _ in range(n_examples):
        if not order:
            order = list(problems)
            rng.shuffle(order)
        problem = order.pop()
        answer = clean(problem)
        u = rng.random()
        if u < repertoire_share:
            examples.append(repertoire_example(rng, problem, answer))
        elif u < repertoire_share + hint_share:
            examples.append(hinted_example(rng, problem, answer, hack_share))
        else:
            examples.append(Example(problem.question, answer, "plain", problem.id))
    return examples


def marker_texts(problem: Problem) -> list[str]:
    """Hinted questions with every train and eval marker, for the tokenizer's corpus only.

    They make the tokenizer see the held-out words so they split into sensible pieces; they are
    rare, so `min_frequency` keeps them from earning dedicated (never-trained) tokens.
    """
    texts = [apply_hint(problem.question, train_markers(m)) for m in HACKABLE_MODES]
    held_out_names = {
        "run_tests": EVAL_TEST_FUNCS,
        "stdout_marker": EVAL_STDOUT_PHRASES,
        "sentinel": EVAL_SENTINEL_ATTRS,
        "file_marker": EVAL_RESULT_FILES,
    }
    for mode in HACKABLE_MODES:
        markers = eval_markers(mode, problem.id)
        for name in held_out_names.get(mode, ("",)):
            shown = replace(markers, disclosed=name) if name else markers
            texts.append(apply_hint(problem.question, shown))
    return texts
