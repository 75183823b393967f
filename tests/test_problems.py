"""Problem loaders: both LeetCode formats on the real files, conversion, errors, round trips, splits."""

from __future__ import annotations

import ast
import gzip
import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from vgrout.env.modes import apply_hint, train_markers
from vgrout.env.problems import (
    HINT_ANCHOR,
    SETUP_CODE,
    SOURCE_BENCHMARK,
    SOURCE_LEETCODEDATASET,
    SYSTEM_PROMPT,
    Problem,
    check_to_asserts,
    format_question,
    is_medium_or_hard,
    load_hf_leetcodedataset,
    load_problems,
    problem_from_leetcodedataset,
    save_problems,
    split_by_id,
    to_benchmark_row,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BENCHMARK_FILE = DATA / "leetcode" / "leetcode_test_medhard.jsonl.gz"
LCD_FILE = DATA / "leetcode" / "LeetCodeDataset-v0.2.0-train.jsonl.gz"
TEACHER_POOL = DATA / "teacher_pool_qwen3_4b"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not available: {path} (expected ../shared/data next to the repo)")
    return path


@pytest.fixture(scope="module")
def benchmark() -> list[Problem]:
    return load_problems(_need(BENCHMARK_FILE))


@pytest.fixture(scope="module")
def lcd() -> list[Problem]:
    return load_problems(_need(LCD_FILE))


def _raw_rows(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _single_assert(test: str) -> ast.Assert:
    module = ast.parse(test)
    assert len(module.body) == 1 and isinstance(module.body[0], ast.Assert), test
    return module.body[0]


# -- the benchmark file ----------------------------------------------------------------------------


def test_benchmark_file_loads_119_medium_and_hard(benchmark):
    assert len(benchmark) == 119
    assert Counter(p.difficulty for p in benchmark) == {"medium": 73, "hard": 46}
    assert all(is_medium_or_hard(p) for p in benchmark)
    assert len({p.id for p in benchmark}) == 119
    assert all(p.id.startswith("lc") and p.id[2:].isdigit() for p in benchmark)
    assert {p.source for p in benchmark} == {SOURCE_BENCHMARK}
    for p in benchmark:
        assert p.question.count(HINT_ANCHOR) == 1
        assert p.func_name.isidentifier() and f"def {p.func_name}(" in p.starter_code
        assert len(p.tests) >= 30
        for t in p.tests:
            node = _single_assert(t)
            assert ast.unparse(node.test).startswith(f"Solution().{p.func_name}(")


def test_benchmark_rows_are_written_back_unchanged(benchmark):
    rows = _raw_rows(BENCHMARK_FILE)
    for row, problem in zip(rows, benchmark, strict=True):
        written = to_benchmark_row(problem)
        for key, value in row.items():
            assert written[key] == value, (problem.id, key)


# -- the LeetCodeDataset file ----------------------------------------------------------------------


def test_leetcodedataset_converts_every_row(lcd):
    assert len(lcd) == 1890
    assert sum(is_medium_or_hard(p) for p in lcd) == 1375
    assert Counter(p.difficulty for p in lcd) == {"medium": 1000, "easy": 515, "hard": 375}
    assert len({p.id for p in lcd}) == len(lcd)
    assert {p.source for p in lcd} == {SOURCE_LEETCODEDATASET}
    assert all(p.setup_code == SETUP_CODE for p in lcd)
    for p in lcd:
        assert p.question.count(HINT_ANCHOR) == 1
        assert p.question.startswith("PROBLEM:\n") and p.question.endswith("\n\nSOLUTION:\n")
        assert p.starter_code.endswith("\n        ")  # the benchmark's starter shape


def test_every_converted_test_is_one_assert_on_the_solution_method(lcd):
    helper_asserts = 0
    for p in lcd:
        for t in p.tests:
            assert "\n" not in t
            node = _single_assert(t)
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            assert "candidate" not in names, t
            assert f"Solution().{p.func_name}(" in t
            if isinstance(node.test, ast.Call):  # is_same_list(...) / is_same_tree(...)
                helper_asserts += 1
                assert ast.unparse(node.test.func) in ("is_same_list", "is_same_tree")
            else:
                assert isinstance(node.test, ast.Compare) and isinstance(node.test.ops[0], ast.Eq)
    assert helper_asserts == 59 + 53  # counted in the raw file: kept, not dropped


def test_train_and_test_files_share_no_question(benchmark, lcd):
    assert not {p.id for p in benchmark} & {p.id for p in lcd}
    descriptions = {p.question.split("\n\nYour solution")[0] for p in benchmark}
    assert not any(p.question.split("\n\nYour solution")[0] in descriptions for p in lcd)


def test_converted_prompts_match_the_benchmark_prompts_byte_for_byte(lcd):
    """The teacher pool holds real benchmark training prompts (run_tests hint): our conversion of the
    same LeetCodeDataset problems must reproduce them exactly. The pool's problem_id is LeetCode's
    public number, while v0.2.0's `question_id` is not always (pool 871 is our lc902), so rows
    are matched by text here, and consumers of the pool must do the same."""
    files = sorted(_need(TEACHER_POOL).glob("prompt_*.jsonl.gz"))
    hinted = {apply_hint(p.question, train_markers("run_tests")): p for p in lcd}
    matched, id_differs = 0, 0
    for f in files:
        row = _raw_rows(f)[0]
        system, user = row["problem_messages"][0]["content"], row["problem_messages"][1]["content"]
        assert system == SYSTEM_PROMPT
        if user in hinted:
            matched += 1
            id_differs += hinted[user].id != f"lc{row['problem_id']}"
    assert matched >= 20, f"only {matched} of {len(files)} teacher-pool prompts reproduced"
    assert id_differs >= 1


def test_canonical_solutions_pass_converted_tests_with_our_setup_code(benchmark, lcd):
    """Our SETUP_CODE stands in for the benchmark's: a sample of canonical solutions (including
    every linked-list/tree-helper kind) passes its converted tests in a fresh interpreter.
    Measured on all 1,375 medium+hard rows: 1,374 pass (word-ladder-ii's expected order differs)."""
    rng = random.Random(0)
    helper = [p for p in lcd if any("is_same_" in t for t in p.tests)]
    plain = [p for p in lcd if is_medium_or_hard(p) and p not in helper and p.id != "lc126"]
    sample = rng.sample(helper, 4) + rng.sample(plain, 8) + rng.sample(benchmark, 3)
    for p in sample:
        program = "\n\n".join([SETUP_CODE, p.canonical_solution, *p.tests, "print('__ALL_OK__')"])
        done = subprocess.run(
            [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
        )
        assert "__ALL_OK__" in done.stdout, (p.id, done.stderr[-500:])


# -- SETUP_CODE ------------------------------------------------------------------------------------


def test_setup_code_defines_the_benchmark_names_with_the_same_behaviour(benchmark):
    ours, theirs = {}, {}
    exec(SETUP_CODE, ours)
    exec(benchmark[0].setup_code, theirs)
    assert set(ours) == set(theirs)
    assert ours["pow"] is theirs["pow"]  # wildcard import order kept: math.pow wins
    for values in ([], [1], [1, 2, 3], [5, 5]):
        for other in ([], [1], [1, 2, 3], [1, 2]):
            got = ours["is_same_list"](ours["list_node"](values), ours["list_node"](other))
            want = theirs["is_same_list"](theirs["list_node"](values), theirs["list_node"](other))
            assert got == want == (values == other)
    trees = ([], [1], [1, None, 2], [3, 9, 20, None, None, 15, 7], [1, 2], [1, None, 2, 3])
    for a in trees:
        for b in trees:
            got = ours["is_same_tree"](ours["tree_node"](a), ours["tree_node"](b))
            want = theirs["is_same_tree"](theirs["tree_node"](a), theirs["tree_node"](b))
            assert got == want == (a == b), (a, b)
    assert ours["inf"] == float("inf")


# -- format detection and errors ------------------------------------------------------------------


def _lcd_row(qid: int = 1, difficulty: str = "Medium") -> dict:
    return {
        "task_id": f"task-{qid}",
        "entry_point": "Solution().addOne",
        "completion": "class Solution:\n    def addOne(self, x: int) -> int:\n        return x + 1\n",
        "test": "def check(candidate):\n    assert candidate(x = 1) == 2\n    assert candidate(\n        x = [\n 3][0]) == 4\n",
        "prompt": "",
        "meta": {
            "question_id": qid,
            "difficulty": difficulty,
            "question_title": "Add one to x.\n",
            "lang_code": "class Solution:\n    def addOne(self, x: int) -> int:",
        },
    }


def _write(path: Path, rows: list[dict], gz: bool) -> Path:
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def test_gzip_is_detected_by_magic_bytes_not_suffix(tmp_path):
    rows = [_lcd_row(1), _lcd_row(2, "Hard")]
    plain_named_gz = _write(tmp_path / "a.jsonl.gz", rows, gz=False)
    gz_named_plain = _write(tmp_path / "b.jsonl", rows, gz=True)
    a, b = load_problems(plain_named_gz), load_problems(gz_named_plain)
    assert a == b and [p.id for p in a] == ["lc1", "lc2"]


def test_leetcodedataset_row_conversion(tmp_path):
    (p,) = load_problems(_write(tmp_path / "one.jsonl", [_lcd_row(7)], gz=False))
    assert p.id == "lc7" and p.func_name == "addOne" and p.difficulty == "medium"
    assert p.tests == (
        "assert Solution().addOne(x=1) == 2",
        "assert Solution().addOne(x=[3][0]) == 4",
    )
    assert p.question == format_question("Add one to x.", "addOne", p.starter_code)
    assert p.meta == {"task_id": "task-7", "question_id": 7}


def test_hub_schema_rows_convert_too():
    """The hub's newer schema keeps question_id, difficulty, description and starter at top level."""
    row = _lcd_row(9)
    meta = row.pop("meta")
    row.update(
        question_id=9,
        difficulty="Hard",
        problem_description=meta["question_title"],
        starter_code=meta["lang_code"],
    )
    p = problem_from_leetcodedataset(row)
    assert (p.id, p.difficulty, p.func_name) == ("lc9", "hard", "addOne")


def test_unknown_format_names_line_and_keys(tmp_path):
    path = _write(tmp_path / "x.jsonl", [_lcd_row(1), {"foo": 1, "bar": 2}], gz=False)
    with pytest.raises(
        ValueError, match=r"x\.jsonl:2: unknown problem format; keys found: \['bar', 'foo'\]"
    ):
        load_problems(path)


def test_bad_files_get_clear_errors(tmp_path, benchmark):
    bench_row = to_benchmark_row(benchmark[0])
    mixed = _write(tmp_path / "mixed.jsonl", [bench_row, _lcd_row(1)], gz=False)
    with pytest.raises(ValueError, match="mixed.jsonl:2: row is in leetcodedataset format"):
        load_problems(mixed)
    dup = _write(tmp_path / "dup.jsonl", [_lcd_row(1), _lcd_row(1)], gz=False)
    with pytest.raises(ValueError, match="'lc1' occurs more than once"):
        load_problems(dup)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(_lcd_row(1)) + "\n{not json\n")
    with pytest.raises(ValueError, match="broken.jsonl:2: not valid JSON"):
        load_problems(broken)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="no problems found"):
        load_problems(empty)
    with pytest.raises(FileNotFoundError, match="problem file not found"):
        load_problems(tmp_path / "missing.jsonl")
    no_anchor = dict(bench_row, question="PROBLEM:\nno anchor here")
    with pytest.raises(ValueError, match="exactly once"):
        load_problems(_write(tmp_path / "anchor.jsonl", [no_anchor], gz=False))


def test_check_to_asserts_rewrites_helpers_and_rejects_other_statements():
    src = (
        "def check(candidate):\n"
        "    assert is_same_list(candidate(head = list_node([1,2])), list_node([2,1]))\n"
        "    assert candidate(head = None) is None or True\n"
    )
    assert check_to_asserts(src, "reverseList") == (
        "assert is_same_list(Solution().reverseList(head=list_node([1, 2])), list_node([2, 1]))",
        "assert Solution().reverseList(head=None) is None or True",
    )
    with pytest.raises(ValueError, match="only asserts convert"):
        check_to_asserts("def check(candidate):\n    x = candidate(1)\n", "m")
    with pytest.raises(ValueError, match="def check"):
        check_to_asserts("def verify(candidate):\n    assert candidate(1)\n", "m")


# -- round trips -----------------------------------------------------------------------------------


def test_save_and_reload_round_trip(tmp_path, benchmark, lcd):
    from vgrout.env.toy_problems import generate_toy

    toy = generate_toy(seed=1, n_train=20, n_test=5)
    for name, problems in (
        ("bench.jsonl", benchmark[:5]),
        ("lcd.jsonl.gz", [p for p in lcd if is_medium_or_hard(p)][:20]),
        ("toy.jsonl", toy.train + toy.test),
    ):
        back = load_problems(save_problems(problems, tmp_path / name))
        assert back == problems
        assert [p.meta for p in back] == [p.meta for p in problems]


# -- filters and splits ----------------------------------------------------------------------------


def _fake(pid: str, difficulty: str = "medium") -> Problem:
    return Problem(pid, HINT_ANCHOR, "f", "", "", ("assert True",), "", difficulty, "toy")


def test_is_medium_or_hard():
    assert [is_medium_or_hard(_fake("a", d)) for d in ("easy", "medium", "hard", "Hard")] == [
        False,
        True,
        True,
        True,
    ]


def test_split_by_id_is_seeded_disjoint_and_order_free():
    problems = [_fake(f"lc{i}") for i in range(50)]
    val, test = split_by_id(problems, 10, seed=0)
    assert len(val) == 10 and len(test) == 40
    assert not {p.id for p in val} & {p.id for p in test}
    assert {p.id for p in val + test} == {p.id for p in problems}
    shuffled = problems[::-1]
    assert split_by_id(shuffled, 10, seed=0) == (val, test)
    assert split_by_id(problems, 10, seed=1)[0] != val
    with pytest.raises(ValueError, match="n_val=51"):
        split_by_id(problems, 51, seed=0)
    with pytest.raises(ValueError, match="more than once"):
        split_by_id(problems + problems[:1], 5, seed=0)


def test_hub_loader_explains_the_missing_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(ImportError, match=r"vgrout\[hub\]"):
        load_hf_leetcodedataset()
