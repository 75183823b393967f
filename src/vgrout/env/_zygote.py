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
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import pickle
import resource
import select
import signal
import stat
import struct
import sys
import tempfile
import time
import traceback

from vgrout.env import _sandbox_linux as linux

# Stdlib modules graders and solutions commonly import: loaded once here, shared by every job.
PRELOAD = (  # noqa: SIM905 (a word list reads better than 60 quoted strings)
    "abc array encodings.idna ast atexit base64 binascii bisect builtins calendar cmath "
    "codecs collections collections.abc contextlib copy csv dataclasses datetime decimal "
    "difflib enum errno fractions functools gc hashlib heapq inspect io itertools json "
    "keyword linecache locale math numbers operator pprint queue random re reprlib secrets "
    "select signal statistics socket string struct textwrap threading time timeit traceback "
    "types typing unicodedata uuid warnings weakref zlib"
).split()

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


# ---------------------------------------------------------------- the filesystem view


def _ancestors(path: str) -> list[str]:
    parts, out = path.strip("/").split("/"), []
    for i in range(1, len(parts)):
        out.append("/" + "/".join(parts[:i]))
    return out


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def python_trees(exclude: list[str]) -> list[str]:
    """Directories the sandboxed interpreter needs: prefixes, executable dir, sys.path entries."""
    candidates = [
        sys.base_prefix,
        sys.prefix,
        sys.base_exec_prefix,
        sys.exec_prefix,
        os.path.dirname(os.path.realpath(sys.executable)),
        os.path.dirname(os.path.abspath(sys.executable)),
    ]
    candidates += [p for p in sys.path if p and os.path.isabs(p)]
    found = set()
    for path in candidates:
        path = os.path.abspath(path)
        if not os.path.exists(path) or any(_within(path, ex) for ex in exclude):
            continue
        if os.path.isfile(path):  # a zip on sys.path: keep its directory
            path = os.path.dirname(path)
        found.add(path)
        found.add(os.path.realpath(path))
    return sorted(p for p in found if not any(q != p and _within(p, q) for q in found))


def _blocked_for_others(path: str) -> bool:
    """A directory an unrelated, group-less uid cannot traverse (e.g. /root with mode 0700)."""
    try:
        return not os.stat(path).st_mode & stat.S_IXOTH
    except OSError:
        return False


def build_view(
    trees: list[str], hide: list[str], other_uid: bool, soft: list[str] = ()
) -> list[str]:
    """Cover hidden or untraversable directories with empty tmpfs and re-bind the Python trees.

    Runs in the zygote's private mount namespace. `hide` paths inside a Python tree are an error;
    `soft` ones (defaults such as the caller's cwd) are then skipped. Returns the covered paths.
    """
    covers = set()
    for path in [*hide, *soft]:
        if not os.path.isdir(path) or path == "/":
            continue
        if any(_within(path, tree) for tree in trees):
            if path in soft:
                continue
            raise ValueError(f"cannot hide {path!r}: the sandboxed Python installation needs it")
        covers.add(path)
    if other_uid:
        for tree in trees:
            covers.update(a for a in _ancestors(tree) if _blocked_for_others(a))
    # keep a handle on every tree before anything is covered; bind from it afterwards
    handles = {tree: os.open(tree, os.O_PATH | os.O_DIRECTORY) for tree in trees}
    done: list[str] = []
    items = sorted(
        [(p, "cover") for p in covers] + [(t, "tree") for t in trees],
        key=lambda item: (item[0].count("/"), item[0]),
    )
    for path, kind in items:
        hidden = any(_within(path, c) and path != c for c in done)
        if kind == "cover":
            if hidden and not any(_within(path, t) for t in trees):
                continue  # already under an empty cover
            linux.mount(
                "tmpfs", path, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, "size=1m,mode=755"
            )
            done.append(path)
        elif hidden:
            os.makedirs(path, mode=0o755, exist_ok=True)
            linux.mount(f"/proc/self/fd/{handles[path]}", path, None, linux.MS_BIND | linux.MS_REC)
    for fd in handles.values():
        os.close(fd)
    for path in [*hide, *soft]:  # plain files to hide: cover with /dev/null
        if os.path.isfile(path):
            linux.mount("/dev/null", path, None, linux.MS_BIND)
    return done


def make_readonly() -> str:
    """Make every mount read-only and nosuid; per-job tmpfs mounted later stay writable."""
    try:
        linux.mount_setattr_recursive("/", linux.MOUNT_ATTR_RDONLY | linux.MOUNT_ATTR_NOSUID)
        return "mount_setattr"
    except OSError as exc:
        if exc.errno not in (errno.ENOSYS, errno.EINVAL):
            raise
    for target in _mount_points():
        flags = linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY | linux.MS_NOSUID
        st = os.statvfs(target)
        flags |= linux.MS_NODEV if st.f_flag & os.ST_NODEV else 0
        flags |= linux.MS_NOEXEC if st.f_flag & os.ST_NOEXEC else 0
        with contextlib.suppress(OSError):
            linux.mount(None, target, None, flags)
    return "remount"


def _mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p.replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\") for p in points]


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
        self.sys_path = [p for p in sys.path if not any(_within(p, ex) for ex in self.exclude)]
        self.nproc_base = 0

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
            t: os.open(t, os.O_PATH | os.O_DIRECTORY) for t in trees if _within(t, "/tmp")
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

    def run(self, job: dict) -> dict:
        limits = job["limits"]
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
                _remove_tree(cwd)

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
            _child_main(self, job, cwd, child_fds, namespaced)  # never returns
        if namespaced:
            linux.setns(self.pid_ns_fd, linux.CLONE_NEWPID)
        for fd in child_fds.values():
            os.close(fd)
        pump = _Pump(job["stdin"], stdin_w, [out_r, err_r, rep_r, ready_r], limits["output_bytes"])
        pidfd = _pidfd_open(pid)
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
                _kill_leftovers(pid)
            # everything that held a pipe is dead now; read what remains
            pump.drain(time.monotonic() + 2.0)
            if not namespaced:
                _kill_leftovers(pid)
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


def _pidfd_open(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


class _Pump:
    """Feed stdin and read the child's pipes without blocking, keeping at most `cap` bytes each."""

    def __init__(self, stdin: bytes, stdin_w: int, readers: list[int], cap: int):
        self.poll = select.poll()
        self.pending = memoryview(stdin)
        self.stdin_w: int | None = stdin_w
        self.readers = {fd: i for i, fd in enumerate(readers)}
        self.buffers = [bytearray() for _ in readers]
        self.truncated = [False] * len(readers)
        self.cap = cap
        for fd in readers:
            os.set_blocking(fd, False)
            self.poll.register(fd, select.POLLIN)
        if self.pending:
            os.set_blocking(stdin_w, False)
            self.poll.register(stdin_w, select.POLLOUT)
        else:
            self._close_stdin()

    def _close_stdin(self) -> None:
        if self.stdin_w is not None:
            with contextlib.suppress(KeyError):
                self.poll.unregister(self.stdin_w)
            os.close(self.stdin_w)
            self.stdin_w = None

    def step(self, timeout: float, pidfd: int | None = None) -> bool:
        """Service ready fds for up to `timeout` s; True when `pidfd` reports the child's exit."""
        if pidfd is not None:
            self.poll.register(pidfd, select.POLLIN)
        try:
            events = self.poll.poll(max(timeout, 0) * 1000)
        finally:
            if pidfd is not None:
                self.poll.unregister(pidfd)
        child_done = False
        for fd, _ in events:
            if fd == pidfd:
                child_done = True
            elif fd == self.stdin_w:
                self._write_stdin()
            else:
                self._read(fd)
        return child_done

    def _write_stdin(self) -> None:
        try:
            self.pending = self.pending[os.write(self.stdin_w, self.pending[:65536]) :]
        except BlockingIOError:
            return
        except OSError:  # the program closed stdin or exited: the rest is not wanted
            self.pending = self.pending[:0]
        if not self.pending:
            self._close_stdin()

    def _read(self, fd: int) -> None:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        if not chunk:
            self.poll.unregister(fd)
            os.close(fd)
            del self.readers[fd]
            return
        i = self.readers[fd]
        room = self.cap - len(self.buffers[i])
        if len(chunk) > room:
            self.truncated[i] = True
            chunk = chunk[: max(room, 0)]
        self.buffers[i] += chunk

    def drain(self, until: float) -> None:
        self._close_stdin()
        while self.readers and time.monotonic() < until:
            self.step(until - time.monotonic())

    def close(self) -> None:
        self._close_stdin()
        for fd in list(self.readers):
            os.close(fd)
        self.readers.clear()
        self.buffers = [bytes(b) for b in self.buffers]


def _kill_leftovers(pgid: int) -> None:
    """Basic level: kill the job's process group and every orphan reparented to us (subreaper)."""
    with contextlib.suppress(OSError):
        os.killpg(pgid, signal.SIGKILL)
    me = os.getpid()
    for _ in range(100_000):
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass  # reap zombies
        except ChildProcessError:
            return  # no children left
        for child in _children_of(me):
            with contextlib.suppress(OSError):
                os.kill(child, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(-1, 0)


def _children_of(parent: int) -> list[int]:
    children = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            children.append(int(name))
    return children


def collect_files(cwd: str, cap: int) -> tuple[dict[str, bytes], bool]:
    """Regular top-level files of the job dir, each capped. Never follows symlinks."""
    files: dict[str, bytes] = {}
    truncated = False
    dir_fd = os.open(cwd, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for name in sorted(os.listdir(dir_fd)):
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
            except OSError:
                continue  # symlink, vanished, unreadable
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    continue
                data = _read_upto(fd, cap + 1)
            finally:
                os.close(fd)
            if len(data) > cap:
                data, truncated = data[:cap], True
            files[name] = data
    finally:
        os.close(dir_fd)
    return files, truncated


def _read_upto(fd: int, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _remove_tree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------- inside the sandbox


def _child_main(z: Zygote, job: dict, cwd: str, fds: dict, namespaced: bool) -> None:
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


def _program_main(z: Zygote, job: dict, cwd: str, fds: dict) -> None:
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
        code = job["program"]
        del job, fds
        os.write(4, b"R")
        os.close(4)
    except BaseException:
        _fail(ready)
    _run_as_main(code, main_dict)


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


def _fresh_interpreter_state(z: Zygote, cwd: str) -> dict:
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


def _run_as_main(source: str, namespace: dict) -> None:
    """Execute like `python -c source`, including exit-status and shutdown semantics."""
    status = 0
    try:
        exec(compile(source, "<string>", "exec"), namespace)
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
