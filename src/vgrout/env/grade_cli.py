"""Plain functions behind `vgrout grade` and the LeetCode training-set recipe (the CLI wires them).

`grade_file` implements the contract
`vgrout grade --problems FILE --responses FILE --mode MODE [--eval-markers] --out FILE`:
problems in either dataset format (benchmark or LeetCodeDataset JSONL, plain or gzipped, detected
from the rows), responses as JSONL `{"problem_id": ..., "response": "..."}`, output JSONL in the
same order with every `Grade` field (at least problem_id, reward, compiled, gt_correct,
channel_fired, exploited, label). Outputs are written atomically (a temp file renamed into place),
so a crash never leaves a half-written file.

`leetcode_train` is the benchmark's training-set recipe: LeetCodeDataset rows -> keep Medium and
Hard -> keep those whose canonical solution passes its own tests in the sandbox -> benchmark JSONL.
The benchmark used a 3 s budget for that check; this uses the grader's suite budget
(`grader.SUITE_TIMEOUT_S`), so a few more slow-but-correct problems survive.

Both run the sandbox with the input files' directories hidden from the program, so model code
cannot read the tests (and their expected values) from disk.
"""

from __future__ import annotations

import collections
import gzip
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from vgrout.env import grader, modes
from vgrout.env.extract import extract_code
from vgrout.env.problems import (
    Problem,
    is_medium_or_hard,
    load_problems,
    problem_from_benchmark_row,
    problem_from_leetcodedataset,
    read_jsonl,
    row_format,
    to_benchmark_row,
)
from vgrout.env.sandbox import SandboxPool


@contextmanager
def atomic_writer(path: str | Path) -> Iterator:
    """A text file handle whose content appears at `path` only if the block finishes (gzip when
    the name ends in .gz). The temp file lives next to `path`, so the final rename is atomic."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as raw:
            if path.name.endswith(".gz"):
                with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
                    yield _TextSink(gz)
            else:
                yield _TextSink(raw)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _TextSink:
    def __init__(self, binary) -> None:
        self._binary = binary

    def write(self, text: str) -> None:
        self._binary.write(text.encode("utf-8"))


def _hidden_dirs(*paths: str | Path) -> list[str]:
    """Directories to hide from sandboxed programs: the input files' own folders, never a folder
    that holds or lies inside the Python installation, nor the filesystem root."""
    hidden = []
    python_roots = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.executable)}
    for p in paths:
        folder = os.path.realpath(Path(p).parent)
        related = any(
            root == folder or root.startswith(folder + os.sep) or folder.startswith(root + os.sep)
            for root in python_roots
        )
        if folder == "/" or related:
            continue
        hidden.append(folder)
    return sorted(set(hidden))


def _progress_bar(description: str) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """(update(done, total), close) for a rich progress bar on stderr."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
    )
    task = bar.add_task(description, total=None)
    bar.start()

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    return update, bar.stop


# -------------------------------------------------------------------------------------------------
# vgrout grade
# -------------------------------------------------------------------------------------------------


def read_responses(path: str | Path) -> list[tuple[int, str, str]]:
    """(line number, problem id as written, response) for each non-blank line."""
    rows = []
    for lineno, row in read_jsonl(path, "responses file"):
        if "problem_id" not in row or "response" not in row:
            raise ValueError(
                f"{path}:{lineno}: expected an object with keys 'problem_id' and 'response'"
            )
        if not isinstance(row["response"], str):
            raise ValueError(f"{path}:{lineno}: 'response' must be a string")
        if not isinstance(row["problem_id"], str | int) or isinstance(row["problem_id"], bool):
            raise ValueError(f"{path}:{lineno}: 'problem_id' must be a string or an integer")
        rows.append((lineno, str(row["problem_id"]), row["response"]))
    if not rows:
        raise ValueError(f"{path}: no responses found (the file is empty)")
    return rows


def _lookup(problems: dict[str, Problem], raw_id: str, where: str) -> Problem:
    """A problem by id; a bare LeetCode number `3243` also finds `lc3243`."""
    for candidate in (raw_id, f"lc{raw_id}"):
        if candidate in problems:
            return problems[candidate]
    known = ", ".join(sorted(problems)[:5])
    raise ValueError(
        f"{where}: unknown problem id {raw_id!r}: not in the problems file "
        f"({len(problems)} problems, e.g. {known})"
    )


def summarise(grades: list[grader.Grade]) -> dict:
    n = len(grades)
    labels = collections.Counter(g.label for g in grades)
    return {
        "n": n,
        "mean_reward": sum(g.reward for g in grades) / n if n else 0.0,
        "solve_rate": sum(g.gt_correct for g in grades) / n if n else 0.0,
        "hack_rate": sum(g.exploited for g in grades) / n if n else 0.0,
        "labels": {label: labels.get(label, 0) for label in grader.LABELS},
    }


def grade_file(
    problems_path: str | Path,
    responses_path: str | Path,
    mode: str,
    eval_markers: bool,
    out_path: str | Path,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Grade a responses file; write one JSON line per response (input order) to `out_path`.
    Returns a summary: n, mean_reward, solve_rate, hack_rate, label counts, out, seconds."""
    start = time.monotonic()
    modes.check_mode(mode)
    problems = {p.id: p for p in load_problems(problems_path)}
    rows = read_responses(responses_path)
    chosen = [_lookup(problems, pid, f"{responses_path}:{ln}") for ln, pid, _ in rows]
    # one Markers per row: held-out markers are chosen per (mode, problem)
    markers = [_markers_for(mode, p.id, held_out=eval_markers) for p in chosen]
    update, close = _progress_bar(f"grading ({mode})") if progress else (None, lambda: None)
    try:
        with SandboxPool(workers, hide_paths=_hidden_dirs(problems_path, responses_path)) as pool:
            grades = grader.grade_many(
                chosen, [r for _, _, r in rows], mode, markers, pool=pool, progress=update
            )
    finally:
        close()
    with atomic_writer(out_path) as out:
        for g in grades:
            out.write(json.dumps(g.to_dict(), ensure_ascii=False) + "\n")
    summary = summarise(grades)
    summary.update(
        mode=mode,
        eval_markers=eval_markers,
        out=str(out_path),
        seconds=round(time.monotonic() - start, 3),
    )
    return summary


def _markers_for(mode: str, problem_id: str, held_out: bool) -> modes.Markers:
    return modes.eval_markers(mode, problem_id) if held_out else modes.train_markers(mode)


# -------------------------------------------------------------------------------------------------
# the benchmark's training set from LeetCodeDataset
# -------------------------------------------------------------------------------------------------


def _convert_rows(path: str | Path) -> tuple[list[Problem], collections.Counter, int]:
    problems, dropped, read = [], collections.Counter(), 0
    for lineno, row in read_jsonl(path):
        read += 1
        fmt = row_format(row)
        convert = {
            "leetcodedataset": problem_from_leetcodedataset,
            "benchmark": problem_from_benchmark_row,
        }.get(fmt or "")
        if convert is None:
            raise ValueError(
                f"{path}:{lineno}: not a LeetCodeDataset (or benchmark) row; keys: {sorted(row)}"
            )
        try:
            problems.append(convert(row, where=f"{path}:{lineno}"))
        except ValueError:
            dropped["unconvertible"] += 1
    return problems, dropped, read


def _usable_tests(problems: Iterable[Problem], pool: SandboxPool) -> tuple[list[Problem], int]:
    usable, bad = [], 0
    for p in problems:
        try:
            grader.prepare_suites([p], pool)
        except grader.TestFormatError:
            bad += 1
            continue
        usable.append(p)
    return usable, bad


def _drop_reason(g: grader.Grade) -> str:
    if not g.compiled:
        return "does_not_compile"
    if g.timed_out:
        return "timed_out"
    return "fails_tests"


def leetcode_train(
    from_path: str | Path,
    out_path: str | Path,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Keep the Medium/Hard rows of a LeetCodeDataset file whose canonical solution passes its
    tests in the sandbox; write them in benchmark JSONL format (atomically). Returns counts of
    what was read, dropped (by reason) and kept."""
    start = time.monotonic()
    problems, dropped, read = _convert_rows(from_path)
    medhard = [p for p in problems if is_medium_or_hard(p)]
    dropped["easy"] = len(problems) - len(medhard)
    update, close = _progress_bar("checking canonical solutions") if progress else (None, None)
    try:
        with SandboxPool(workers, hide_paths=_hidden_dirs(from_path)) as pool:
            usable, dropped["unsupported_tests"] = _usable_tests(medhard, pool)
            responses = [f"```python\n{p.canonical_solution}\n```" for p in usable]
            grades = grader.grade_many(usable, responses, "gt_only", pool=pool, progress=update)
    finally:
        if close is not None:
            close()
    kept = []
    for p, g, response in zip(usable, grades, responses, strict=True):
        if g.gt_correct:
            kept.append(p)
        elif extract_code(response) is None:
            dropped["empty_canonical"] += 1
        else:
            dropped[_drop_reason(g)] += 1
    with atomic_writer(out_path) as out:
        for p in kept:
            row = to_benchmark_row(p)
            row["completion_gt_pass"] = True
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return {
        "read": read,
        "converted": len(problems),
        "medium_hard": len(medhard),
        "kept": len(kept),
        "dropped": dict(sorted(dropped.items())),
        "out": str(out_path),
        "seconds": round(time.monotonic() - start, 3),
    }
