"""The Harness: services shared by every sandbox of one process.

It owns the detector, the egress layer (started on first need), the collectors
that follow calls, and the event path: every event from any layer goes through
``emit``, which stores it, runs runtime detection on it, and hands alerts to the
call that caused them.
"""

from __future__ import annotations

import contextlib
import os
import resource
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from corral.detect import Detector
from corral.errors import InputError, StoreError
from corral.events import Alert, Event, EventStore, Health, default_store_path
from corral.harness._gpu import HarnessGpu
from corral.harness._host import node_address
from corral.harness._services import own_process_tree, shared_exec
from corral.images import ImageCache, ImageLease
from corral.monitor import GpuSource, ResourceCollector
from corral.policy import Policy
from corral.sandbox import CallObserver, Coalescer, GpuInventory, ImageView

if TYPE_CHECKING:
    from corral.egress import Egress
    from corral.harness._async_sandbox import AsyncSandbox
    from corral.harness._sync_sandbox import Sandbox

EventSink = Callable[[Event], None]
DEFAULT_STORE: Literal["default"] = "default"
StoreArg = EventStore | None | Literal["default"]

_detectors: dict[str, Detector] = {}
_detectors_lock = threading.Lock()


def shared_detector(policy: Policy) -> Detector:
    """One compiled detector per distinct detection section in this process.

    Loading the rule pack takes a few hundred ms; correlation state inside is
    grouped by sandbox and episode, so harnesses can share it safely.
    """
    key = policy.detection.model_dump_json()
    with _detectors_lock:
        det = _detectors.get(key)
        if det is None:
            det = _detectors[key] = Detector.from_policy(policy)
        return det


def open_store(policy: Policy, store: StoreArg) -> tuple[EventStore | None, bool]:
    """The store a harness records to, and whether it owns it: by default the policy's
    ``store.path`` or ``$CORRAL_HOME/events.db``; ``None`` records nowhere."""
    if store is None or isinstance(store, EventStore):
        return store, False
    return EventStore(default_store_path(policy)), True


class Harness:
    """Shared services for many sandboxes: ``with harness.sandbox() as sb: sb.run(...)``."""

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        store: StoreArg = DEFAULT_STORE,
        sinks: Sequence[EventSink] = (),
        host: str | None = None,
        detector: Detector | None = None,
        egress: Egress | None = None,
        declared_gpu_pids: Callable[[], set[int]] = own_process_tree,
        gpu_source: GpuSource | None = None,
        gpu_inventory: GpuInventory | None = None,
    ) -> None:
        """``store``: where events go (default: the policy's ``store.path`` or ``$CORRAL_HOME/events.db``;
        None: nowhere). ``declared_gpu_pids``: the processes allowed to use GPUs (the trainer); any other
        GPU compute, and all of it inside sandboxes, is flagged. ``gpu_source``: NVML by default.
        ``gpu_inventory``: the GPUs that grants are made from (default: this machine's, discovered
        on the first sandbox of a policy that grants any)."""
        self.policy = policy if policy is not None else Policy.default()
        _raise_fd_limit()
        self.host = host or node_address()
        self.store, self._own_store = open_store(self.policy, store)
        self._sinks: list[EventSink] = list(sinks)
        if self.store is not None:
            self._sinks.append(self.store.append)
        if self.policy.monitoring.process_exec:  # the tracer compiles while the rules load
            shared_exec(self._exec_uids()).prestart()
        self.detector = detector if detector is not None else shared_detector(self.policy)
        self._egress = egress
        self._own_egress = False
        self._lock = threading.Lock()
        self._call_alerts: dict[str, list[Alert]] = {}  # tool_call_id -> runtime alerts so far
        self._late: dict[str, list[Alert]] = {}  # sandbox id -> alerts of calls that had returned
        self._lingering: dict[str, str] = {}  # tool_call_id -> sandbox id, for calls whose processes live on
        self._closed = False
        self._observers: list[CallObserver] | None = None
        self._resources: ResourceCollector | None = None
        self.gpu = HarnessGpu(
            self.policy,
            self.emit,
            host=self.host,
            detector=self.detector,
            source=gpu_source,
            inventory=gpu_inventory,
            declared_pids=declared_gpu_pids,
        )
        self._flush = Coalescer(self.flush)
        self._images: ImageCache | None = None
        self._failed_sinks: set[int] = set()

    # -- services ------------------------------------------------------------------------

    def _exec_uids(self) -> tuple[int, int]:
        ident = self.policy.identity
        return ident.uid_range_start, ident.uid_range_start + ident.uid_range_size

    def egress(self) -> Egress:
        """The egress layer, started on first use (only policies that allow egress need it)."""
        from corral.egress import Egress  # loaded here too: a run without egress never pays for it

        with self._lock:
            if self._egress is None:
                self._egress = Egress.start(self.policy, self.emit, host=self.host)
                self._own_egress = True
            return self._egress

    def observers(self) -> list[CallObserver]:
        """The collectors that follow every call, started on first use as the policy asks."""
        with self._lock:
            if self._observers is None:
                mon = self.policy.monitoring
                obs: list[CallObserver] = []
                if mon.process_exec:
                    obs.append(shared_exec(self._exec_uids()).observer(self.emit))
                if mon.resources:
                    self._resources = ResourceCollector(
                        self.emit,
                        host=self.host,
                        interval_s=mon.resource_interval_s,
                        miner_min_cores=mon.sustained_cpu_cores,
                        miner_window_s=mon.sustained_cpu_window_s,
                    )
                    obs.append(self._resources)
                gpu = self.gpu.start()
                if gpu is not None:
                    obs.append(gpu)
                self._observers = obs
            return list(self._observers)

    def images(self) -> ImageCache:
        """The node's image cache as this harness's policy names it (``environment.image_cache``)."""
        with self._lock:
            if self._images is None:
                self._images = ImageCache.for_policy(self.policy)
            return self._images

    def resolve_image(self, ref: str | ImageView | None) -> tuple[ImageView | None, ImageLease | None]:
        """The image a sandbox runs in, and the lease that keeps it in the cache while the sandbox lives.

        A reference must be in the policy's ``environment.images_allowed`` (ImageNotAllowedError,
        before anything is fetched); it is pulled and unpacked on first use (blocking).
        """
        if ref is None:
            return None, None
        if not isinstance(ref, str):
            return ref, None
        cache = self.images()
        image = cache.resolve(ref, allowed=self.policy.environment.images_allowed)
        return image, cache.lease(image)

    def sandbox(
        self,
        sandbox_id: str | None = None,
        *,
        image: str | ImageView | None = None,
        workspace: str | os.PathLike[str] | None = None,
    ) -> Sandbox:
        from corral.harness._sync_sandbox import Sandbox

        return Sandbox(self.policy, harness=self, sandbox_id=sandbox_id, image=image, workspace=workspace)

    def async_sandbox(
        self,
        sandbox_id: str | None = None,
        *,
        image: str | ImageView | None = None,
        workspace: str | os.PathLike[str] | None = None,
    ) -> AsyncSandbox:
        from corral.harness._async_sandbox import AsyncSandbox

        return AsyncSandbox(
            self.policy, harness=self, sandbox_id=sandbox_id, image=image, workspace=workspace
        )

    # -- the event path ----------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        """Store an event, detect on it, and attach resulting alerts to their call."""
        self._sink(event)
        if event.type == "network_connection":
            self.gpu.note(event)
        if event.type == "alert":  # raised by a collector itself (limits, sustained CPU)
            self._attach(event)
            return
        for alert_ev in self.detector.observe(event):
            self._sink(alert_ev)
            self._attach(alert_ev)

    def emit_many(self, events: Sequence[Event]) -> None:
        for ev in events:
            self.emit(ev)

    def _sink(self, event: Event) -> None:
        """Every sink gets the event even if another fails; a failing sink never reaches the collector
        that emitted (its thread must survive). A dead store refuses later calls (``check_store``)
        and the call being recorded learns it from ``flush``."""
        for sink in self._sinks:
            try:
                sink(event)
            except Exception as exc:  # reported to the other sinks, never swallowed silently
                self._sink_failed(sink, exc)

    def _sink_failed(self, sink: EventSink, exc: Exception) -> None:
        with self._lock:
            first = id(sink) not in self._failed_sinks
            self._failed_sinks.add(id(sink))
        if not first:
            return
        where = "the event store" if self.store is not None and sink == self.store.append else repr(sink)
        health = Event(
            host=self.host,
            data=Health(component="harness.sinks", status="failed", message=f"{where} failed: {exc}"),
        )
        for other in self._sinks:
            if other is not sink:
                try:
                    other(health)
                except Exception:  # a second failing sink is reported on its own turn
                    continue

    def _attach(self, alert_ev: Event) -> None:
        tcid = alert_ev.ctx.tool_call_id
        if tcid is None or alert_ev.data.kind != "alert":
            return
        with self._lock:
            bucket = self._call_alerts.get(tcid)
            if bucket is not None:
                bucket.append(alert_ev.data)
            elif tcid in self._lingering:  # a call that returned, whose processes live on (episode mode)
                self._late.setdefault(self._lingering[tcid], []).append(alert_ev.data)

    def begin_call(self, tool_call_id: str) -> None:
        with self._lock:
            self._call_alerts[tool_call_id] = []

    def end_call(self, tool_call_id: str) -> list[Alert]:
        with self._lock:
            return self._call_alerts.pop(tool_call_id, [])

    def linger(self, tool_call_id: str, sandbox_id: str) -> None:
        """The call returned but left processes running: their alerts go to the sandbox's next result."""
        with self._lock:
            self._lingering[tool_call_id] = sandbox_id

    def forget_sandbox(self, sandbox_id: str) -> None:
        with self._lock:
            self._late.pop(sandbox_id, None)
            self._lingering = {k: v for k, v in self._lingering.items() if v != sandbox_id}

    def take_late(self, sandbox_id: str) -> list[Alert]:
        """Alerts raised by processes that earlier calls of this sandbox left running (episode mode):
        they go to the sandbox's next result, so the trainer sees them."""
        with self._lock:
            return self._late.pop(sandbox_id, [])

    def check_store(self) -> None:
        """StoreError if events can no longer be recorded: a call must not run unrecorded."""
        if self.store is not None:
            self.store.check()

    def flush(self) -> None:
        if self.store is not None:
            self.store.flush()

    async def aflush(self) -> None:
        """``flush`` for coroutines: concurrent callers share one commit."""
        if self.store is not None:
            await self._flush()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            egress, own = self._egress, self._own_egress
        if egress is not None and own:
            egress.close()
        if self._resources is not None:
            self._resources.close()
        self.gpu.close()
        if self.store is not None and self._own_store:
            with contextlib.suppress(StoreError):
                self.store.close()


def parse_workspace(workspace: str | os.PathLike[str] | None) -> Path | None:
    """A workspace template argument: an existing host directory (checked before anything starts)."""
    if workspace is None:
        return None
    p = Path(workspace)
    if not p.is_absolute():
        p = p.resolve()
    if not p.exists():
        raise InputError(f"workspace template {p} does not exist")
    if not p.is_dir():
        raise InputError(f"workspace template {p} is not a directory")
    return p


def _raise_fd_limit() -> None:
    """Each live sandbox holds a few namespace fds and each running call a few pipes: a soft limit
    of 1024 (a common default) would cap a trainer at a few hundred concurrent calls."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
