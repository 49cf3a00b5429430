"""Process-wide collectors shared by every harness.

The exec collector runs one bpftrace process for the whole machine view and costs
about a second to start, so one instance serves every harness of the process;
its events are routed to the harness that owns the call's sandbox.
"""

from __future__ import annotations

import atexit
import os
import shutil
import threading
from collections.abc import Callable

import psutil

from corral.events import Event, ProcessExit, ProcessStart
from corral.harness._host import node_address
from corral.monitor import ExecCollector, GpuCollector, NvmlSource
from corral.sandbox import CallScope

Emit = Callable[[Event], None]


class SharedExec:
    """One lazily started ExecCollector; ``observer(emit)`` gives a harness its routed view.

    It traces only the uids sandboxes run as, so other processes of the node cost nothing.
    """

    def __init__(self, uid_range: tuple[int, int]) -> None:
        self._uid_range = uid_range
        self._lock = threading.Lock()
        self._collector: ExecCollector | None = None
        self._routes: dict[str, Emit] = {}

    def _route(self, event: Event) -> None:
        emit = self._routes.get(event.sandbox_id or "")
        if emit is not None:
            emit(event)

    def collector(self) -> ExecCollector:
        with self._lock:
            if self._collector is None:
                c = ExecCollector(self._route, host=node_address(), uid_range=self._uid_range)
                c.start()  # CollectorError if bpftrace cannot trace: calls must not run unobserved
                self._collector = c
                atexit.register(c.close)
            return self._collector

    def observer(self, emit: Emit) -> RoutedExec:
        return RoutedExec(self, emit)

    def register(self, sandbox_id: str, emit: Emit) -> None:
        with self._lock:
            self._routes[sandbox_id] = emit

    def unregister(self, sandbox_id: str) -> None:
        with self._lock:
            self._routes.pop(sandbox_id, None)


class RoutedExec:
    """A CallObserver that sends the shared collector's events of its calls to one harness.

    The harness's own bubblewrap processes (started by this process, confining the
    call) are dropped: they are the sandbox, not something the agent ran.
    """

    def __init__(self, shared: SharedExec, emit: Emit) -> None:
        self._shared = shared
        self._emit = emit
        self._collector = shared.collector()
        self._bwrap = shutil.which("bwrap") or "/usr/bin/bwrap"

    def _filtered(self, event: Event) -> None:
        data = event.data
        if isinstance(data, ProcessStart):
            if data.Image == self._bwrap and data.ParentProcessId == os.getpid():
                return
        elif isinstance(data, ProcessExit) and data.Image == self._bwrap:
            return
        self._emit(event)

    def call_started(self, scope: CallScope) -> None:
        self._shared.register(scope.sandbox_id, self._filtered)
        self._collector.call_started(scope)

    def call_finished(self, scope: CallScope) -> None:
        try:
            self._collector.call_finished(scope)
        finally:
            self._shared.unregister(scope.sandbox_id)


_shared: dict[tuple[int, int], SharedExec] = {}
_shared_lock = threading.Lock()


def shared_exec(uid_range: tuple[int, int]) -> SharedExec:
    """The process's exec collector for sandboxes of this uid range."""
    with _shared_lock:
        if uid_range not in _shared:
            _shared[uid_range] = SharedExec(uid_range)
        return _shared[uid_range]


_gpu_source: NvmlSource | None = None
_gpu_lock = threading.Lock()


def gpu_source() -> NvmlSource:
    """NVML, opened once per process; its ``status`` says "ok" or why there is no GPU."""
    global _gpu_source
    with _gpu_lock:
        if _gpu_source is None:
            _gpu_source = NvmlSource.open()
        return _gpu_source


class GpuPoller:
    """A harness's GPU collector and the thread that polls it."""

    def __init__(self, collector: GpuCollector, interval_s: float) -> None:
        self.collector = collector
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(interval_s,), name="corral-gpu", daemon=True)
        self._thread.start()

    def _loop(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            self.collector.poll()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def own_process_tree() -> set[int]:
    """The harness process and its descendants: the declared training workload by default."""
    me = psutil.Process()
    return {me.pid, *(c.pid for c in me.children(recursive=True))}
