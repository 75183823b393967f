"""The sandbox's contract with its caller: a `Job` and its `Limits`, the `Result`, and the
`Isolation` each level enforces, described in plain words. No processes here (see `sandbox`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

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
    # The same program for many jobs, holding no secrets (the grading harness; the model's code
    # travels on stdin): the worker compiles it once and keeps the code object. Leave False for
    # untrusted programs: a kept program stays readable to later jobs in the worker's memory.
    shared_program: bool = False

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


# ---------------------------------------------------------------- what is enforced


def describe_isolation(facts: dict) -> Isolation:
    """The Isolation a worker reported (`facts`), with its description for that level."""
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
