"""Process sandbox and worker pool for untrusted model code (torch-free).

A `Job` is a trusted harness `program` (it `exec`s the untrusted code itself) run as `__main__`
with fd 0 = the job's stdin, fd 1/2 captured, fd 3 = the harness's report pipe, every other fd
closed, and cwd = a fresh empty directory removed afterwards.

Each pool slot is a long-lived worker ("zygote", `vgrout.env._zygote`): a fresh interpreter that
pre-imports the stdlib modules graders use and forks one sandboxed child per job, so a job costs a
fork instead of an interpreter start. What the sandbox enforces depends on the machine; see
`isolation()`. When the caller is root the child runs as a fresh unprivileged uid inside new PID,
network, mount, IPC and UTS namespaces with a read-only view of the filesystem; the worker checks
this with a harmless probe before it accepts any job and refuses to run if the probe fails.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from vgrout.env._memory_cgroup import job_memory_bytes
from vgrout.env._sandbox_worker import (
    PROBE,
    Worker,
    default_hidden_paths,
    verify_isolation,
    worker_env,
)
from vgrout.env.sandbox_policy import (
    LEVELS,
    Isolation,
    Job,
    Limits,
    Result,
    SandboxError,
    describe_isolation,
)

__all__ = [
    "LEVELS",
    "PROBE",
    "Isolation",
    "Job",
    "Limits",
    "Result",
    "SandboxError",
    "SandboxPool",
    "bench_sandbox",
    "isolation",
    "job_memory_bytes",
    "run",
]

# ---------------------------------------------------------------- the pool


class SandboxPool:
    """Long-lived sandbox workers; `map` runs jobs concurrently and returns results in input order.

    `hide_paths` are covered by empty read-only directories inside the sandbox (in addition to the
    caller's cwd and the vgrout source checkout). `level` forces an isolation level (default: the
    strongest this machine allows).
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        hide_paths: Sequence[str | os.PathLike] = (),
        level: str | None = None,
    ):
        if level is not None and level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS} or None, got {level!r}")
        count = workers if workers is not None else (os.cpu_count() or 1)
        if count < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        explicit = [os.path.realpath(os.fspath(p)) for p in hide_paths]
        self._workers = [Worker(level, explicit, default_hidden_paths()) for _ in range(count)]
        self._lock = threading.Lock()
        self._owner = os.getpid()
        self._closed = False
        try:
            for worker in self._workers:
                worker.spawn()
            for worker in self._workers:
                worker.await_ready()
                verify_isolation(worker)  # only now may the worker run model code
        except BaseException:
            self.close()
            raise
        self.facts = self._workers[0].facts

    @property
    def workers(self) -> int:
        return len(self._workers)

    def isolation(self) -> Isolation:
        return describe_isolation(self.facts)

    def map(
        self, jobs: Sequence[Job], progress: Callable[[int], None] | None = None
    ) -> list[Result]:
        """Run every job; `progress(k)` is called in this thread after the k-th completion."""
        if self._closed:
            raise SandboxError("SandboxPool.map after close()")
        if os.getpid() != self._owner:
            raise SandboxError("a SandboxPool cannot be used from a forked copy of its process")
        jobs = list(jobs)
        for job in jobs:
            if not isinstance(job, Job):
                raise TypeError(f"SandboxPool.map wants Job objects, got {type(job).__name__}")
        with self._lock:
            return self._map(jobs, progress)

    def _map(self, jobs: list[Job], progress: Callable[[int], None] | None) -> list[Result]:
        import queue

        results: list[Result | None] = [None] * len(jobs)
        todo: queue.SimpleQueue[int] = queue.SimpleQueue()
        for i in range(len(jobs)):
            todo.put(i)
        done: queue.SimpleQueue = queue.SimpleQueue()
        stop = threading.Event()

        def serve(worker: Worker) -> None:
            while not stop.is_set():
                try:
                    i = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    done.put((i, worker.call(jobs[i])))
                except BaseException as exc:  # hand it to the caller's thread
                    done.put((i, exc))
                    return

        threads = [
            threading.Thread(target=serve, args=(w,), daemon=True)
            for w in self._workers[: max(1, min(len(self._workers), len(jobs)))]
        ]
        for thread in threads:
            thread.start()
        try:
            for completed in range(1, len(jobs) + 1):
                i, outcome = done.get()
                if isinstance(outcome, BaseException):
                    raise outcome
                results[i] = outcome
                if progress is not None:
                    progress(completed)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        return results  # type: ignore[return-value]

    def close(self) -> None:
        self._closed = True
        for worker in self._workers:
            worker.close()

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True) and os.getpid() == getattr(self, "_owner", None):
            with contextlib.suppress(Exception):
                self.close()


_default: dict[str, SandboxPool] = {}
_default_lock = threading.Lock()


def _default_pool() -> SandboxPool:
    with _default_lock:
        pool = _default.get("pool")
        if pool is None or pool._owner != os.getpid():
            pool = _default["pool"] = SandboxPool(1)
        return pool


@atexit.register
def _close_default() -> None:
    pool = _default.pop("pool", None)
    if pool is not None and pool._owner == os.getpid():
        pool.close()


def run(job: Job, *, hide_paths: Sequence[str | os.PathLike] = ()) -> Result:
    """Run one job in a fresh sandbox (forked from a shared worker, or a dedicated one when
    `hide_paths` is given)."""
    if hide_paths:
        with SandboxPool(1, hide_paths=hide_paths) as pool:
            return pool.map([job])[0]
    return _default_pool().map([job])[0]


def isolation() -> Isolation:
    """What the sandbox enforces on this machine (starts the shared worker, which is probed)."""
    return _default_pool().isolation()


# ---------------------------------------------------------------- benchmark

_BENCH_PROGRAM = """\
import collections, heapq, json, os
class Solution:
    def topKFrequent(self, nums, k):
        return [x for x, _ in collections.Counter(nums).most_common(k)]
nums = [(i * 7919 + {seed}) % 23 for i in range(200)]
got = Solution().topKFrequent(nums, 3)
want = heapq.nlargest(3, collections.Counter(nums), key=collections.Counter(nums).get)
os.write(3, json.dumps({{"passed": sorted(got) == sorted(want)}}).encode())
"""


def bench_sandbox(n: int = 200, workers: int | None = None) -> dict:
    """Programs/second of (a) one `python -c` subprocess per program (no isolation) and (b) the
    pool, both with `workers` concurrent programs; pool start-up is excluded and reported."""
    workers = workers or os.cpu_count() or 1
    programs = [_BENCH_PROGRAM.format(seed=i) for i in range(n)]
    naive_env = {**worker_env(), "HOME": tempfile.gettempdir()}

    def naive(program: str) -> bool:
        with tempfile.TemporaryDirectory() as cwd:
            r, w = os.pipe()
            done = subprocess.run(
                [sys.executable, "-c", f"import os; os.dup2({w}, 3)\n" + program],
                capture_output=True,
                cwd=cwd,
                env=naive_env,
                pass_fds=(w,),
                timeout=60,
            )
            os.close(w)
            report = os.read(r, 1 << 16)
            os.close(r)
        return done.returncode == 0 and b'"passed": true' in report

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as executor:
        naive_ok = sum(executor.map(naive, programs))
    naive_s = time.perf_counter() - start

    start = time.perf_counter()
    with SandboxPool(workers) as pool:
        startup_s = time.perf_counter() - start
        start = time.perf_counter()
        results = pool.map([Job(p, limits=Limits(timeout_s=30)) for p in programs])
        pool_s = time.perf_counter() - start
        level = pool.facts["level"]
    pool_ok = sum(r.exit_code == 0 and b'"passed": true' in r.report for r in results)
    return {
        "n": n,
        "workers": workers,
        "level": level,
        "naive_per_s": n / naive_s,
        "pool_per_s": n / pool_s,
        "speedup": naive_s / pool_s,
        "pool_startup_s": startup_s,
        "pool_ms_per_job": 1000 * pool_s * workers / n,
        "naive_ok": naive_ok,
        "pool_ok": pool_ok,
    }
