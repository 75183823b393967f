"""One sandbox worker, seen from the caller: the zygote subprocess (`vgrout.env._zygote`), started
from a fresh interpreter with nothing of the caller's environment, its memory cgroup, the framed
conversation with it, and the isolation probe it must pass before it may run model code."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from vgrout.env import _zygote
from vgrout.env._memory_cgroup import MemoryCgroup, job_memory_bytes
from vgrout.env.sandbox_policy import Job, Limits, Result, SandboxError

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


def worker_env() -> dict[str, str]:
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


class Worker:
    """A zygote subprocess and the framed-pickle conversation with it."""

    def __init__(self, level: str | None, hide_paths: Sequence[str], hide_defaults: Sequence[str]):
        self.level = level
        self.hide_paths = list(hide_paths)
        self.hide_defaults = list(hide_defaults)
        self.proc: subprocess.Popen | None = None
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (the worker's stderr, kept open)
        self.facts: dict = {}
        self.cgroup: MemoryCgroup | None = None

    def spawn(self) -> None:
        self.log.seek(0)
        self.log.truncate()
        self.proc = subprocess.Popen(
            [sys.executable, "-s", "-c", _BOOT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=worker_env(),
            cwd="/",
            close_fds=True,
            start_new_session=True,
        )
        self.cgroup = MemoryCgroup.create(self.proc.pid)
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
        verify_isolation(self)

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
            "shared_program": job.shared_program,
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


def verify_isolation(worker: Worker) -> None:
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
