"""Grader throughput: the sandbox pool against a naive baseline (one fresh `python -c` per program).

Both sides run exactly the same programs: the sandbox jobs `grader.grade_many` would run for a
realistic mix of responses (a third canonical solutions, a third canonical hacks for random modes,
a third wrong answers), on real benchmark problems when `../shared/data` exists next to the
repository, else on toy problems. The naive baseline runs them one after another, each in a fresh
interpreter with the job's stdin and a report file on fd 3, as the predecessor code did (no
isolation, no pool). The last line is the ratio.
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vgrout.env import grader
from vgrout.env.hacks import canonical_hack, fenced, wrong_return
from vgrout.env.modes import HACKABLE_MODES, MODES, train_markers
from vgrout.env.problems import Problem, load_problems
from vgrout.env.sandbox import Job, SandboxPool, isolation

BENCHMARK_FILE = Path("leetcode") / "leetcode_test_medhard.jsonl.gz"


def shared_data_dir() -> Path:
    """`../shared/data` relative to the repository root (this file is src/vgrout/...)."""
    return Path(__file__).resolve().parents[3].parent / "shared" / "data"


def bench_problems(source: str = "auto") -> tuple[list[Problem], str]:
    """The problems to draw from: "benchmark" (../shared/data), "toy", or "auto" (benchmark when
    the file exists, else toy)."""
    if source not in ("auto", "benchmark", "toy"):
        raise ValueError(f"source must be 'auto', 'benchmark' or 'toy', got {source!r}")
    path = shared_data_dir() / BENCHMARK_FILE
    if source == "benchmark" and not path.is_file():
        raise FileNotFoundError(f"benchmark problems not found at {path}")
    if source != "toy" and path.is_file():
        return load_problems(path), f"real benchmark problems ({path})"
    from vgrout.env.toy_problems import generate_toy

    return generate_toy(seed=0, n_train=120, n_test=0).train, "toy problems"


def _wrong_answer(problem: Problem) -> str:
    """A solution with the right signature and a constant, wrong return value."""
    return fenced(
        f"class Solution:\n    def {problem.func_name}(self, *args, **kwargs):\n"
        f"        return {wrong_return(problem)}\n"
    )


def response_mix(
    problems: list[Problem], n: int, seed: int = 0
) -> tuple[list[Problem], list[str], list[str]]:
    """n (problem, response, mode) triples: canonical / canonical hack / wrong answer, in turn."""
    rng = random.Random(seed)
    chosen, responses, modes = [], [], []
    for i in range(n):
        problem = rng.choice(problems)
        mode = rng.choice(MODES)
        kind = i % 3
        if kind == 0:
            response = fenced(problem.canonical_solution)
        elif kind == 1:
            hack_mode = rng.choice(HACKABLE_MODES)
            response = canonical_hack(problem, train_markers(hack_mode))
        else:
            response = _wrong_answer(problem)
        chosen.append(problem)
        responses.append(response)
        modes.append(mode)
    return chosen, responses, modes


def run_naive(job: Job) -> float:
    """Run one job in a fresh interpreter (stdin piped, fd 3 a temp file); wall seconds."""
    start = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="vgrout-naive-") as cwd,
        tempfile.TemporaryFile() as rep,
    ):

        def report_on_fd3() -> None:
            os.dup2(rep.fileno(), 3)

        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(
                [sys.executable, "-c", job.program],
                input=job.stdin,
                capture_output=True,
                cwd=cwd,
                timeout=job.limits.timeout_s,
                preexec_fn=report_on_fd3,  # noqa: PLW1509 - single-threaded benchmark
                check=False,
            )
    return time.monotonic() - start


def bench_grader(n: int = 500, workers: int | None = None, source: str = "auto") -> list[str]:
    """Programs per second: pool vs naive on the same programs. Prints and returns the lines; the
    last line is the speed-up ratio. `source` picks the problems (see `bench_problems`)."""
    problems, source = bench_problems(source)
    chosen, responses, modes = response_mix(problems, n)
    with SandboxPool(workers) as pool:
        grader.prepare_suites(chosen, pool)  # expected values: not part of the measurement
        jobs = grader.grading_jobs(chosen, responses, modes, pool=pool)
        start = time.monotonic()
        pool.map(jobs)
        pool_s = time.monotonic() - start
        pool_workers = pool.workers
    naive_s = sum(run_naive(job) for job in jobs)
    pool_rate, naive_rate = len(jobs) / pool_s, len(jobs) / naive_s
    lines = [
        f"grader benchmark: {n} responses on {source}; {len(jobs)} sandbox programs",
        f"isolation: {isolation().level}",
        f"pool ({pool_workers} workers): {pool_rate:.1f} programs/s ({pool_s:.1f} s)",
        f"naive (fresh python -c, sequential): {naive_rate:.1f} programs/s ({naive_s:.1f} s)",
        f"speed-up: {pool_rate / naive_rate:.1f}x (pool / naive)",
    ]
    for line in lines:
        print(line)
    return lines
