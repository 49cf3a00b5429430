"""The first process of a call: enter the sandbox, shed every privilege, start the command, wait.

Forked by the zygote as root. In ``call`` mode it is pid 1 of a fresh pid
namespace with a private copy of the sandbox's mounts (its own /proc, /tmp and
/dev/shm), so when the command exits and this process follows, the kernel kills
whatever the call left. In ``episode`` mode it stays outside the sandbox's pid
namespace and starts the command inside it, where background processes may live
on until the sandbox closes.

Before the command starts this process has joined the call's cgroups, every
namespace of the sandbox, the sandbox's user namespace as its non-root uid,
dropped all capabilities (bounding set included), set no_new_privs and loaded
the seccomp filter; the command inherits all of it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from typing import Any

from . import _mounts, _proto, _sys

SETUP_FAILED = 125
# Python ignores these, and an ignored signal stays ignored across exec: the command gets the defaults.
_IGNORED_BY_PYTHON = (signal.SIGPIPE, signal.SIGXFSZ)
NOT_FOUND = 127
CANNOT_EXECUTE = 126


def _find(argv0: str, path: str) -> str | None:
    if "/" in argv0:
        return argv0 if os.access(argv0, os.X_OK) and not os.path.isdir(argv0) else None
    for d in path.split(":"):
        cand = os.path.join(d or ".", argv0)
        if os.access(cand, os.X_OK) and not os.path.isdir(cand):
            return cand
    return None


def _say(fd: int, text: str) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, text.encode(errors="replace"))


def run(req: dict[str, Any], fds: list[int], filters: dict[str, bytes], last_cap: int) -> None:
    """Never returns: exits with the command's status, or SETUP_FAILED after reporting why."""
    reply = socket.socket(fileno=fds[0])
    stdin, stdout, stderr = fds[1:4]
    ns = dict(zip(req["ns"], fds[4 : 4 + len(req["ns"])], strict=True))
    cgroups = fds[4 + len(req["ns"]) :]
    episode = req["mode"] == "episode"
    try:
        for cg in cgroups:  # before anything can fork, so every process of the call is accounted and killable
            os.write(cg, b"0")
            os.close(cg)
        _sys.setns(ns["mnt"], _sys.CLONE_NEWNS)
        if not episode:
            _sys.unshare(_sys.CLONE_NEWNS)
            _mounts.mount_proc_and_tmp(req["tmp"])
        for name in ("ipc", "uts", "net"):  # a missing one is a KeyError: never the host's by default
            _sys.setns(ns[name], _sys.NS_FLAGS[name])
        if episode:
            _sys.setns(ns["pid"], _sys.CLONE_NEWPID)
        os.setgroups([])
        _sys.setns(ns["user"], _sys.CLONE_NEWUSER)
        for fd in ns.values():
            os.close(fd)
        for cap in range(last_cap + 1):
            _sys.prctl(_sys.PR_CAPBSET_DROP, cap)
        ident = req["inside_id"]
        os.setresgid(ident, ident, ident)
        os.setresuid(ident, ident, ident)
        _sys.drop_capabilities(last_cap)
        _sys.prctl(_sys.PR_SET_NO_NEW_PRIVS, 1)
        _sys.prctl(_sys.PR_SET_DUMPABLE, 0)
        _sys.prctl(_sys.PR_SET_PDEATHSIG, signal.SIGKILL)  # reset by the uid change, so set here
        _sys.load_seccomp(filters[req["seccomp"]])
        os.chdir(req["cwd"])
    except Exception as exc:  # reported as the harness's failure, never as the command's output
        with contextlib.suppress(OSError):
            _proto.send(reply, {"setup_error": f"{type(exc).__name__}: {exc}"})
        os._exit(SETUP_FAILED)
    for sig in _IGNORED_BY_PYTHON:
        signal.signal(sig, signal.SIG_DFL)
    argv, env = req["argv"], req["env"]
    exe = _find(argv[0], env.get("PATH", "/usr/bin:/bin"))
    if exe is None:
        _say(stderr, f"corral: {argv[0]}: command not found\n")
        _proto.send(reply, {"spawned": None, "not_found": True})
        os._exit(NOT_FOUND)
    try:
        pid = os.posix_spawn(
            exe,
            argv,
            env,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, stdin, 0),
                (os.POSIX_SPAWN_DUP2, stdout, 1),
                (os.POSIX_SPAWN_DUP2, stderr, 2),
            ],
            setsid=True,
            setsigmask=(),
        )
    except OSError as exc:
        _say(stderr, f"corral: {argv[0]}: {exc.strerror}\n")
        _proto.send(reply, {"spawned": None, "exec_error": exc.strerror})
        os._exit(CANNOT_EXECUTE)
    _proto.send(reply, {"spawned": pid})
    for fd in (stdin, stdout, stderr):
        os.close(fd)
    reply.close()
    os._exit(_wait(pid, reap_all=not episode))


def _wait(pid: int, *, reap_all: bool) -> int:
    """The command's exit status as a shell reports it; as pid 1 also reap the orphans meanwhile."""
    while True:
        try:
            got, status = os.waitpid(-1 if reap_all else pid, 0)
        except ChildProcessError:
            return SETUP_FAILED
        except InterruptedError:
            continue
        if got == pid:
            code = os.waitstatus_to_exitcode(status)
            return code if code >= 0 else 128 - code
