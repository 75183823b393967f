"""A memory cgroup per sandbox worker: all processes of a job together stay under one cap.

RLIMIT_AS bounds each process; a job that forks could still use nproc x memory_mb. Where the caller
may write cgroups (root), each worker and its jobs live in a cgroup of their own whose limit is set
per job (`job_memory_bytes`). Best effort: without a writable cgroup there is none.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from vgrout.env.sandbox_policy import Limits


class MemoryCgroup:
    """A memory cgroup (v1 or v2) holding one worker and its jobs, so that a job's processes
    together cannot take more than a fixed amount of RAM (RLIMIT_AS is per process). Best effort:
    `create` returns None where cgroups are not writable (e.g. not root)."""

    def __init__(self, path: Path, limit_file: str):
        self.path = path
        self.limit_file = limit_file
        self.limit: int | None = None

    @classmethod
    def create(cls, pid: int) -> MemoryCgroup | None:
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
