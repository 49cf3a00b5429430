"""The zygote's main loop: a request per datagram on the fd named by argv[1], a fork per request.

Requests (JSON, see ``corral.sandbox._zygote_client``):
  filter  register a compiled seccomp program by name
  build   fork a setup child that builds a sandbox and replies with its namespace fds
  call    fork a call's first process (in a new pid namespace in ``call`` mode)
  files   fork a file session inside a sandbox
Each request carries its own reply socket; for a call the zygote sends ``{"exit": code}``
there once the call's first process has been reaped, and closes it.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import os
import resource
import select
import signal
import socket
import sys
from typing import Any

from . import _build, _call, _files, _proto, _sys


class Zygote:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.filters: _sys.Filters = {}
        self.last_cap = _sys.last_cap()
        self.own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        self.calls: dict[int, socket.socket] = {}  # first-process pid -> reply socket
        self.others: set[int] = set()  # setup children and file sessions: reaped, nothing reported

    def fork_child(self, keep: list[int]) -> int:
        pid = os.fork()
        if pid == 0:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            # Nothing of the zygote's but the request's own descriptors: another call's reply socket
            # held open here would delay that call's end. In a few syscalls, not one per call in
            # flight (spares included, hundreds on a busy node). The objects that held the closed
            # ones are never released in this child: it leaves through os._exit or exec.
            _sys.close_all_but(keep)
        return pid

    def handle(self, msg: dict[str, Any], fds: list[int]) -> None:
        op = msg.get("op")
        if op == "filter":
            self.filters[msg["name"]] = _sys.SeccompProgram(base64.b64decode(msg["bpf"]))
            return
        if op == "call":
            new_pidns = msg["mode"] == "call"
            if new_pidns:
                _sys.unshare(_sys.CLONE_NEWPID)
            try:
                pid = self.fork_child(fds)
                if pid == 0:
                    try:
                        _call.run(msg, fds, self.filters, self.last_cap)
                    finally:  # never back into this loop: the child must not act as a second zygote
                        os._exit(_call.SETUP_FAILED)
            finally:
                if new_pidns:
                    _sys.setns(self.own_pidns, _sys.CLONE_NEWPID)
            reply = socket.socket(fileno=fds[0])
            with contextlib.suppress(OSError):
                _proto.send(reply, {"pid": pid})
            self.calls[pid] = reply
            for fd in fds[1:]:
                os.close(fd)
            return
        if op in ("build", "files"):
            pid = self.fork_child(fds)
            if pid == 0:
                try:
                    if op == "build":
                        _build.build(msg, fds)
                    else:
                        _files.serve(msg, fds, self.filters, self.last_cap)
                finally:
                    os._exit(1)
            self.others.add(pid)
        for fd in fds:
            os.close(fd)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            reply = self.calls.pop(pid, None)
            self.others.discard(pid)
            if reply is not None:
                code = os.waitstatus_to_exitcode(status)
                with contextlib.suppress(OSError):
                    _proto.send(reply, {"exit": code if code >= 0 else 128 - code, "signal": max(0, -code)})
                reply.close()

    def loop(self) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        os.set_blocking(wake_r, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        poller.register(wake_r, select.POLLIN)
        while True:
            for fd, _ev in poller.poll():
                if fd == wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_r, 4096)
                    continue
                msg, fds = _proto.recv(self.sock)
                if msg is None:
                    os._exit(0)  # the harness is gone: its sandboxes' namespaces go with their fds
                try:
                    self.handle(msg, fds)
                except Exception as exc:  # a bad request must not take down every sandbox
                    print(f"corral-zygote: {msg.get('op')}: {exc!r}", file=sys.stderr, flush=True)
                    for fd in fds:
                        with contextlib.suppress(OSError):
                            os.close(fd)
            self.reap()


def main() -> None:
    _sys.prctl(_sys.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:
        os._exit(0)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    _sys.prctl(_sys.PR_SET_CHILD_SUBREAPER, 1)  # orphans of setup children are reaped here
    request_fd = int(sys.argv[1])
    os.set_inheritable(request_fd, False)
    sock = socket.socket(fileno=request_fd)
    gc.disable()  # no cycles in this loop; a collection would only dirty pages before each fork
    z = Zygote(sock)
    _proto.send(sock, {"ready": True, "pid": os.getpid(), "last_cap": z.last_cap})
    z.loop()


if __name__ == "__main__":
    main()
