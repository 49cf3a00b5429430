"""Process-wide collectors shared by every harness.

The exec collector traces the whole machine and costs tens of milliseconds to start
(its BPF object loaded through libbpf; a second where bpftrace stands in), so one
instance serves every harness of the process;
its events are routed to the harness that owns the call's sandbox.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable

import psutil

from corral.errors import CollectorError
from corral.events import Event, ProcessExit
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
        self._launched: ExecCollector | None = None  # prestarted, not yet waited for
        self._routes: dict[str, tuple[Emit, int]] = {}  # sandbox id -> (emit, live scopes)

    def _route(self, event: Event) -> None:
        route = self._routes.get(event.sandbox_id or "")
        if route is not None:
            route[0](event)

    def prestart(self) -> None:
        """Launch the tracer now without waiting for its first sync: its probes come up (bpftrace
        compiles them, about a second) while the caller loads rules and builds its sandbox;
        ``collector`` waits for them."""
        with self._lock:
            if self._collector is not None or self._launched is not None:
                return
            try:
                self._launched = self._launch()
            except CollectorError:
                return  # ``collector`` tries again and reports it

    def _launch(self) -> ExecCollector:
        c = ExecCollector(self._route, host=node_address(), uid_range=self._uid_range)
        atexit.register(c.close, wait=False)
        c.launch()
        return c

    def collector(self) -> ExecCollector:
        with self._lock:
            if self._collector is None:
                # CollectorError if no tracer can trace: calls must not run unobserved
                c, self._launched = self._launched or self._launch(), None
                c.wait_ready()
                self._collector = c
            return self._collector

    def observer(self, emit: Emit) -> RoutedExec:
        return RoutedExec(self, emit)

    def register(self, sandbox_id: str, emit: Emit) -> None:
        with self._lock:
            _, n = self._routes.get(sandbox_id, (emit, 0))
            self._routes[sandbox_id] = (emit, n + 1)

    def unregister(self, sandbox_id: str) -> None:
        with self._lock:
            route = self._routes.get(sandbox_id)
            if route is None:
                return
            if route[1] <= 1:
                del self._routes[sandbox_id]
            else:
                self._routes[sandbox_id] = (route[0], route[1] - 1)


class RoutedExec:
    """A CallObserver that sends the shared collector's events of its calls to one harness.

    The exit of a call's first process is dropped: it is the sandbox's own process (forked by the
    zygote, never exec'd), not something the agent ran, so it has no image.
    """

    def __init__(self, shared: SharedExec, emit: Emit) -> None:
        self._shared = shared
        self._emit = emit
        self._collector = shared.collector()

    def _filtered(self, event: Event) -> None:
        data = event.data
        if isinstance(data, ProcessExit) and data.Image is None:
            return
        self._emit(event)

    def call_started(self, scope: CallScope) -> None:
        self._shared.register(scope.sandbox_id, self._filtered)
        try:
            self._collector.call_started(scope)
        except BaseException:
            self._shared.unregister(scope.sandbox_id)
            raise

    async def call_finished(self, scope: CallScope, *, lingering: bool = False) -> None:
        await self._collector.call_finished(scope, lingering=lingering)

    def scope_released(self, scope: CallScope) -> None:
        try:
            self._collector.scope_released(scope)
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
            try:
                self.collector.poll()
            except Exception as exc:  # a poller that dies must not leave granted calls unwatched
                self.collector.fail(f"the GPU poller failed: {exc!r}")
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def own_process_tree() -> set[int]:
    """The harness process and its descendants: the declared training workload by default."""
    me = psutil.Process()
    return {me.pid, *(c.pid for c in me.children(recursive=True))}
