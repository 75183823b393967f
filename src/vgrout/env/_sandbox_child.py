"""Inside the sandbox: the job's process, from the zygote's fork to its exit.

At the namespace levels it first becomes pid 1 of its own PID namespace with fresh mount, IPC and
UTS namespaces, /proc, /dev/shm and /var/tmp. Then: stdio and the report pipe on fds 0-3, every
other fd closed, the job directory as cwd, rlimits, the sandbox uid (or, in a user namespace, no
capabilities), no new privileges, and interpreter state reset to look like a fresh `python -c`;
the program then runs as `__main__` with `python -c` exit-status and shutdown semantics. Any
failure before the program starts is reported on the ready pipe and ends the process (status 125).
"""

from __future__ import annotations

import contextlib
import io
import os
import resource
import select
import signal
import sys
import tempfile
import traceback
from typing import Protocol

from vgrout.env import _sandbox_linux as linux


class ZygoteSettings(Protocol):
    """What the job's process takes from its zygote (`vgrout.env._zygote.Zygote`)."""

    level: str
    uid: int
    gid: int
    drop_uid: bool
    nproc_base: int
    sys_path: list[str]


def child_main(z: ZygoteSettings, job: dict, cwd: str, fds: dict, namespaced: bool) -> None:
    """The job's process. At the namespace levels it is pid 1 of a fresh PID namespace: when it
    exits, the kernel kills every process it left behind."""
    try:
        if namespaced:
            linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
            _exit_if_orphaned(fds["ready"])
            linux.unshare(linux.CLONE_NEWNS | linux.CLONE_NEWIPC | linux.CLONE_NEWUTS)
            _mount_job_filesystems(job["limits"])
            linux.sethostname("sandbox")
    except BaseException:
        _fail(fds["ready"])
    _program_main(z, job, cwd, fds)


def _exit_if_orphaned(pipe_w: int) -> None:
    """The zygote may have died before PDEATHSIG was armed: then our pipe has no reader."""
    poller = select.poll()
    poller.register(pipe_w, select.POLLOUT)
    if any(ev & select.POLLERR for _, ev in poller.poll(0)):
        os._exit(1)


def _mount_job_filesystems(limits: dict) -> None:
    flags = linux.MS_NOSUID | linux.MS_NODEV
    try:
        linux.mount("proc", "/proc", "proc", flags | linux.MS_NOEXEC)
    except OSError:
        # some containers forbid a new proc mount: hide the caller's /proc instead
        linux.mount("tmpfs", "/proc", "tmpfs", flags | linux.MS_RDONLY, "size=4k,mode=555")
    for path in ("/dev/shm", "/var/tmp"):
        if os.path.isdir(path):
            linux.mount("tmpfs", path, "tmpfs", flags, "size=16m,nr_inodes=1024,mode=1777")


def _close_fds_except(keep: set[int]) -> None:
    """Close every fd above 2 except `keep` (close_range under the hood: no /proc needed)."""
    low = 3
    for fd in sorted(k for k in keep if k >= 3):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)


def _fail(ready_w: int) -> None:
    with contextlib.suppress(BaseException):
        os.write(ready_w, b"E" + traceback.format_exc().encode()[-4000:])
    os._exit(125)


def _program_main(z: ZygoteSettings, job: dict, cwd: str, fds: dict) -> None:
    """Set up the program's process (fds, limits, identity, interpreter state) and run it."""
    ready = fds["ready"]
    try:
        os.setsid()
        for src, dst in ((fds["stdin"], 0), (fds["out"], 1), (fds["err"], 2), (fds["rep"], 3)):
            os.dup2(src, dst, inheritable=True)
        ready = os.dup2(fds["ready"], 4)
        _close_fds_except({3, 4})
        os.chdir(cwd)
        _set_limits(job["limits"], z.nproc_base)
        with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")  # under memory pressure the kernel kills model code first
        if z.drop_uid:
            os.setgroups([])
            os.setresgid(z.gid, z.gid, z.gid)
            os.setresuid(z.uid, z.uid, z.uid)
        elif z.level == "userns":
            linux.drop_all_capabilities()
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
        main_dict = _fresh_interpreter_state(z, cwd)
        source, code = job["program"], job.get("code")
        del job, fds
        os.write(4, b"R")
        os.close(4)
    except BaseException:
        _fail(ready)
    _run_as_main(source, main_dict, code)


def _set_limits(limits: dict, nproc_base: int) -> None:
    mb = 1 << 20
    cpu = limits["cpu_s"]
    # soft CPU limit sends SIGXCPU, the hard one a second later SIGKILL
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    for res, value in (
        (resource.RLIMIT_AS, limits["memory_mb"] * mb),
        (resource.RLIMIT_FSIZE, limits["fsize_mb"] * mb),
        (resource.RLIMIT_NOFILE, limits["nofile"]),
        (resource.RLIMIT_NPROC, nproc_base + limits["nproc"]),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_MSGQUEUE, 0),
    ):
        resource.setrlimit(res, (value, value))


def _fresh_interpreter_state(z: ZygoteSettings, cwd: str) -> dict:
    """Make the forked interpreter look like a fresh `python -c` started in `cwd`."""
    import builtins
    import random
    import types

    os.environ.clear()
    os.environ.update(child_env(cwd))
    for sig in (signal.SIGTERM, signal.SIGCHLD, signal.SIGALRM, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(
        io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding="utf-8"
    )
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(1, "w", closefd=False)), encoding="utf-8"
    )
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(2, "w", closefd=False)),
        encoding="utf-8",
        errors="backslashreplace",
        line_buffering=True,
    )
    sys.argv = ["-c"]
    sys.path[:] = ["", *z.sys_path[1:]] if z.sys_path and z.sys_path[0] == "" else ["", *z.sys_path]
    for name in [m for m in sys.modules if m == "vgrout" or m.startswith("vgrout.")]:
        del sys.modules[name]
    tempfile.tempdir = None
    random.seed(0)  # reproducible grading; a fresh interpreter would seed from os.urandom
    main = types.ModuleType("__main__")
    main.__dict__.update({"__builtins__": builtins, "__loader__": None, "__spec__": None})
    sys.modules["__main__"] = main
    return main.__dict__


def child_env(cwd: str) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": cwd,
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def _run_as_main(source: str, namespace: dict, code=None) -> None:
    """Execute like `python -c source`, including exit-status and shutdown semantics. `code`:
    the source already compiled (a shared program, compiled once by the worker)."""
    status = 0
    try:
        if code is None:
            # dont_inherit: this module's __future__ imports must not change the program's meaning
            code = compile(source, "<string>", "exec", dont_inherit=True)
        exec(code, namespace)
    except SystemExit as exc:
        status = _exit_status(exc)
    except BaseException as exc:
        with contextlib.suppress(BaseException):
            # drop this function's own frame: the traceback looks like `python -c`'s
            exc = exc.with_traceback(exc.__traceback__.tb_next)
            sys.excepthook(type(exc), exc, exc.__traceback__)
        status = 1
        if isinstance(exc, KeyboardInterrupt):
            _flush()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)  # like CPython; ignored when we are a PID-ns init
            status = 128 + signal.SIGINT
    status = _shutdown(status)
    os._exit(status)


def _exit_status(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    with contextlib.suppress(BaseException):
        print(code, file=sys.stderr)
    return 1


def _shutdown(status: int) -> int:
    import atexit
    import threading

    for step in (threading._shutdown, atexit._run_exitfuncs):
        try:
            step()
        except SystemExit as exc:
            status = _exit_status(exc)
        except BaseException:
            with contextlib.suppress(BaseException):
                traceback.print_exc()
    return _flush(status)


def _flush(status: int = 0) -> int:
    try:
        sys.stdout.flush()
    except BaseException:
        status = 120  # what CPython returns when flushing stdout fails at exit
    with contextlib.suppress(BaseException):
        sys.stderr.flush()
    return status
