"""The zygote's side of one running job: its pipes, the files it leaves and (at level "basic")
the processes it leaves.

`Pump` feeds the job's stdin and drains its stdout, stderr, report and ready pipes without
blocking, keeping at most a cap of bytes from each; `collect_files` reads the regular top-level
files of the job directory; `kill_leftovers` ends every process the job left behind when no PID
namespace does it for us.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import stat
import time


def pidfd_open(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


class Pump:
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


def kill_leftovers(pgid: int) -> None:
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


def remove_tree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
