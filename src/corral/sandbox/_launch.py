"""Starting one confined process tree and collecting its output, exit and resource use.

The child is placed in the call's cgroups, joins the sandbox's network namespace
(when egress is on), and drops to the sandbox's host uid before it executes
bubblewrap; a sandbox that bubblewrap never reported as started is a harness
failure (``SandboxSetupError``), never the command's output. Output is read
concurrently and capped per stream; what is over the cap is read and discarded so
the child never blocks on a full pipe.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

from corral.errors import SandboxSetupError
from corral.sandbox._cgroups import CallCgroup, Usage

_PIDS_POLL_S = 0.02
_LAUNCH_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class RawOutcome:
    exit_code: int
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    duration_s: float
    stop_reason: str | None  # "timeout", "memory", "pids" or None
    usage: Usage


class _Capped:
    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.chunks: list[bytes] = []
        self.size = 0
        self.truncated = False

    def feed(self, data: bytes) -> None:
        room = self.cap - self.size
        if room <= 0:
            self.truncated = True
            return
        if len(data) > room:
            data = data[:room]
            self.truncated = True
        self.chunks.append(data)
        self.size += len(data)

    def value(self) -> bytes:
        return b"".join(self.chunks)


# Everything between fork and bubblewrap is exec'd programs, no Python: with no preexec_fn the
# large harness process is vfork'ed, which is several ms cheaper per call than fork. A fixed
# script joins the call's cgroups (before anything can fork), nsenter joins the sandbox's network
# namespace, setpriv drops to the sandbox's host uid, then bubblewrap builds the sandbox.
_JOIN_CGROUPS = 'while [ "$1" != -- ]; do echo 0 > "$1" || exit 125; shift; done; shift; exec "$@"'


def launch_chain(
    bwrap_argv: Sequence[str],
    procs_files: Sequence[str],
    netns_path: str | None,
    uid: int,
    gid: int,
    status_fd: int,
) -> list[str]:
    chain = ["/bin/sh", "-c", _JOIN_CGROUPS, "corral-launch", *procs_files, "--"]
    if netns_path is not None:
        chain += ["nsenter", f"--net={netns_path}", "--"]
    chain += ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
    return [*chain, bwrap_argv[0], "--json-status-fd", str(status_fd), *bwrap_argv[1:]]


def _sandbox_started(status: bytes) -> bool:
    """bubblewrap reports the command's pid once the sandbox is built; no report, no sandbox."""
    for line in status.decode("utf-8", "replace").splitlines():
        try:
            if "child-pid" in json.loads(line):
                return True
        except (ValueError, TypeError):
            continue
    return False


def launch(
    argv: Sequence[str],
    *,
    cgroup: CallCgroup,
    uid: int,
    gid: int,
    netns_path: str | None,
    pass_fds: Sequence[int],
    timeout_s: float,
    output_max_bytes: int,
    kill_on_pids_limit: bool,
    stdin: bytes | None,
    kill_at_exit: bool,
) -> RawOutcome:
    status_r, status_w = os.pipe()
    start = time.monotonic()
    try:
        chain = launch_chain(argv, cgroup.procs_files(), netns_path, uid, gid, status_w)
        proc = subprocess.Popen(
            chain,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(*pass_fds, status_w),
            close_fds=True,
            env={"PATH": _LAUNCH_PATH},
        )
    except (OSError, subprocess.SubprocessError) as exc:
        os.close(status_r)
        raise SandboxSetupError(f"cannot start the sandboxed process: {exc}") from exc
    finally:
        os.close(status_w)
    try:
        out, err = _Capped(output_max_bytes), _Capped(output_max_bytes)
        stop_reason = _pump(proc, out, err, stdin, cgroup, start + timeout_s, kill_on_pids_limit)
        exit_code = proc.wait()
        status = _read_all(status_r)
    finally:
        os.close(status_r)
    duration = time.monotonic() - start
    if kill_at_exit:
        cgroup.kill()
    if stop_reason is None and not _sandbox_started(status):
        # The harness failed (cgroup join, netns, uid drop or bubblewrap's own setup): never
        # present that as the command's output.
        tail = err.value().decode("utf-8", "replace").strip()[-500:]
        raise SandboxSetupError(f"the sandbox could not be set up (exit {exit_code}): {tail}")
    usage = cgroup.usage()
    if stop_reason is None and usage.oom_kills > 0:
        stop_reason = "memory"
    if exit_code < 0:
        exit_code = 128 - exit_code
    return RawOutcome(
        exit_code, out.value(), err.value(), out.truncated, err.truncated, duration, stop_reason, usage
    )


def _read_all(fd: int) -> bytes:
    os.set_blocking(fd, False)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _pump(
    proc: subprocess.Popen[bytes],
    out: _Capped,
    err: _Capped,
    stdin: bytes | None,
    cgroup: CallCgroup,
    deadline: float,
    kill_on_pids_limit: bool,
) -> str | None:
    sel = selectors.DefaultSelector()
    assert proc.stdout is not None and proc.stderr is not None
    sel.register(proc.stdout, selectors.EVENT_READ, out)
    sel.register(proc.stderr, selectors.EVENT_READ, err)
    pending = memoryview(stdin or b"")
    if proc.stdin is not None:
        if pending:
            os.set_blocking(proc.stdin.fileno(), False)
            sel.register(proc.stdin, selectors.EVENT_WRITE, None)
        else:
            proc.stdin.close()
    stop: str | None = None
    exited_at: float | None = None
    pids_hits_before = cgroup.pids_limit_hits() if kill_on_pids_limit else 0
    next_pids_check = time.monotonic() + _PIDS_POLL_S
    try:
        while sel.get_map() or proc.poll() is None:
            now = time.monotonic()
            if stop is None and now >= deadline:
                stop = "timeout"
                cgroup.kill()
            if kill_on_pids_limit and stop is None and now >= next_pids_check:
                next_pids_check = now + _PIDS_POLL_S
                if cgroup.pids_limit_hits() > pids_hits_before:
                    stop = "pids"
                    cgroup.kill()
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > 0.2:
                break  # a survivor (outlive_call) holds the pipes; the call is over anyway
            wait = max(0.0, min(deadline - now, _PIDS_POLL_S if kill_on_pids_limit else 0.25))
            if not sel.get_map():
                time.sleep(min(wait, 0.005))
                continue
            for key, _ in sel.select(timeout=wait if exited_at is None else 0.05):
                if key.data is None:  # stdin writable
                    try:
                        n = os.write(key.fd, pending[:65536])
                    except BrokenPipeError:
                        n = len(pending)
                    pending = pending[n:]
                    if not pending:
                        sel.unregister(key.fileobj)
                        assert proc.stdin is not None
                        proc.stdin.close()
                    continue
                chunk = os.read(key.fd, 65536)
                if chunk:
                    key.data.feed(chunk)
                else:
                    sel.unregister(key.fileobj)
    finally:
        for key in list(sel.get_map().values()):
            sel.unregister(key.fileobj)
        sel.close()
        for f in (proc.stdout, proc.stderr, proc.stdin):
            if f is not None:
                f.close()
    return stop
