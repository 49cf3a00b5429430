"""Running one call on the event loop: hand it to the zygote, pump its output, enforce time and pids.

No thread per call: the output pipes and the reply socket are watched by the
running asyncio loop. Output is capped per stream (what is over the cap is read
and dropped, so the command never blocks on a full pipe); each chunk kept can be
streamed to the caller as it arrives. A call the zygote never reported as
started is a harness failure (``SandboxSetupError``), never the command's output.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from corral.errors import SandboxSetupError
from corral.sandbox._cgroups import CallCgroup, Usage
from corral.sandbox._offloop import busy, off_loop
from corral.sandbox._pace import pace
from corral.sandbox._zygote import _proto
from corral.sandbox._zygote_client import Zygote

Stream = Literal["stdout", "stderr"]
OutputSink = Callable[[Stream, bytes], None]
StopReason = Literal["timeout", "memory", "pids"]
_READ = 65536
_DRAIN_GRACE_S = 0.05  # after the command exits, output still buffered is read for this long at most


@dataclass(frozen=True)
class RawOutcome:
    exit_code: int
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    duration_s: float
    stop_reason: StopReason | None
    usage: Usage


class _Capped:
    def __init__(self, name: Stream, cap: int, sink: OutputSink | None) -> None:
        self.name: Stream = name
        self.cap = cap
        self.sink = sink
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
        if self.sink is not None:
            self.sink(self.name, data)

    def value(self) -> bytes:
        return b"".join(self.chunks)


class OutputDrain:
    """Reads and discards what processes left running by earlier calls still write to those calls'
    pipes, until they close them or the sandbox closes (``close``)."""

    def __init__(self) -> None:
        self._fds: dict[int, asyncio.AbstractEventLoop] = {}

    def adopt(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self._fds[fd] = loop
        loop.add_reader(fd, self._read, fd)

    def _read(self, fd: int) -> None:
        try:
            if os.read(fd, _READ):
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        self._drop(fd)

    def _drop(self, fd: int) -> None:
        loop = self._fds.pop(fd, None)
        if loop is not None and not loop.is_closed():
            loop.remove_reader(fd)
        os.close(fd)

    def __len__(self) -> int:
        return len(self._fds)

    def close(self) -> None:
        for fd in list(self._fds):
            self._drop(fd)


class PidsWatch:
    """One periodic check of every live call's pids counter (cgroup v1 cannot notify), not one per call.

    The period grows with the number of live calls so the check stays cheap on a busy node.
    """

    def __init__(self, base_s: float = 0.02, per_call_s: float = 0.0001) -> None:
        self._base_s = base_s
        self._per_call_s = per_call_s
        self._calls: dict[int, tuple[CallCgroup, int, Callable[[], None]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next = 0

    def add(self, cgroup: CallCgroup, on_hit: Callable[[], None]) -> int:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new loop (tests, a restarted portal): start over on it
            self._calls.clear()
            self._task = None
            self._loop = loop
        self._next += 1
        self._calls[self._next] = (cgroup, cgroup.pids_limit_hits(), on_hit)
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run())
        return self._next

    def remove(self, key: int) -> None:
        self._calls.pop(key, None)

    async def _run(self) -> None:
        while self._calls:
            await asyncio.sleep(self._base_s + self._per_call_s * len(self._calls))
            # One counter file per live call: read on a worker, so the loop's calls are not held up.
            calls = list(self._calls.items())
            hit = await off_loop(functools.partial(_pids_hits, calls), offload=busy(len(calls)))
            for key in hit:
                entry = self._calls.pop(key, None)
                if entry is not None:
                    entry[2]()


def _pids_hits(calls: list[tuple[int, tuple[CallCgroup, int, Callable[[], None]]]]) -> list[int]:
    return [key for key, (cg, before, _) in calls if cg.pids_limit_hits() > before]


@dataclass(frozen=True)
class CallLimits:
    timeout_s: float
    output_max_bytes: int
    kill_on_pids_limit: bool


# Starts a call's first process with the given stdin, stdout and stderr; returns its reply socket.
Starter = Callable[[Sequence[int]], Awaitable[socket.socket]]


async def request_in_cgroup(
    zygote: Zygote, msg: dict[str, object], fds: Sequence[int], cgroup: CallCgroup
) -> socket.socket:
    """Ask the zygote for a call's first process, which joins ``cgroup`` (its cgroup.procs files
    travel after ``fds``); returns the reply socket."""
    cg_fds = [os.open(p, os.O_WRONLY | os.O_CLOEXEC) for p in cgroup.procs_files()]
    try:
        return await zygote.request(msg, [*fds, *cg_fds])
    finally:
        for fd in cg_fds:
            os.close(fd)


def zygote_starter(
    zygote: Zygote, msg: dict[str, object], ns_fds: Sequence[int], cgroup: CallCgroup
) -> Starter:
    """The ordinary start: the zygote forks the call's first process, which joins ``cgroup``."""
    return lambda stdio: request_in_cgroup(zygote, msg, [*stdio, *ns_fds], cgroup)


async def execute(
    start_call: Starter,
    cgroup: CallCgroup,
    limits: CallLimits,
    *,
    stdin: bytes | None,
    pids_watch: PidsWatch,
    on_output: OutputSink | None = None,
    episode: bool = False,
    drain: OutputDrain | None = None,
) -> RawOutcome:
    """Start the call with ``start_call`` and return when its first process has exited."""
    loop = asyncio.get_running_loop()
    start = time.monotonic()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    if stdin:
        in_r, in_w = os.pipe()
    else:
        in_r, in_w = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), -1
    try:
        reply = await start_call([in_r, out_w, err_w])
    except BaseException:
        for fd in (out_r, err_r, in_w):
            if fd >= 0:
                os.close(fd)
        raise
    finally:
        for fd in (out_w, err_w, in_r):
            os.close(fd)
    run = _Run(loop, reply, out_r, err_r, in_w, stdin or b"", limits, on_output, cgroup)
    watch_key = pids_watch.add(cgroup, lambda: run.stop("pids")) if limits.kill_on_pids_limit else None
    timer = loop.call_later(limits.timeout_s, run.stop, "timeout")
    try:
        exit_code = await run.wait()
    finally:
        timer.cancel()
        if watch_key is not None:
            pids_watch.remove(watch_key)
        run.close(drain if episode else None)

    def settle() -> Usage:
        if not episode:
            cgroup.kill()  # nothing the call started outlives it (its pid namespace is gone already)
        return cgroup.usage()

    # Usually nothing is left to kill: a few reads, then, on the loop (a worker thread's hand-over
    # cost more). ``kill`` waits for survivors to go, so that is done off the loop.
    usage = cgroup.usage() if episode or not cgroup.has_process() else await off_loop(settle)
    if run.stop_reason is None and limits.kill_on_pids_limit and usage.pids_limit_hits > run.pids_before:
        run.stop_reason = "pids"  # it hit the limit and ended before the watch came round
    if run.stop_reason is None and usage.oom_kills > 0:
        run.stop_reason = "memory"
    return RawOutcome(
        exit_code,
        run.out.value(),
        run.err.value(),
        run.out.truncated,
        run.err.truncated,
        time.monotonic() - start,
        run.stop_reason,
        usage,
    )


class _Run:
    """The loop-side state of one running call."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        reply: socket.socket,
        out_r: int,
        err_r: int,
        in_w: int,
        stdin: bytes,
        limits: CallLimits,
        sink: OutputSink | None,
        cgroup: CallCgroup,
    ) -> None:
        self.loop = loop
        self.reply = reply
        self.cgroup = cgroup
        self.out = _Capped("stdout", limits.output_max_bytes, sink)
        self.err = _Capped("stderr", limits.output_max_bytes, sink)
        self.stop_reason: StopReason | None = None
        self.pids_before = cgroup.pids_limit_hits()
        self._fds = {out_r: self.out, err_r: self.err}
        self._open = set(self._fds)
        self._in_w = in_w
        self._pending = memoryview(stdin)
        self._exit: asyncio.Future[int] = loop.create_future()
        self._eof: asyncio.Future[None] = loop.create_future()
        self._started = False
        self._setup_error: str | None = None
        reply.setblocking(False)
        for fd in self._fds:
            os.set_blocking(fd, False)
            loop.add_reader(fd, self._on_output, fd)
        loop.add_reader(reply.fileno(), self._on_reply)
        if in_w >= 0:
            os.set_blocking(in_w, False)
            loop.add_writer(in_w, self._on_stdin)

    def stop(self, reason: StopReason) -> None:
        if self.stop_reason is None and not self._exit.done():
            self.stop_reason = reason
            self.cgroup.kill()

    def _on_output(self, fd: int) -> None:
        try:
            chunk = os.read(fd, _READ)
        except BlockingIOError:
            return
        if chunk:
            self._fds[fd].feed(chunk)
            return
        self.loop.remove_reader(fd)
        self._open.discard(fd)
        if not self._open and not self._eof.done():
            self._eof.set_result(None)

    def _on_stdin(self) -> None:
        try:
            n = os.write(self._in_w, self._pending[:_READ])
        except BlockingIOError:
            return
        except (BrokenPipeError, OSError):
            n = len(self._pending)
        self._pending = self._pending[n:]
        if not self._pending:
            self._close_stdin()

    def _close_stdin(self) -> None:
        if self._in_w >= 0:
            self.loop.remove_writer(self._in_w)
            os.close(self._in_w)
            self._in_w = -1

    def _on_reply(self) -> None:
        while True:
            try:
                msg, fds = _proto.recv(self.reply)
            except BlockingIOError:
                return
            except (OSError, ValueError) as exc:
                msg, fds = None, []
                self._setup_error = self._setup_error or f"reply channel failed: {exc}"
            for fd in fds:
                os.close(fd)
            if msg is None:
                self.loop.remove_reader(self.reply.fileno())
                if not self._exit.done():
                    self._exit.set_exception(
                        SandboxSetupError(self._setup_error or "the sandbox zygote died during the call")
                    )
                return
            if "setup_error" in msg:
                self._setup_error = str(msg["setup_error"])
            elif "spawned" in msg:
                self._started = True
            elif "exit" in msg and not self._exit.done():
                if not self._started and self.stop_reason is None:
                    self._exit.set_exception(
                        SandboxSetupError(
                            f"the sandbox could not start the call: {self._setup_error or 'no reason given'}"
                        )
                    )
                else:
                    self._exit.set_result(int(msg["exit"]))

    async def wait(self) -> int:
        code = await self._exit
        await pace()  # calls started together end together: what follows their exits takes turns
        self._close_stdin()
        if self._open:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._eof), _DRAIN_GRACE_S)
            for fd in list(self._open):  # read what is buffered now; a survivor may hold the pipe open
                self._on_output(fd)
        return code

    def close(self, drain: OutputDrain | None = None) -> None:
        """Release the call's fds. Output pipes a surviving process still holds go to ``drain``
        (episode mode): closing them would kill that process with SIGPIPE at its next write."""
        self._close_stdin()
        for fd in self._fds:
            if fd in self._open:
                self.loop.remove_reader(fd)
                if drain is not None:
                    drain.adopt(self.loop, fd)
                    continue
            os.close(fd)
        self._open.clear()
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_reader(self.reply.fileno())
        self.reply.close()
