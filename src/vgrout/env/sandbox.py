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
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vgrout.env import _zygote

__all__ = [
    "Isolation",
    "Job",
    "Limits",
    "Result",
    "SandboxError",
    "SandboxPool",
    "bench_sandbox",
    "isolation",
    "run",
]

LEVELS = ("namespaces", "userns", "basic")


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the program): setup, isolation check, or a dead worker."""


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 10.0  # wall clock for the whole job; the whole process tree is killed after
    cpu_s: int = 10  # RLIMIT_CPU (SIGXCPU at cpu_s, SIGKILL one second later)
    memory_mb: int = 1024  # RLIMIT_AS
    nproc: int = 64  # RLIMIT_NPROC (processes of the sandbox uid)
    fsize_mb: int = 16  # RLIMIT_FSIZE
    nofile: int = 64  # RLIMIT_NOFILE
    output_bytes: int = 1 << 20  # cap for each of stdout, stderr, report (excess is dropped)

    def __post_init__(self) -> None:
        for name in ("timeout_s", "cpu_s", "memory_mb", "nproc", "fsize_mb", "nofile"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"Limits.{name} must be a positive number, got {value!r}")
        if self.nofile < 8:
            raise ValueError(f"Limits.nofile must be >= 8 (stdio + report pipe), got {self.nofile}")
        if self.memory_mb < 64:
            raise ValueError(
                f"Limits.memory_mb must be >= 64 for an interpreter, got {self.memory_mb}"
            )
        if self.output_bytes < 0:
            raise ValueError(f"Limits.output_bytes must be >= 0, got {self.output_bytes}")


@dataclass(frozen=True)
class Job:
    program: str  # trusted harness source, executed as __main__ in the sandbox
    stdin: bytes = b""
    limits: Limits = Limits()
    collect_files: bool = False  # return the regular top-level files of the cwd after the run

    def __post_init__(self) -> None:
        if not isinstance(self.program, str):
            raise TypeError(
                f"Job.program must be str source code, got {type(self.program).__name__}"
            )
        if not isinstance(self.stdin, bytes | bytearray):
            raise TypeError(f"Job.stdin must be bytes, got {type(self.stdin).__name__}")
        if not isinstance(self.limits, Limits):
            raise TypeError(f"Job.limits must be a Limits, got {type(self.limits).__name__}")


@dataclass(frozen=True)
class Result:
    exit_code: int | None  # None when killed by a signal or timed out
    signal: int | None
    timed_out: bool
    stdout: bytes
    stderr: bytes
    report: bytes  # bytes the program wrote to fd 3
    files: dict[str, bytes] = field(default_factory=dict)
    truncated: bool = False  # any stream (or collected file) hit its cap
    wall_s: float = 0.0


@dataclass(frozen=True)
class Isolation:
    level: str  # "namespaces", "userns" or "basic"
    description: str  # one paragraph: what is enforced on this machine
    pid_namespace: bool = False
    net_namespace: bool = False
    mount_namespace: bool = False
    separate_uid: bool = False
    memory_cgroup: bool = False
    hidden_paths: tuple[str, ...] = ()

    @property
    def contains_signals(self) -> bool:
        """`os.kill(-1, 9)` in the program cannot reach any process outside the job."""
        return self.pid_namespace or self.separate_uid

    @property
    def contains_fork_bomb(self) -> bool:
        """RLIMIT_NPROC binds a uid of its own and the job's processes die with it."""
        return self.separate_uid or (self.level == "userns" and os.geteuid() != 0)


# ---------------------------------------------------------------- one worker process

_BOOT = """\
import os, sys
line = b""
while not line.endswith(b"\\n"):
    c = os.read(0, 1)
    if not c:
        raise SystemExit(1)
    line += c
sys.path.insert(0, line[:-1].decode())
import vgrout.env._zygote as z
z.main()
"""

_SRC_DIR = str(Path(__file__).resolve().parents[2])  # the directory that holds `vgrout/`
_SYSTEM_DIRS = {"/", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc", "/dev", "/proc", "/sys"}


def _worker_env() -> dict[str, str]:
    # nothing of the caller's environment reaches the worker (and so nothing reaches the program)
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": "/",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def default_hidden_paths() -> list[str]:
    """The caller's cwd and the source checkout vgrout runs from (when it is one)."""
    hidden = []
    with contextlib.suppress(OSError):  # the cwd may have been deleted
        hidden.append(os.getcwd())
    src = Path(_SRC_DIR)
    if src.name == "src" and (src.parent / "pyproject.toml").exists():
        hidden.append(str(src.parent))
    return [p for p in (os.path.realpath(h) for h in hidden) if p not in _SYSTEM_DIRS]


class _MemoryCgroup:
    """A memory cgroup (v1 or v2) holding one worker and its jobs, so that a job's processes
    together cannot take more than a fixed amount of RAM (RLIMIT_AS is per process). Best effort:
    `create` returns None where cgroups are not writable (e.g. not root)."""

    def __init__(self, path: Path, limit_file: str):
        self.path = path
        self.limit_file = limit_file
        self.limit: int | None = None

    @classmethod
    def create(cls, pid: int) -> _MemoryCgroup | None:
        if os.geteuid() != 0:
            return None
        for base, limit_file in _memory_cgroup_parents():
            _remove_stale_cgroups(base)
            path = base / f"vgrout-sandbox-{pid}"
            try:
                path.mkdir(exist_ok=True)
                (path / "cgroup.procs").write_text(str(pid))
                return cls(path, limit_file)
            except OSError:
                with contextlib.suppress(OSError):
                    path.rmdir()
        return None

    def set_limit(self, nbytes: int) -> None:
        if nbytes != self.limit:
            (self.path / self.limit_file).write_text(str(nbytes))
            self.limit = nbytes

    def remove(self) -> None:
        for _ in range(50):  # the kernel empties a cgroup asynchronously after its tasks die
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.02)


def _remove_stale_cgroups(base: Path) -> None:
    """Cgroups of workers that died with a killed caller: empty, and their pid is gone."""
    for stale in base.glob("vgrout-sandbox-*"):
        try:
            os.kill(int(stale.name.rsplit("-", 1)[1]), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                stale.rmdir()  # fails harmlessly while processes remain inside
        except (ValueError, OSError):
            pass


def _memory_cgroup_parents() -> list[tuple[Path, str]]:
    """Directories where a child memory cgroup of our own may be created, v1 first."""
    found = []
    with contextlib.suppress(OSError):
        membership = Path("/proc/self/cgroup").read_text().splitlines()
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
        for line in membership:
            _, controllers, rel = line.split(":", 2)
            for mount in mounts:
                fields = mount.split()
                point, fstype = fields[4], fields[fields.index("-") + 1]
                options = fields[-1].split(",")
                if (
                    controllers
                    and "memory" in controllers.split(",")
                    and fstype == "cgroup"
                    and "memory" in options
                ):
                    found.append((Path(point) / rel.lstrip("/"), "memory.limit_in_bytes"))
                elif not controllers and fstype == "cgroup2":
                    here = Path(point) / rel.lstrip("/")
                    enabled = (here / "cgroup.subtree_control").read_text().split()
                    if "memory" in enabled:
                        found.append((here, "memory.max"))
    return [(p, f) for p, f in found if p.is_dir()]


def job_memory_bytes(limits: Limits) -> int:
    """Memory cap for all processes of a job together, plus the worker and the job's tmpfs."""
    return (2 * limits.memory_mb + 128) << 20


class _Worker:
    """A zygote subprocess and the framed-pickle conversation with it."""

    def __init__(self, level: str | None, hide_paths: Sequence[str], hide_defaults: Sequence[str]):
        self.level = level
        self.hide_paths = list(hide_paths)
        self.hide_defaults = list(hide_defaults)
        self.proc: subprocess.Popen | None = None
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (the worker's stderr, kept open)
        self.facts: dict = {}
        self.cgroup: _MemoryCgroup | None = None

    def spawn(self) -> None:
        self.log.seek(0)
        self.log.truncate()
        self.proc = subprocess.Popen(
            [sys.executable, "-s", "-c", _BOOT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=_worker_env(),
            cwd="/",
            close_fds=True,
            start_new_session=True,
        )
        self.cgroup = _MemoryCgroup.create(self.proc.pid)
        with contextlib.suppress(OSError):  # the OOM killer should pick model code, not the worker
            Path(f"/proc/{self.proc.pid}/oom_score_adj").write_text("-500")
        config = {
            "level": self.level,
            "hide_paths": self.hide_paths,
            "hide_defaults": self.hide_defaults,
            "exclude_trees": [_SRC_DIR],
        }
        os.write(self.proc.stdin.fileno(), (_SRC_DIR + "\n").encode())
        _zygote.write_msg(self.proc.stdin.fileno(), config)

    def await_ready(self, timeout: float = 60.0) -> dict:
        reply = self._receive(time.monotonic() + timeout)
        if "error" in reply:
            self.kill()
            raise SandboxError(f"sandbox worker could not start:\n{reply['error']}")
        self.facts = {**reply["ready"], "memory_cgroup": self.cgroup is not None}
        return self.facts

    def start(self) -> None:
        """Spawn, wait for the worker's isolation, and check it with the probe."""
        self.spawn()
        self.await_ready()
        _verify(self)

    def call(self, job: Job) -> Result:
        if self.proc is None or self.proc.poll() is not None:
            self.start()  # first use, or the previous worker died
        return self.exchange(job)

    def exchange(self, job: Job) -> Result:
        if self.cgroup is not None:
            self.cgroup.set_limit(job_memory_bytes(job.limits))
        message = {
            "program": job.program,
            "stdin": bytes(job.stdin),
            "limits": asdict(job.limits),
            "collect_files": job.collect_files,
        }
        try:
            _zygote.write_msg(self.proc.stdin.fileno(), message)
        except BrokenPipeError:
            self.kill()
            raise SandboxError(f"sandbox worker died:\n{self._log_tail()}") from None
        # the worker enforces the job's timeout itself; this only guards against a hung worker
        reply = self._receive(time.monotonic() + job.limits.timeout_s + 30.0)
        if "error" in reply:
            raise SandboxError(reply["error"])
        return Result(**reply)

    def _receive(self, deadline: float) -> dict:
        fd = self.proc.stdout.fileno()
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(left, 0))
        reply = _zygote.read_msg(fd) if ready else None
        if reply is None:
            why = "stopped answering" if not ready else "died"
            self.kill()
            raise SandboxError(f"sandbox worker {why}:\n{self._log_tail()}")
        return reply

    def _log_tail(self) -> str:
        self.log.seek(0)
        return self.log.read()[-4000:].decode(errors="replace")

    def kill(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(OSError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                pipe.close()
        self.proc = None
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None

    def close(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()  # EOF: the worker exits after its current job
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
            self.kill()
        self.log.close()


# A harmless program that reports what the sandbox looks like from inside.
PROBE = r"""
import errno, json, os, socket
facts = {"uid": os.getuid(), "pid": os.getpid(), "ppid": os.getppid(), "cwd": os.getcwd()}
facts["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
try:
    if os.getppid() == 0:
        facts["signal_parent"] = "invisible"  # PID-namespace init: the parent is outside
    else:
        os.kill(os.getppid(), 0)
        facts["signal_parent"] = "allowed"
except OSError as exc:
    facts["signal_parent"] = errno.errorcode.get(exc.errno, str(exc.errno))
try:
    socket.create_connection(("127.0.0.1", 9), timeout=1).close()
    facts["loopback"] = "connected"
except OSError as exc:
    facts["loopback"] = errno.errorcode.get(exc.errno, str(exc.errno))
facts["tmp"] = sorted(os.listdir("/tmp"))
os.write(3, json.dumps(facts).encode())
"""


def _verify(worker: _Worker) -> None:
    """Run the probe and refuse the worker if the sandbox does not look as its level promises."""
    facts = worker.facts
    probe = worker.exchange(Job(PROBE, limits=Limits(timeout_s=10)))
    try:
        seen = json.loads(probe.report)
    except ValueError:
        worker.kill()
        raise SandboxError(f"isolation probe failed: {probe.stderr[-2000:]!r}") from None
    problems = []
    if facts["pid_namespace"] and not set(seen["pids"]) <= {1, seen["pid"]}:
        problems.append(f"PID namespace leaks processes: {seen['pids'][:10]}")
    if facts["separate_uid"] and (seen["uid"] in (0, os.getuid()) or seen["uid"] != facts["uid"]):
        problems.append(f"program runs as uid {seen['uid']}, expected {facts['uid']}")
    if seen["signal_parent"] == "allowed" and (facts["separate_uid"] or facts["pid_namespace"]):
        problems.append(f"program may signal its parent ({seen['signal_parent']})")
    if facts["net_namespace"] and seen["loopback"] == "connected":
        problems.append("network namespace lets the program reach 127.0.0.1")
    # /tmp holds the job dir plus the top folders of Python trees re-bound there (a venv in /tmp)
    allowed_tmp = {os.path.basename(_zygote.JOB_DIR), *facts.get("tmp_tree_tops", [])}
    if facts["mount_namespace"] and not (
        set(seen["tmp"]) <= allowed_tmp and os.path.basename(_zygote.JOB_DIR) in seen["tmp"]
    ):
        problems.append(f"/tmp is not private: {seen['tmp'][:10]}")
    if problems:
        worker.kill()
        raise SandboxError("isolation check failed: " + "; ".join(problems))


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
        self._workers = [_Worker(level, explicit, default_hidden_paths()) for _ in range(count)]
        self._lock = threading.Lock()
        self._owner = os.getpid()
        self._closed = False
        try:
            for worker in self._workers:
                worker.spawn()
            for worker in self._workers:
                worker.await_ready()
                _verify(worker)  # only now may the worker run model code
        except BaseException:
            self.close()
            raise
        self.facts = self._workers[0].facts

    @property
    def workers(self) -> int:
        return len(self._workers)

    def isolation(self) -> Isolation:
        return _describe(self.facts)

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

        def serve(worker: _Worker) -> None:
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


# ---------------------------------------------------------------- what is enforced


def _describe(facts: dict) -> Isolation:
    level = facts["level"]
    common = (
        "Each job runs in its own session with rlimits (CPU seconds, address space, file size, "
        "open files, core dumps off), a scrubbed environment (only PATH, LANG, HOME=cwd, "
        "PYTHONHASHSEED=0, PYTHONDONTWRITEBYTECODE), a fresh empty working directory that is "
        "removed afterwards, output capped per stream, and a wall-clock kill."
    )
    if level == "namespaces":
        text = (
            f"Level 'namespaces' (caller is root). {common} The program runs as a fresh "
            "unprivileged uid with no supplementary groups (one uid per worker, so RLIMIT_NPROC "
            "binds and jobs cannot signal each other), in new PID, network, mount, IPC and UTS "
            "namespaces: it sees only its own processes, has no network (not even loopback), "
            "cannot signal or ptrace the caller, and when it exits or times out the kernel kills "
            "every process it left behind. The filesystem is read-only except the job directory "
            "and private tmpfs /tmp, /var/tmp and /dev/shm that vanish with the job; the caller's "
            "working directory, the vgrout checkout and any hide_paths appear empty; directories "
            "the uid could not traverse (e.g. /root) are covered, with the Python installation "
            "re-mounted at its original path."
        )
    elif level == "userns":
        text = (
            f"Level 'userns' (unprivileged user namespaces). {common} The program runs in new "
            "user, PID, network, mount, IPC and UTS namespaces with all capabilities dropped: it "
            "sees only its own processes, has no network, cannot signal the caller, and leftover "
            "processes die with the job; the filesystem is read-only except the job directory "
            "and private /tmp, /var/tmp, /dev/shm, and the caller's working directory, the vgrout "
            "checkout and hide_paths appear empty. It still runs as the caller's uid outside the "
            "namespace, so RLIMIT_NPROC counts the caller's own processes too."
        )
    elif facts["separate_uid"]:
        text = (
            f"Level 'basic' (root, but namespaces are unavailable). {common} The program runs as "
            "a fresh unprivileged uid, so it cannot signal the caller and RLIMIT_NPROC binds; "
            "orphans are killed after the job. There is NO network or filesystem isolation: it "
            "can open sockets and read or write whatever that uid may, including /tmp."
        )
    else:
        text = (
            f"Level 'basic' (no namespaces available). {common} WARNING: the program runs as "
            "your own user. It can signal or kill your other processes (including the trainer), "
            "read and write your files, use the network, and RLIMIT_NPROC counts all your "
            "processes. Only run model code at this level on a machine or container you can "
            "afford to lose."
        )
    if facts.get("memory_cgroup"):
        text += (
            " A memory cgroup caps each job's processes together at 2 x memory_mb + 128 MB, and "
            "the kernel's OOM killer prefers model code over everything else."
        )
    else:
        text += (
            " Memory is limited per process only (no writable memory cgroup), so a job that "
            "forks can use up to nproc x memory_mb in total."
        )
    return Isolation(
        level=level,
        description=text,
        pid_namespace=facts["pid_namespace"],
        net_namespace=facts["net_namespace"],
        mount_namespace=facts["mount_namespace"],
        separate_uid=facts["separate_uid"],
        memory_cgroup=facts.get("memory_cgroup", False),
        hidden_paths=tuple(facts.get("hidden", ())),
    )


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
    naive_env = {**_worker_env(), "HOME": tempfile.gettempdir()}

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
