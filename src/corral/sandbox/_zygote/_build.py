"""Building one sandbox's namespace set: mounts (``_mounts``), hostname, loopback, user namespace,
and in episode mode the pid namespace's init.

Runs in a child of the zygote, as root, inside fresh mount, ipc and uts (and
network) namespaces that only this sandbox will use, so nothing it mounts ever
appears in the host's mount table.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
from typing import Any

from . import _proto, _sys
from ._mounts import Builder, mount_proc_and_tmp
from ._root import Root
from ._sys import MS_BIND, MS_NODEV, MS_NOSUID, MS_RDONLY, MS_REC, MS_REMOUNT
from ._userns import host_proc, userns_fd


def close_all_except(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def build(req: dict[str, Any], fds: list[int]) -> None:
    """The setup child: build, report the namespace fds on the reply socket, exit."""
    reply = socket.socket(fileno=fds[0])
    rest = fds[1:]
    net = req.get("net", "new")  # "fd": the egress layer's namespace; "new": the sandbox's own
    net_fd = rest.pop(0) if net == "fd" else -1
    lifeline = rest.pop(0) if req.get("episode") else -1
    cgroup_fds = rest
    try:
        _sys.prctl(_sys.PR_SET_PDEATHSIG, signal.SIGKILL)
        for (
            cg
        ) in cgroup_fds:  # the sandbox's own cgroup: its init and setup count there, not in the harness's
            os.write(cg, b"0")
            os.close(cg)
        _sys.unshare(
            _sys.CLONE_NEWNS
            | _sys.CLONE_NEWIPC
            | _sys.CLONE_NEWUTS
            | (_sys.CLONE_NEWNET if net == "new" else 0)
        )
        if net_fd >= 0:
            _sys.setns(net_fd, _sys.CLONE_NEWNET)
            os.close(net_fd)
        elif net == "new":
            _sys.loopback_up()
        _sys.sethostname(req["hostname"])
        _sys.mount(None, "/", None, MS_REC | _sys.MS_PRIVATE)
        proc = host_proc()
        staging, aux = req["staging"], req["aux"]
        _sys.mount("tmpfs", aux, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0700")
        root_op = req["root"]
        if root_op["op"] == "root_tmpfs":
            _sys.mount("tmpfs", staging, "tmpfs", MS_NOSUID | MS_NODEV, f"size={root_op['size']},mode=0755")
            root = Root(staging, replace=False)
            builder = Builder(root, aux)
        else:  # root_overlay: an image, copy-on-write over the cache's read-only rootfs
            builder = Builder(Root(aux, replace=False), aux)
            upper = builder._layer_tmpfs(root_op)
            lower = builder._lower(root_op)
            _sys.mount(
                "overlay",
                staging,
                "overlay",
                MS_NOSUID | MS_NODEV,
                f"lowerdir={lower},upperdir={upper}/upper,workdir={upper}/work,index=off",
            )
            root = Root(staging, replace=True)
            builder.root = root
        for op in req["plan"]:
            builder.run(op)
        builder.idmaps.close()
        os.chdir(staging)
        os.mkdir(".corral-old", 0o700)
        _sys.pivot_root(".", ".corral-old")
        os.chdir("/")
        _sys.umount("/.corral-old")
        os.rmdir("/.corral-old")
        if req.get("read_only_root", True):
            _sys.mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
        uid, gid, inside = req["host_uid"], req["host_gid"], req["inside_id"]
        user_fd = userns_fd(f"{inside} {uid} 1\n", f"{inside} {gid} 1\n")
        names = ["mnt", "ipc", "uts", "net"]
        out = [os.open(f"self/ns/{n}", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc) for n in names]
        names.append("user")
        out.append(user_fd)
        msg: dict[str, Any] = {"ok": True, "names": names}
        if lifeline >= 0:
            init_pid, pid_fd = _start_init(req, lifeline, reply)
            names.append("pid")
            out.append(pid_fd)
            msg["init_pid"] = init_pid
        _proto.send(reply, msg, out)
    except Exception as exc:  # reported, never raised past the fork
        _proto.send(reply, {"ok": False, "error": str(exc)})
        os._exit(1)
    os._exit(0)


def _start_init(req: dict[str, Any], lifeline: int, reply: socket.socket) -> tuple[int, int]:
    """Episode mode: a pid namespace whose pid 1 reaps orphans and ends everything when the owner goes."""
    _sys.unshare(_sys.CLONE_NEWPID)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            mount_proc_and_tmp(req["tmp"])  # first: closing the rest needs this pid namespace's /proc
            close_all_except({lifeline, w})
            os.write(w, b"1")
            os.close(w)
        except Exception as exc:
            with contextlib.suppress(OSError):
                os.write(w, b"0" + str(exc).encode()[:400])
            os._exit(1)
        _init_loop(lifeline)
    os.close(w)
    status = os.read(r, 512)
    os.close(r)
    if status != b"1":
        why = status[1:].decode(errors="replace")
        raise OSError(5, f"the sandbox's init could not mount /proc and /tmp: {why}")
    return pid, os.open(f"{pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC, dir_fd=host_proc())


def _init_loop(lifeline: int) -> None:
    """pid 1 of an episode sandbox: reap orphans; exit (ending its namespace) once the lifeline closes."""

    for sig in signal.valid_signals():
        if sig not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD):
            with contextlib.suppress(OSError, ValueError):
                signal.signal(sig, signal.SIG_DFL)
    rfd, wfd = os.pipe()
    os.set_blocking(wfd, False)
    signal.set_wakeup_fd(wfd)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    poller = select.poll()
    poller.register(lifeline, select.POLLIN | select.POLLHUP)
    poller.register(rfd, select.POLLIN)
    while True:
        for fd, _ev in poller.poll():
            if fd == lifeline:
                os._exit(0)
            with contextlib.suppress(BlockingIOError):
                os.read(rfd, 512)
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
