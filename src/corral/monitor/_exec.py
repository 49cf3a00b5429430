"""The process collector: every exec and exit inside registered call cgroups.

Two tracers write the same records: a BPF object compiled once per node and
loaded through libbpf (``_libbpf``, attached in milliseconds), and bpftrace
(``_bpftrace``, which compiles its program on every start, about a second).
``tracer="auto"`` takes the first and falls back to the second, saying why.

Why tracepoints and not the proc connector: the connector reports pid and event
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
kernel-time order. libbpf's one ring buffer is read in the order records were
reserved on any CPU, so there, once the probes are up, one marker from wherever
this thread runs is a whole round. ``call_finished`` runs a sync round before it
returns: when it returns, every event of the call has been emitted. With the
ordered ring it does so on the calling loop, woken by the reader thread when its
marker is read, not through a worker thread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Literal

from corral.errors import CollectorError
from corral.events import Event, Health
from corral.monitor import _bpfobject, _bpftrace
from corral.monitor._execrecords import ExecDone, ExecEnter, Lost, Marker, Record
from corral.monitor._exectrack import ExecTracker
from corral.monitor._libbpf import LibbpfTracer
from corral.sandbox import CallScope, Coalescer, pace

Emit = Callable[[Event], None]
HealthStatus = Literal["ok", "degraded", "failed", "backpressure"]
TracerKind = Literal["auto", "libbpf", "bpftrace"]
Tracer = LibbpfTracer | _bpftrace.BpftraceTracer
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


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


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
        max_args: int = _bpfobject.MAX_ARGS,
        strlen: int = _bpfobject.STRLEN,
        interval_s: float = 0.05,
        sync_timeout_s: float = 10.0,
        start_timeout_s: float = 60.0,
        bpftrace: str = "bpftrace",
        uid_range: tuple[int, int] | None = None,
        tracer: TracerKind = "auto",
    ) -> None:
        """``uid_range``: trace only tasks of these uids (sandboxes run as their own host uids),
        so the rest of the node's processes cost nothing. ``tracer``: see the module's text."""
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
        self._tracer_kind = tracer
        self._fallback: str | None = None  # why "auto" runs bpftrace
        self._cpus = sorted(os.sched_getaffinity(0))
        self._cond = threading.Condition()
        self._heap: list[tuple[int, int, Record]] = []
        self._order = itertools.count()
        self._marks: dict[int, tuple[int, int]] = {}  # cpu -> (token, ns) of its latest marker
        self._token = 0
        self._drain_lock = threading.Lock()
        self._tracker = ExecTracker()
        self._truncated: set[int] = set()  # threads whose exec's argv the probe cut (read from /proc)
        # Registrations from the calls' loop, applied by the next drain before it feeds a record: a
        # call never waits for a drain (nor a drain's sync round) to start or end.
        self._changes: collections.deque[tuple[bool, int]] = collections.deque()
        self._scopes: dict[int, CallScope] = {}
        self._tracer: Tracer | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._failure: str | None = None
        self._wall_offset_ns = time.time_ns() - time.monotonic_ns()
        self.records = 0
        self.lost = 0
        self.emitted = 0
        self._settler = Coalescer(self.settle)
        # Loop-side syncs waiting for their marker (token order): resolved by the reader thread.
        self._waiters: collections.deque[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = (
            collections.deque()
        )
        self._ready = False

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start the tracer and wait until its probes demonstrably fire; CollectorError otherwise."""
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the tracer and return while its probes attach (bpftrace: about a second, while
        it compiles them); ``wait_ready`` then waits for them. Calls are refused until it has."""
        if self._tracer is not None:
            return
        try:
            self._tracer = self._open_tracer()
        except CollectorError as exc:
            self._fail(str(exc))
            raise
        for target, name in ((self._pump, "reader"), (self._loop, "sync")):
            t = threading.Thread(target=target, name=f"corral-exec-{name}", daemon=True)
            self._threads.append(t)
        self._threads[0].start()

    @property
    def tracer(self) -> str | None:
        """Which tracer runs ("libbpf" or "bpftrace"), once launched."""
        return None if self._tracer is None else self._tracer.name

    def _open_tracer(self) -> Tracer:
        exclude = _bpftrace.own_cgroup_id()
        if self._tracer_kind != "bpftrace":
            try:
                return self._open_libbpf(exclude)
            except CollectorError as exc:
                if self._tracer_kind == "libbpf":
                    raise
                self._fallback = str(exc)
        return _bpftrace.spawn(
            self._max_args, self._strlen, exclude, self._bpftrace, self._uid_range, self._marker
        )

    def _open_libbpf(self, exclude: int) -> LibbpfTracer:
        def load(path: Path) -> LibbpfTracer:
            return LibbpfTracer(path, exclude_cgroup=exclude, marker=self._marker, uid_range=self._uid_range)

        path = _bpfobject.cached(self._strlen, self._max_args)
        if path is None:
            return load(_bpfobject.build(self._strlen, self._max_args))
        try:
            return load(path)
        except CollectorError:
            if _bpfobject.can_build() is not None:
                raise
        # A cached object the kernel would not take (made by another toolchain, say): build it afresh.
        _bpfobject.discard(path)
        return load(_bpfobject.build(self._strlen, self._max_args))

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
        how = f"{self.tracer}" + (f"; libbpf unavailable: {self._fallback}" if self._fallback else "")
        self._health("ok", f"tracing execs on {len(self._cpus)} CPUs ({how})")

    def close(self, *, wait: bool = True) -> None:
        """Stop tracing. ``wait=False`` (at interpreter exit) does not wait for the kernel to tear
        the probes and buffers down (bpftrace: about a quarter of a second)."""
        self._stopping.set()
        if self._tracer is not None:
            self._tracer.stop(wait=wait)
        if not wait:
            return
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
        if self._ready and self._tracer is not None and self._tracer.ordered:
            await self._settle_on_loop()
        else:
            await self._settler()

    async def _settle_on_loop(self) -> None:
        """``settle`` without a thread: a marker syscall, a wait on this loop until the reader has
        read it, and the drain. Each hand-over to another thread cost a warm call 0.1-0.3 ms."""
        self._check()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._cond:
            self._token += 1
            token = self._token
            self._waiters.append((token, loop, fut))
        self._markers(token)  # a lost marker is answered by the periodic sync's later ones
        assert self._tracer is not None
        self._tracer.read_now()  # the marker is in the ring: read it here, or the reader thread does
        try:
            async with asyncio.timeout(self._sync_timeout_s):
                await fut
        except TimeoutError:
            self._fail(f"tracer did not answer a sync within {self._sync_timeout_s}s")
        self._check()
        if self._drain_lock.acquire(blocking=False):
            try:
                self._drain()
            finally:
                self._drain_lock.release()
        else:  # the periodic drain runs now, from a watermark that may be older than this marker
            await asyncio.to_thread(self._locked_drain)
        await pace()  # the calls woken by one read of the ring take turns for what follows

    def _locked_drain(self) -> None:
        with self._drain_lock:
            self._drain()

    def scope_released(self, scope: CallScope) -> None:
        """The call's cgroup is gone: forget it (its last events were emitted by ``call_finished``)."""
        self._scopes.pop(scope.cgroup_id, None)  # from now on, a late record of it is dropped
        self._changes.append((False, scope.cgroup_id))

    def settle(self) -> None:
        """Block until every record written before now is read and emitted."""
        self._sync(self._sync_timeout_s)
        self._locked_drain()

    @property
    def ignored(self) -> int:
        """Records from processes outside every registered call."""
        return self._tracker.ignored

    # -- internals ---------------------------------------------------------------------

    def _check(self) -> None:
        if self._failure is not None:
            raise CollectorError(f"exec collector failed: {self._failure}")
        if self._tracer is None:
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
            self._wake(len(self._waiters))  # each finds the failure

    def _wake(self, count: int) -> None:
        """Resolve the first ``count`` loop-side waiters (``_cond`` held)."""
        for _ in range(count):
            _token, loop, fut = self._waiters.popleft()
            with contextlib.suppress(RuntimeError):  # its loop has closed: nobody waits any more
                loop.call_soon_threadsafe(_resolve, fut)

    def _pump(self) -> None:
        assert self._tracer is not None
        why = self._tracer.pump(self._take, self._unreadable, self._strlen)
        if not self._stopping.is_set():
            self._fail(why or f"{self._tracer.name} stopped")

    def _unreadable(self, message: str) -> None:
        self._health("degraded", f"unreadable tracer output: {message}", 1)

    def _take(self, rec: Record | Lost) -> None:
        """One record from the tracer (in the reader thread): losses are reported, the rest queued."""
        if isinstance(rec, Lost):
            self.lost += rec.count
            self._health("failed", f"{rec.count} tracer records lost (ring buffer overflow)", rec.count)
            return
        if isinstance(rec, ExecEnter) and rec.truncated:
            self._truncated.add(rec.tid)
        elif isinstance(rec, ExecDone):
            cmd = _cmdline(rec.pid) if rec.old_pid in self._truncated else None
            self._truncated.discard(rec.old_pid)
            rec = ExecDone(**{**rec.__dict__, "cwd": _readlink(f"/proc/{rec.pid}/cwd"), "cmdline": cmd})
        with self._cond:
            self.records += 1
            if isinstance(rec, Marker):
                # Concurrent syncs interleave their markers: keep the highest token answered,
                # and the newest marker's time (everything before it on this CPU is read; on
                # every CPU when the tracer's records come in one ordered stream).
                assert self._tracer is not None
                for cpu in self._cpus if self._tracer.ordered else (rec.cpu,):
                    token, ns = self._marks.get(cpu, (0, 0))
                    self._marks[cpu] = (max(rec.token, token), max(rec.ns, ns))
                self._cond.notify_all()
                answered = min(self._marks.get(c, (0, 0))[0] for c in self._cpus)
                self._wake(sum(1 for w in self._waiters if w[0] <= answered))
            else:
                heapq.heappush(self._heap, (rec.ns, next(self._order), rec))

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
        """A marker on every CPU, or once the probes are known to fire, a single one when the
        tracer's records are ordered across CPUs: moving this thread onto each CPU in turn cost
        some 40 us a CPU, most of a call's sync on two CPUs and milliseconds on a large node."""
        assert self._tracer is not None
        if self._ready and self._tracer.ordered:
            with contextlib.suppress(OSError):
                os.getpriority(self._marker, token)
            return
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
                self.settle()
            except CollectorError:
                return
