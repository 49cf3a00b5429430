"""A file session: a process inside one sandbox's view, as its uid, opening files for the harness.

Every path is resolved by the kernel inside the sandbox's own root, as the
sandbox's uid, without capabilities and under the seccomp filter, so no path,
``..`` or symlink the agent planted can reach a host file: the host's files are
not in that view. Opened files are handed to the harness as descriptors, which
it reads or writes itself (no copy through this process, no size limit here).
"""

from __future__ import annotations

import os
import socket
import stat
from typing import Any

from . import _proto, _sys

_OPEN_FLAGS = {
    "r": os.O_RDONLY,
    "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    "x": os.O_WRONLY | os.O_CREAT | os.O_EXCL,
    "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
}
MAX_LIST = 100_000


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def _mkdirs(path: str) -> None:
    parent = os.path.dirname(path.rstrip("/"))
    if parent and parent not in ("/", ".") and not os.path.isdir(parent):
        os.makedirs(parent, 0o755, exist_ok=True)


def _open(msg: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
    path, mode = msg["path"], msg["mode"]
    if mode != "r" and msg.get("parents"):
        _mkdirs(path)
    flags = _OPEN_FLAGS[mode] | os.O_CLOEXEC | os.O_NOCTTY
    perm = msg.get("perm", 0o644) if flags & os.O_CREAT else 0  # openat2 refuses a mode it would not use
    fd = _sys.openat2(-100, path, flags, perm, _sys.RESOLVE_NO_MAGICLINKS)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        if stat.S_ISDIR(st.st_mode):
            raise OSError(21, "is a directory")
        raise OSError(22, "not a regular file (a device, fifo or socket)")
    return {"ok": True, "size": st.st_size}, [fd]


def _stat(msg: dict[str, Any]) -> dict[str, Any]:
    st = os.lstat(msg["path"])
    return {
        "ok": True,
        "kind": _kind(st.st_mode),
        "size": st.st_size,
        "mode": st.st_mode & 0o7777,
        "mtime": st.st_mtime,
    }


def _list(msg: dict[str, Any]) -> dict[str, Any]:
    root = msg["path"]
    entries: list[dict[str, Any]] = []
    pending = [""]
    while pending:
        rel = pending.pop()
        with os.scandir(os.path.join(root, rel) if rel else root) as it:
            for e in it:
                st = e.stat(follow_symlinks=False)
                sub = f"{rel}/{e.name}" if rel else e.name
                kind = _kind(st.st_mode)
                item: dict[str, Any] = {
                    "path": sub,
                    "kind": kind,
                    "size": st.st_size,
                    "mode": st.st_mode & 0o7777,
                }
                if kind == "symlink":
                    item["target"] = os.readlink(e.path)
                entries.append(item)
                if len(entries) > msg.get("limit", MAX_LIST):
                    raise OSError(27, f"{root}: more than {msg.get('limit', MAX_LIST)} entries")
                if kind == "dir" and msg.get("recursive"):
                    pending.append(sub)
    entries.sort(key=lambda x: x["path"])
    return {"ok": True, "entries": entries}


def _mkdir(msg: dict[str, Any]) -> dict[str, Any]:
    if msg.get("parents"):
        os.makedirs(msg["path"], msg.get("perm", 0o755), exist_ok=True)
    else:
        os.mkdir(msg["path"], msg.get("perm", 0o755))
    return {"ok": True}


def _symlink(msg: dict[str, Any]) -> dict[str, Any]:
    os.symlink(msg["target"], msg["path"])
    return {"ok": True}


def _chmod(msg: dict[str, Any]) -> dict[str, Any]:
    os.chmod(msg["path"], msg["perm"] & 0o777)
    return {"ok": True}


_OPS = {"stat": _stat, "list": _list, "mkdir": _mkdir, "symlink": _symlink, "chmod": _chmod}


def serve(req: dict[str, Any], fds: list[int], filters: _sys.Filters, last_cap: int) -> None:
    sock = socket.socket(fileno=fds[0])
    ns = dict(zip(req["ns"], fds[1:], strict=True))
    try:
        _sys.setns(ns["mnt"], _sys.CLONE_NEWNS)
        _sys.join_user_namespace(ns["user"], last_cap)
        for fd in ns.values():
            os.close(fd)
        _sys.become(req["inside_id"])
        filters[req["seccomp"]].install()
        os.chdir(req["cwd"])
        os.umask(0o022)
    except OSError as exc:
        _proto.send(sock, {"ok": False, "error": str(exc)})
        os._exit(1)
    _proto.send(sock, {"ok": True})
    while True:
        try:
            msg, got = _proto.recv(sock)
        except (OSError, ValueError):
            os._exit(0)
        for fd in got:
            os.close(fd)
        if msg is None:
            os._exit(0)
        out: list[int] = []
        try:
            if msg["op"] == "open":
                reply, out = _open(msg)
            else:
                reply = _OPS[msg["op"]](msg)
        except OSError as exc:
            reply = {"ok": False, "errno": exc.errno, "error": exc.strerror or str(exc)}
        except (KeyError, TypeError, ValueError) as exc:
            reply = {"ok": False, "errno": 22, "error": f"bad request: {exc}"}
        try:
            _proto.send(sock, reply, out)
        except OSError:
            os._exit(0)
        finally:
            for fd in out:
                os.close(fd)
