"""The first process of a call: enter the sandbox, shed every privilege, start the command.

Forked by the zygote as root. In ``call`` mode it is pid 1 of a fresh pid
namespace with a private copy of the sandbox's mounts (its own /proc, /tmp and
/dev/shm) and execs the command itself, so when the command exits the kernel
kills whatever the call left (as under ``docker run`` without ``--init``, the
command is pid 1). In ``episode`` mode it stays outside the sandbox's pid
namespace, starts the command inside it, where background processes may live
on until the sandbox closes, and waits for it.

A spare (``"spare": true``) joins the cgroups and namespaces before it has a command, says it
is ready, and waits, still host root (so no process of the sandbox's uid exists between calls),
for the command and its stdio on the reply socket (``corral.sandbox._spare``); only then does it
shed its privileges.

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
from typing import Any, NoReturn

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


def run(req: dict[str, Any], fds: list[int], filters: _sys.Filters, last_cap: int) -> None:
    """Never returns: exits with the command's status, or SETUP_FAILED after reporting why."""
    reply = socket.socket(fileno=fds[0])
    spare = bool(req.get("spare"))
    # fds: reply, stdin, stdout, stderr, namespaces, cgroups; a spare gets its stdio with its command.
    first_ns = 1 if spare else 4
    stdin, stdout, stderr = fds[1:4] if not spare else (-1, -1, -1)
    ns = dict(zip(req["ns"], fds[first_ns : first_ns + len(req["ns"])], strict=True))
    cgroups = fds[first_ns + len(req["ns"]) :]
    episode = req["mode"] == "episode"
    try:
        _enter(req, ns, cgroups, filters, last_cap)
        if not spare:
            _sys.become(req["inside_id"])
            os.chdir(req["cwd"])
    except Exception as exc:  # reported as the harness's failure, never as the command's output
        _setup_failed(reply, exc)
    for sig in _IGNORED_BY_PYTHON:
        signal.signal(sig, signal.SIG_DFL)
    if spare:
        _proto.send(reply, {"ready": True})
        command, (stdin, stdout, stderr) = _await_command(reply)
        try:  # the uid change makes it the sandbox's process: only now that it has a call
            _sys.become(req["inside_id"])
            os.chdir(command["cwd"])  # now, not ahead: an earlier call may have replaced the directory
        except Exception as exc:
            _setup_failed(reply, exc)
        req = {**req, **command}
    argv, env = req["argv"], req["env"]
    exe = _find(argv[0], env.get("PATH", "/usr/bin:/bin"))
    if exe is None:
        _say(stderr, f"corral: {argv[0]}: command not found\n")
        _proto.send(reply, {"spawned": None, "not_found": True})
        os._exit(NOT_FOUND)
    if not episode:
        _exec_as_init(exe, argv, env, (stdin, stdout, stderr), reply)
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
    os._exit(_wait(pid))


def _enter(
    req: dict[str, Any], ns: dict[str, int], cgroups: list[int], filters: _sys.Filters, last_cap: int
) -> None:
    """Join the call's cgroups and the sandbox's namespaces and load the seccomp filter, still as
    host root (kuid 0, with capabilities only inside the sandbox's user namespace, which is what
    lets it load the filter before no_new_privs, and an empty bounding set); ``_sys.become`` then
    makes it the sandbox's uid."""
    episode = req["mode"] == "episode"
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
    _sys.join_user_namespace(ns["user"], last_cap)
    for fd in ns.values():
        os.close(fd)
    _sys.prctl(_sys.PR_SET_DUMPABLE, 0)
    _sys.prctl(_sys.PR_SET_PDEATHSIG, signal.SIGKILL)  # a spare waiting for a zygote that died
    filters[req["seccomp"]].install()  # made ready in the zygote: only the syscall is left


def _setup_failed(reply: socket.socket, exc: Exception) -> NoReturn:
    with contextlib.suppress(OSError):
        _proto.send(reply, {"setup_error": f"{type(exc).__name__}: {exc}"})
    os._exit(SETUP_FAILED)


def _exec_as_init(
    exe: str, argv: list[str], env: dict[str, str], stdio: tuple[int, ...], reply: socket.socket
) -> None:
    """``call`` mode: become the command, as pid 1 of the call's pid namespace. The zygote reaps
    it and reports its status; when it exits the kernel kills whatever else the call started.
    A Python first process waiting for the command cost about a millisecond a call in its own exit."""
    _proto.send(reply, {"spawned": os.getpid()})
    try:
        for target, fd in enumerate(stdio):
            os.dup2(fd, target)
        os.setsid()
        os.execve(exe, argv, env)
    except OSError as exc:
        _say(2, f"corral: {argv[0]}: {exc.strerror}\n")
    os._exit(CANNOT_EXECUTE)


def _await_command(reply: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """A spare's command and stdio; the host closing the channel instead means it is not needed."""
    try:
        msg, got = _proto.recv(reply)
    except (OSError, ValueError):
        msg, got = None, []
    if msg is None or len(got) != 3 or not isinstance(msg.get("argv"), list):
        os._exit(0)
    return msg, got


def _wait(pid: int) -> int:
    """The command's exit status as a shell reports it."""
    while True:
        try:
            got, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return SETUP_FAILED
        except InterruptedError:
            continue
        if got == pid:
            code = os.waitstatus_to_exitcode(status)
            return code if code >= 0 else 128 - code
