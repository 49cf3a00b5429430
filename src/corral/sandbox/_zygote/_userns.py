"""User namespaces held by an fd: the sandbox's own (its uid mapping) and bare ones for idmapped mounts."""

from __future__ import annotations

import os
import signal

from . import _sys

_proc_fd = -1


def host_proc() -> int:
    """The host's /proc, opened before pivot_root so it stays reachable afterwards."""
    global _proc_fd
    if _proc_fd < 0:
        _proc_fd = os.open("/proc", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    return _proc_fd


def _write_at(dirfd: int, rel: str, text: str) -> None:
    fd = os.open(rel, os.O_WRONLY | os.O_CLOEXEC, dir_fd=dirfd)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def userns_fd(uid_map: str, gid_map: str, *, deny_setgroups: bool = True) -> int:
    """A new user namespace with these maps, held by an fd (its only process exits at once)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            _sys.unshare(_sys.CLONE_NEWUSER)
            os.write(w, b"1")
            signal.pause()
        finally:
            os._exit(0)
    os.close(w)
    proc = host_proc()
    try:
        if os.read(r, 1) != b"1":
            raise OSError(1, "the user-namespace helper failed")
        _write_at(proc, f"{pid}/uid_map", uid_map)
        if deny_setgroups:
            _write_at(proc, f"{pid}/setgroups", "deny")
        _write_at(proc, f"{pid}/gid_map", gid_map)
        return os.open(f"{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc)
    finally:
        os.close(r)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


class IdMaps:
    """User namespaces that only carry an id mapping, for idmapped mounts (created on demand)."""

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}

    def fd(self, mapping: list[list[int]]) -> int:
        key = repr(mapping)
        if key not in self._fds:
            lines = "".join(f"{a} {b} {c}\n" for a, b, c in mapping)
            self._fds[key] = userns_fd(lines, lines)
        return self._fds[key]

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
