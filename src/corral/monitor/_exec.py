"""The process collector: every exec and exit inside registered call cgroups.

Why bpftrace and not the proc connector: the connector reports pid and event
only; argv, cgroup, cwd and image must then be read from ``/proc`` after the
fact, and a short-lived process is gone by then (see
``benchmarks/bench_monitor.py``, which measures the loss). The tracepoints see
argv in the exec'ing task itself and the ``cgroup`` builtin ties each record to
a call, so nothing depends on winning a race. What is still read from ``/proc``
(best effort, on arrival): the working directory, and the full command line
when a very long argv was cut by the probe (``argv_truncated`` says so).

Records from different CPUs arrive out of order. A sync round pins this thread
to each CPU in turn and makes a marker syscall there; once every CPU's marker
is read, every record written before it has been read too (one ring buffer per
CPU, read in order), so records older than the oldest marker are processed in
kernel-time order. ``call_finished`` runs a sync round before it returns: when
it returns, every event of the call has been emitted.
"""

from __future__ import annotations

import collections
import contextlib
import heapq
import itertools
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Literal

from corral.errors import CollectorError
from corral.events import Event, Health
from corral.monitor import _bpftrace
from corral.monitor._execrecords import ArgvAssembler, ExecDone, ExecEnter, Lost, Marker, ParseError, Record
from corral.monitor._exectrack import ExecTracker
from corral.sandbox import CallScope, Coalescer

Emit = Callable[[Event], None]
HealthStatus = Literal["ok", "degraded", "failed", "backpressure"]
COMPONENT = "monitor.exec"
# Markers are re-sent this often until every CPU has answered: while the probes attach (about a
# second for bpftrace to compile and load them) those sent earlier are lost, and a start waits for
# the first one after the attach.
_RESYNC_S = 0.05


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def _cmdline(pid: int) -> tuple[str, ...] | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    parts = raw.split(b"\0")
    if parts and parts[-1] == b"":
        parts.pop()
    return tuple(p.decode(errors="surrogateescape") for p in parts) or None


class ExecCollector:
    """Follows calls (a ``CallObserver``) and emits ProcessStart/ProcessExit/FileDenied events."""

    def __init__(
        self,
        emit: Emit,
        *,
        host: str | None = None,
        max_args: int = 64,
        strlen: int = 200,
        interval_s: float = 0.05,
        sync_timeout_s: float = 10.0,
        start_timeout_s: float = 60.0,
        bpftrace: str = "bpftrace",
        uid_range: tuple[int, int] | None = None,
    ) -> None:
        """``uid_range``: trace only tasks of these uids (sandboxes run as their own host uids),
        so the rest of the node's processes cost nothing."""
        self._emit = emit
        self._uid_range = uid_range
        self._marker = _bpftrace.new_marker()
        self._host = host or socket.gethostname()
        self._max_args = max_args
        self._strlen = strlen
        self._interval_s = interval_s
        self._sync_timeout_s = sync_timeout_s
        self._start_timeout_s = start_timeout_s
        self._bpftrace = bpftrace
        self._cpus = sorted(os.sched_getaffinity(0))
        self._cond = threading.Condition()
        self._heap: list[tuple[int, int, Record]] = []
        self._order = itertools.count()
        self._marks: dict[int, tuple[int, int]] = {}  # cpu -> (token, ns) of its latest marker
        self._token = 0
        self._drain_lock = threading.Lock()
        self._tracker = ExecTracker()
        # Registrations from the calls' loop, applied by the next drain before it feeds a record: a
        # call never waits for a drain (nor a drain's sync round) to start or end.
        self._changes: collections.deque[tuple[bool, int]] = collections.deque()
        self._scopes: dict[int, CallScope] = {}
        self._proc: subprocess.Popen[str] | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=50)
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._failure: str | None = None
        self._wall_offset_ns = time.time_ns() - time.monotonic_ns()
        self.records = 0
        self.lost = 0
        self.emitted = 0
        self._settler = Coalescer(self.settle)
        self._ready = False

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start bpftrace and wait until its probes demonstrably fire; CollectorError otherwise."""
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start bpftrace and return while it compiles and attaches its probes (about a second);
        ``wait_ready`` then waits for them. Calls are refused until it has."""
        if self._proc is not None:
            return
        try:
            self._proc = _bpftrace.spawn(
                self._max_args,
                self._strlen,
                _bpftrace.own_cgroup_id(),
                self._bpftrace,
                self._uid_range,
                self._marker,
            )
        except CollectorError as exc:
            self._fail(str(exc))
            raise
        for target, name in (
            (self._read_stdout, "reader"),
            (self._read_stderr, "stderr"),
            (self._loop, "sync"),
        ):
            t = threading.Thread(target=target, name=f"corral-exec-{name}", daemon=True)
            self._threads.append(t)
            if name != "sync":
                t.start()

    def wait_ready(self) -> None:
        """Wait until every CPU's probes fire (``launch`` first); CollectorError, and closed, otherwise."""
        if self._ready:
            return
        try:
            self._sync(self._start_timeout_s)
        except CollectorError:
            self.close()
            raise
        self._threads[-1].start()
        self._ready = True
        self._health("ok", f"tracing execs on {len(self._cpus)} CPUs")

    def close(self, *, wait: bool = True) -> None:
        """Stop tracing. ``wait=False`` (at interpreter exit) does not wait for the kernel to tear
        bpftrace's probes and buffers down, about a quarter of a second."""
        self._stopping.set()
        if self._proc is not None and self._proc.poll() is None:
            # Killed, not terminated: every call was drained when it finished, and bpftrace's own
            # shutdown (its END probe) would add another quarter of a second.
            self._proc.kill()
            if not wait:
                return
            self._proc.wait()
        for t in self._threads:
            if t.is_alive() and t is not threading.current_thread():
                t.join(5)

    def __enter__(self) -> ExecCollector:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- CallObserver ------------------------------------------------------------------

    def call_started(self, scope: CallScope) -> None:
        self._check()
        # A record of this call is written after this returns, so it is newer than the watermark of
        # any drain that began before the change was queued: every drain that can feed it applies it.
        self._scopes[scope.cgroup_id] = scope
        self._changes.append((True, scope.cgroup_id))

    async def call_finished(self, scope: CallScope, *, lingering: bool = False) -> None:
        """Emit every event of the call so far. Calls ending together share one sync round."""
        await self._settler()

    def scope_released(self, scope: CallScope) -> None:
        """The call's cgroup is gone: forget it (its last events were emitted by ``call_finished``)."""
        self._scopes.pop(scope.cgroup_id, None)  # from now on, a late record of it is dropped
        self._changes.append((False, scope.cgroup_id))

    def settle(self) -> None:
        """Block until every record written before now is read and emitted."""
        self._sync(self._sync_timeout_s)
        with self._drain_lock:
            self._drain()

    @property
    def ignored(self) -> int:
        """Records from processes outside every registered call."""
        return self._tracker.ignored

    # -- internals ---------------------------------------------------------------------

    def _check(self) -> None:
        if self._failure is not None:
            raise CollectorError(f"exec collector failed: {self._failure}")
        if self._proc is None:
            raise CollectorError("exec collector not started")

    def _health(self, status: HealthStatus, message: str, count: int = 0) -> None:
        health = Health(component=COMPONENT, status=status, message=message, count=count)
        self._emit(Event(host=self._host, data=health))

    def _fail(self, message: str) -> None:
        if self._failure is None:
            self._failure = message
            self._health("failed", message)
        with self._cond:
            self._cond.notify_all()

    def _read_stdout(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        asm = ArgvAssembler(self._strlen)
        truncated: set[int] = set()
        for line in self._proc.stdout:
            try:
                rec = asm.feed(line)
            except ParseError as exc:
                self._health("degraded", f"unreadable tracer output: {exc}", 1)
                continue
            if rec is None:
                continue
            if isinstance(rec, Lost):
                self.lost += rec.count
                self._health("failed", f"{rec.count} tracer records lost (ring buffer overflow)", rec.count)
                rec = asm.take_pending()  # the record whose sequence number revealed the gap
                if rec is None:
                    continue
            if isinstance(rec, ExecEnter) and rec.truncated:
                truncated.add(rec.tid)
            elif isinstance(rec, ExecDone):
                cmd = _cmdline(rec.pid) if rec.old_pid in truncated else None
                truncated.discard(rec.old_pid)
                rec = ExecDone(**{**rec.__dict__, "cwd": _readlink(f"/proc/{rec.pid}/cwd"), "cmdline": cmd})
            with self._cond:
                self.records += 1
                if isinstance(rec, Marker):
                    # Concurrent syncs interleave their markers: keep the highest token answered,
                    # and the newest marker's time (everything before it on this CPU is read).
                    token = max(rec.token, self._marks.get(rec.cpu, (0, 0))[0])
                    self._marks[rec.cpu] = (token, rec.ns)
                    self._cond.notify_all()
                else:
                    heapq.heappush(self._heap, (rec.ns, next(self._order), rec))
        if not self._stopping.is_set():
            self._fail(f"bpftrace exited: {' | '.join(self._stderr) or 'no message'}")

    def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            if "RLIMIT_MEMLOCK" not in line:
                self._stderr.append(line.strip())

    def _sync(self, timeout: float) -> None:
        """Make every CPU write a marker now and wait until all are read (re-sent while probes attach)."""
        self._check()
        with self._cond:  # syncs from several threads (a settle, the periodic drain) each get their own
            self._token += 1
            token = self._token
        deadline = time.monotonic() + timeout
        while True:
            self._markers(token)
            with self._cond:
                ok = self._cond.wait_for(
                    lambda: (
                        self._failure is not None
                        or all(self._marks.get(c, (0, 0))[0] >= token for c in self._cpus)
                    ),
                    min(_RESYNC_S, max(0.0, deadline - time.monotonic())),
                )
            if self._failure is not None:
                raise CollectorError(f"exec collector failed: {self._failure}")
            if ok:
                return
            if time.monotonic() >= deadline:
                self._fail(f"tracer did not answer a sync within {timeout}s")
                raise CollectorError(f"exec collector failed: tracer did not answer a sync within {timeout}s")

    def _markers(self, token: int) -> None:
        mine = os.sched_getaffinity(0)
        try:
            for cpu in self._cpus:
                os.sched_setaffinity(0, {cpu})
                with contextlib.suppress(OSError):  # EINVAL by design: the probe fires regardless
                    os.getpriority(self._marker, token)
        finally:
            os.sched_setaffinity(0, mine)

    def _drain(self) -> None:
        while self._changes:
            added, cgroup = self._changes.popleft()
            if added:
                self._tracker.register(cgroup)
            else:
                self._tracker.unregister(cgroup)
        with self._cond:
            watermark = min(self._marks[c][1] for c in self._cpus)
            ready: list[Record] = []
            while self._heap and self._heap[0][0] <= watermark:
                ready.append(heapq.heappop(self._heap)[2])
        for rec in ready:
            out = self._tracker.feed(rec)
            if out is None:
                continue
            scope = self._scopes.get(out.cgroup)
            if scope is None:
                continue
            self._emit(
                Event(
                    time_ns=out.ns + self._wall_offset_ns,
                    host=self._host,
                    sandbox_id=scope.sandbox_id,
                    ctx=scope.ctx,
                    data=out.payload,
                )
            )
            self.emitted += 1

    def _loop(self) -> None:
        while not self._stopping.wait(self._interval_s):
            try:
                self._sync(self._sync_timeout_s)
                with self._drain_lock:
                    self._drain()
            except CollectorError:
                return
