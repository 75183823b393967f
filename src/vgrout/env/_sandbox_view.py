"""The zygote's filesystem view: what the sandboxed interpreter may see.

Runs once per worker, in the zygote's private mount namespace: the directories the Python
installation needs are found (`python_trees`), hidden and untraversable directories are covered
with empty tmpfs while the Python trees stay reachable at their own paths (`build_view`), and every
mount is made read-only and nosuid (`make_readonly`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys

from vgrout.env import _sandbox_linux as linux


def _ancestors(path: str) -> list[str]:
    parts, out = path.strip("/").split("/"), []
    for i in range(1, len(parts)):
        out.append("/" + "/".join(parts[:i]))
    return out


def within(path: str, root: str) -> bool:
    """`path` is `root` or lies below it."""
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
        if not os.path.exists(path) or any(within(path, ex) for ex in exclude):
            continue
        if os.path.isfile(path):  # a zip on sys.path: keep its directory
            path = os.path.dirname(path)
        found.add(path)
        found.add(os.path.realpath(path))
    return sorted(p for p in found if not any(q != p and within(p, q) for q in found))


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
        if any(within(path, tree) for tree in trees):
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
        hidden = any(within(path, c) and path != c for c in done)
        if kind == "cover":
            if hidden and not any(within(path, t) for t in trees):
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
