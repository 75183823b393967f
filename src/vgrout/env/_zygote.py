"""Sandbox worker ("zygote"): a fresh interpreter that forks one sandboxed child per job.

Started by `vgrout.env.sandbox` with `python -c <boot>` (never forked from the caller, which may
have torch loaded). It pre-imports the stdlib modules graders use, builds the isolation once, then
serves jobs over a pipe: one framed pickle in, one framed pickle out.

Process layout per job, at level "namespaces" (caller is root) or "userns" (unprivileged user
namespaces):

    zygote   (trusted; own mount + network namespace, read-only filesystem view; caller's uid)
      `- program  (pid 1 of a fresh PID namespace with its own mount/IPC/UTS namespaces and
                   /proc; fresh tmpfs /tmp, /var/tmp, /dev/shm; unprivileged uid; rlimits;
                   fds 0-3 only; cwd /tmp/job)

The program being the namespace's init is what makes cleanup exact: when it exits (or the zygote
kills it at the wall timeout) the kernel kills every process it left behind, so orphans, setsid
daemons and fork bombs end with the job. One visible difference from a plain process: signals it
sends to itself with the default action are ignored (init protection); nothing else changes.
At level "basic" the zygote forks the program directly, in its own session, and kills its process
group plus every orphan reparented to the zygote (it is a child subreaper).

This module is the worker itself: the framed protocol with the caller, the isolation levels, and
one job's lifecycle. Its parts: the filesystem view (`_sandbox_view`), the job's own process from
fork to exit (`_sandbox_child`), and the job's pipes, files and leftovers (`_job_io`). Every vgrout
module the zygote needs is imported here, at start-up: once the view is built, the vgrout checkout
may be hidden.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import signal
import struct
import sys
import tempfile
import time
import traceback

from vgrout.env import _sandbox_linux as linux
from vgrout.env._job_io import Pump, collect_files, kill_leftovers, pidfd_open, remove_tree
from vgrout.env._sandbox_child import child_env, child_main
from vgrout.env._sandbox_view import build_view, make_readonly, python_trees, within

__all__ = [
    "JOB_DIR",
    "PRELOAD",
    "UID_BASE",
    "Zygote",
    "build_view",
    "child_env",
    "collect_files",
    "main",
    "make_readonly",
    "python_trees",
    "read_exact",
    "read_msg",
    "write_msg",
]

# Stdlib modules graders and solutions commonly import: loaded once here, shared by every job.
PRELOAD = (  # noqa: SIM905 (a word list reads better than 60 quoted strings)
    "abc array encodings.idna ast atexit base64 binascii bisect builtins calendar cmath "
    "codecs collections collections.abc contextlib copy csv dataclasses datetime decimal "
    "difflib enum errno fractions functools gc hashlib heapq inspect io itertools json "
    "keyword linecache locale math numbers operator pprint queue random re reprlib secrets "
    "select signal statistics socket string struct textwrap threading time timeit traceback "
    "types typing unicodedata uuid warnings weakref zlib"
).split()

SHARED_PROGRAMS = 16  # compiled shared programs a worker keeps (the harness is one)
SHARED_PROGRAM_CHARS = 1 << 20
JOB_DIR = "/tmp/job"  # the program's cwd at the namespace levels (a fresh tmpfs per job)
UID_BASE = 2_000_000_000  # sandbox uid = UID_BASE + zygote pid: unique among live zygotes
_HEADER = struct.Struct("!Q")


# ---------------------------------------------------------------- framing (shared with parent)


def write_msg(fd: int, obj: object) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def read_exact(fd: int, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, n - got)
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_msg(fd: int) -> object | None:
    header = read_exact(fd, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    body = read_exact(fd, size)
    return None if body is None else pickle.loads(body)


# ---------------------------------------------------------------- the zygote


def _count_processes(uid: int) -> int:
    count = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                count += os.stat(f"/proc/{name}").st_uid == uid
    return count


class Zygote:
    """State built once per worker: level, sandbox uid, the filesystem view."""

    def __init__(self, config: dict):
        self.requested = config.get("level") or "auto"
        self.hide = [os.path.realpath(p) for p in config.get("hide_paths", ())]
        self.soft_hide = [os.path.realpath(p) for p in config.get("hide_defaults", ())]
        self.exclude = [os.path.realpath(p) for p in config.get("exclude_trees", ())]
        self.level = "basic"
        self.uid = self.gid = os.getuid()
        self.drop_uid = False
        self.pid_ns_fd: int | None = None
        self.notes: list[str] = []
        self.covered: list[str] = []
        self.sys_path = [p for p in sys.path if not any(within(p, ex) for ex in self.exclude)]
        self.nproc_base = 0
        self.shared_code: dict[str, object] = {}  # program text -> code object, oldest first

    # -- setup

    def setup(self) -> dict:
        root = os.geteuid() == 0
        order = {"auto": ["namespaces", "userns", "basic"] if root else ["userns", "basic"]}
        for level in order.get(self.requested, [self.requested]):
            try:
                getattr(self, f"_setup_{level}")()
                self.level = level
                break
            except OSError as exc:
                self.notes.append(f"{level} unavailable: {exc}")
                if self.requested != "auto":
                    raise
        return self.facts()

    def _setup_namespaces(self) -> None:
        if os.geteuid() != 0:
            raise OSError(errno.EPERM, "level 'namespaces' needs root; use 'userns'")
        linux.unshare(linux.CLONE_NEWNS | linux.CLONE_NEWNET)
        self._private_view(other_uid=True)
        self.uid = self.gid = UID_BASE + os.getpid()
        self.drop_uid = True
        self.pid_ns_fd = os.open("/proc/self/ns/pid", os.O_RDONLY)

    def _setup_userns(self) -> None:
        uid, gid = os.geteuid(), os.getegid()
        linux.unshare(
            linux.CLONE_NEWUSER | linux.CLONE_NEWNS | linux.CLONE_NEWNET | linux.CLONE_NEWPID
        )
        for name, text in (
            ("setgroups", "deny"),
            ("uid_map", f"0 {uid} 1"),
            ("gid_map", f"0 {gid} 1"),
        ):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
        # setns back to our own PID namespace is not allowed from inside a user namespace, so
        # the worker itself becomes pid 1 of a namespace it owns and forks per-job ones below it.
        inner = os.fork()
        if inner:
            _, status = os.waitpid(inner, 0)
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
        self._private_view(other_uid=False)
        self.uid, self.gid = 0, 0  # the caller's uid, mapped; capabilities are dropped per job
        self.nproc_base = _count_processes(uid)
        self.pid_ns_fd = os.open("/proc/self/ns/pid", os.O_RDONLY)

    def _setup_basic(self) -> None:
        linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)
        if os.geteuid() == 0:
            # root ignores RLIMIT_NPROC and may signal anything: run as a fresh uid instead
            self.uid = self.gid = UID_BASE + os.getpid()
            self.drop_uid = True
            self.notes.append("no mount namespace: modules under untraversable dirs can't load")
        else:
            self.nproc_base = _count_processes(os.getuid())

    def _private_view(self, other_uid: bool) -> None:
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
        trees = python_trees(self.exclude)
        self.covered = build_view(trees, self.hide, other_uid, self.soft_hide)
        self.readonly_how = make_readonly()
        # Each job gets a fresh tmpfs on /tmp, which would hide a Python tree living under /tmp
        # (a checkout or venv in a temp folder): keep handles to re-bind those trees per job.
        self.tmp_trees = {
            t: os.open(t, os.O_PATH | os.O_DIRECTORY) for t in trees if within(t, "/tmp")
        }

    def facts(self) -> dict:
        namespaced = self.level in ("namespaces", "userns")
        return {
            "level": self.level,
            "pid_namespace": namespaced,
            "net_namespace": namespaced,
            "mount_namespace": namespaced,
            "separate_uid": self.drop_uid,
            "uid": self.uid if self.drop_uid else None,
            "covered": self.covered,
            "hidden": sorted(c for c in self.covered if c in {*self.hide, *self.soft_hide}),
            "tmp_tree_tops": sorted({t.split("/")[2] for t in getattr(self, "tmp_trees", {})}),
            "notes": self.notes,
        }

    # -- one job

    def shared_code_for(self, job: dict):
        """The compiled code of a shared program (compiled once per worker), else None: the
        job's process then compiles the program itself (and reports a SyntaxError as python -c
        would). Compiling runs none of the program, so it is safe here."""
        program = job["program"]
        if not job.get("shared_program") or len(program) > SHARED_PROGRAM_CHARS:
            return None
        code = self.shared_code.get(program)
        if code is None:
            try:
                code = compile(program, "<string>", "exec", dont_inherit=True)
            except (SyntaxError, ValueError):
                return None
            if len(self.shared_code) >= SHARED_PROGRAMS:
                del self.shared_code[next(iter(self.shared_code))]
            self.shared_code[program] = code
        return code

    def run(self, job: dict) -> dict:
        limits = job["limits"]
        job["code"] = self.shared_code_for(job)
        namespaced = self.level != "basic"
        if namespaced:
            size = max(64, 4 * limits["fsize_mb"])
            linux.mount(
                "tmpfs",
                "/tmp",
                "tmpfs",
                linux.MS_NOSUID | linux.MS_NODEV,
                f"size={size}m,nr_inodes=16384,mode=1777",
            )
            for tree, fd in getattr(self, "tmp_trees", {}).items():
                os.makedirs(tree, mode=0o755, exist_ok=True)
                linux.mount(f"/proc/self/fd/{fd}", tree, None, linux.MS_BIND | linux.MS_REC)
            cwd = JOB_DIR
            os.mkdir(cwd, 0o700)
        else:
            cwd = tempfile.mkdtemp(prefix="vgrout-job-")
        try:
            if self.drop_uid or namespaced:
                os.chown(cwd, self.uid, self.gid)
            result = self._supervise(job, cwd, namespaced)
            if job["collect_files"] and not result.get("error"):
                files, truncated = collect_files(cwd, limits["output_bytes"])
                result["files"] = files
                result["truncated"] = result["truncated"] or truncated
            return result
        finally:
            if namespaced:
                linux.umount("/tmp")
            else:
                remove_tree(cwd)

    def _supervise(self, job: dict, cwd: str, namespaced: bool) -> dict:
        limits = job["limits"]
        stdin_r, stdin_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        rep_r, rep_w = os.pipe()
        ready_r, ready_w = os.pipe()
        child_fds = {"stdin": stdin_r, "out": out_w, "err": err_w, "rep": rep_w, "ready": ready_w}
        start = time.monotonic()
        if namespaced:
            linux.unshare(linux.CLONE_NEWPID)
        pid = os.fork()
        if pid == 0:
            child_main(self, job, cwd, child_fds, namespaced)  # never returns
        if namespaced:
            linux.setns(self.pid_ns_fd, linux.CLONE_NEWPID)
        for fd in child_fds.values():
            os.close(fd)
        pump = Pump(job["stdin"], stdin_w, [out_r, err_r, rep_r, ready_r], limits["output_bytes"])
        pidfd = pidfd_open(pid)
        deadline = start + limits["timeout_s"]
        timed_out = exited = False
        status = None
        try:
            while not exited:
                left = deadline - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                if pidfd is not None:
                    if pump.step(left, pidfd):
                        _, status = os.waitpid(pid, 0)
                        exited = True
                else:  # kernels before 5.3: poll the child every 5 ms
                    pump.step(min(left, 0.005))
                    reaped, status = os.waitpid(pid, os.WNOHANG)
                    exited = reaped == pid
            wall = time.monotonic() - start
            if not exited:
                os.kill(pid, signal.SIGKILL)  # at the namespace levels this ends the whole tree
                os.waitpid(pid, 0)
            if not namespaced:
                kill_leftovers(pid)
            # everything that held a pipe is dead now; read what remains
            pump.drain(time.monotonic() + 2.0)
            if not namespaced:
                kill_leftovers(pid)
        finally:
            if pidfd is not None:
                os.close(pidfd)
            pump.close()
        out, err, rep, ready = pump.buffers
        if not ready.startswith(b"R"):
            detail = ready[1:].decode(errors="replace") or err.decode(errors="replace")
            return {"error": f"sandbox setup failed: {detail.strip()[-2000:]}"}
        exit_code = sig = None
        if not timed_out:
            if os.WIFSIGNALED(status):
                sig = os.WTERMSIG(status)
            else:
                exit_code = os.WEXITSTATUS(status)
        return {
            "exit_code": exit_code,
            "signal": sig,
            "timed_out": timed_out,
            "stdout": out,
            "stderr": err,
            "report": rep,
            "files": {},
            "truncated": any(pump.truncated[:3]),
            "wall_s": wall,
        }


# ---------------------------------------------------------------- entry point


def main() -> None:
    # keep the protocol off fds 0/1 so stray prints cannot corrupt it
    ctl_in, ctl_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            __import__(name)
    config = read_msg(ctl_in)
    if not isinstance(config, dict):
        os._exit(2)
    try:
        zygote = Zygote(config)
        facts = zygote.setup()
    except BaseException:
        write_msg(ctl_out, {"error": traceback.format_exc()})
        os._exit(3)
    import gc

    gc.collect()
    gc.freeze()  # keep the shared heap out of the children's collections (fewer COW copies)
    write_msg(ctl_out, {"ready": facts})
    while True:
        job = read_msg(ctl_in)
        if job is None:
            os._exit(0)  # the caller went away or closed the pool
        try:
            result = zygote.run(job)
        except BaseException:
            result = {"error": "sandbox worker failed:\n" + traceback.format_exc()}
        write_msg(ctl_out, result)
        # the next job is forked from this process: leave it no reference to this one's data
        del job, result
