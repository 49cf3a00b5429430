"""A harness's GPU side: the NVML watch, device grants for its sandboxes, and each call's GPU record.

A policy that grants GPUs is checked against the machine when the first sandbox is
built (``grant``): a machine without GPUs, or without a GPU the policy names, is an
error before anything starts. A granted call runs only while the GPU monitor works,
unless the policy's ``gpu.on_monitor_failure`` is ``warn`` (``problem``). The miner
check the collector asks about each GPU process reuses the rule pack: the process's
program and command line go through the ``process_creation`` rules of category
``cryptomining``, and a sandbox whose flows the egress proxy fingerprinted as stratum
counts as evidence too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from corral.detect import Detector
from corral.errors import SandboxUnavailableError
from corral.events import Event, NetworkConnection
from corral.harness._services import GpuPoller, gpu_source
from corral.monitor import (
    GpuCallSummary,
    GpuCollector,
    GpuLimits,
    GpuSample,
    GpuSource,
    GpuSourceError,
    NvmlSource,
)
from corral.policy import GpuSection, Policy
from corral.sandbox import (
    CallScope,
    GpuAllocator,
    GpuGrant,
    GpuIdentity,
    GpuInventory,
    discover_gpus,
    grant_gpus,
)

Emit = Callable[[Event], None]
_MINER_CACHE_MAX = 4096


class HarnessGpu:
    def __init__(
        self,
        policy: Policy,
        emit: Emit,
        *,
        host: str,
        detector: Detector,
        source: GpuSource | None,
        inventory: GpuInventory | None,
        declared_pids: Callable[[], set[int]],
    ) -> None:
        self.policy = policy
        self._emit = emit
        self._host = host
        self._detector = detector
        self._source_arg = source
        self._inventory = inventory
        self._declared = declared_pids
        self._lock = threading.Lock()
        self._poller: GpuPoller | None = None
        self._started = False
        self._allocs: dict[tuple[int | str, ...], GpuAllocator] = {}  # by pool: sandboxes may differ
        self._held: dict[str, GpuAllocator] = {}
        self._stratum: set[str] = set()  # sandboxes whose flows spoke the mining protocol
        self._miner_rules: dict[tuple[str, str], tuple[str, ...]] = {}

    @property
    def collector(self) -> GpuCollector | None:
        return self._poller.collector if self._poller is not None else None

    def source(self) -> GpuSource:
        return self._source_arg or gpu_source()

    def start(self) -> GpuCollector | None:
        """The collector, polling from now on; None where there is nothing to watch (no GPU, or off)."""
        with self._lock:
            if not self._started:
                self._started = True
                mon = self.policy.monitoring
                source = self.source()
                if mon.gpu and source.status == "ok":  # without a GPU there is nothing to poll
                    collector = GpuCollector(
                        self._emit,
                        declared_pids=self._declared,
                        source=source,
                        host=self._host,
                        miner_check=self.miner_evidence,
                    )
                    self._poller = GpuPoller(collector, mon.gpu_interval_s)
            return self.collector

    # -- grants ------------------------------------------------------------------------------

    def inventory(self) -> GpuInventory:
        with self._lock:
            if self._inventory is None:
                source = self.source()
                identities: tuple[GpuIdentity, ...] = ()
                if isinstance(source, NvmlSource):
                    try:
                        identities = source.identities()
                    except GpuSourceError:
                        identities = ()  # the /proc view still names every GPU; the watch will fail closed
                self._inventory = discover_gpus(identities=identities)
            return self._inventory

    def grant(self, sandbox_id: str, gpu: GpuSection) -> GpuGrant | None:
        """The devices a new sandbox of a policy with this ``gpu`` section gets (None: it grants none).
        SandboxUnavailableError when this machine cannot honour it."""
        if not gpu.granted:
            return None
        inv = self.inventory()
        if not inv.gpus:
            raise SandboxUnavailableError(
                f"the policy asks for GPUs (gpu.devices: {list(gpu.devices)}) but {inv.problem}"
            )
        with self._lock:
            alloc = self._allocs.setdefault(gpu.devices, GpuAllocator(gpu.devices))
            self._held[sandbox_id] = alloc
        ids = alloc.acquire(sandbox_id, gpu.max_per_sandbox)
        try:
            granted = grant_gpus(inv, ids, host_libraries=gpu.driver_libraries == "host")
        except BaseException:
            self.release(sandbox_id)
            raise
        collector = self.start()
        if collector is not None:
            limits = GpuLimits(
                frozenset((d.index, d.gi, d.ci) for d in granted.devices),
                gpu.compute_budget_s,
                gpu.episode_compute_budget_s,
                gpu.memory_max_bytes,
                gpu.on_monitor_failure,
            )
            collector.grant(sandbox_id, limits)
        return granted

    def release(self, sandbox_id: str) -> None:
        with self._lock:
            alloc = self._held.pop(sandbox_id, None)
        if alloc is not None:
            alloc.release(sandbox_id)
        collector = self.collector
        if collector is not None:
            collector.revoke(sandbox_id)
        with self._lock:
            self._stratum.discard(sandbox_id)

    def problem(self) -> str | None:
        """Why granted calls cannot be watched right now, or None when they are."""
        collector = self.start()
        if collector is None:
            status = self.source().status
            return status if status != "ok" else "GPU monitoring is off"
        return collector.failure

    def summary(self, tool_call_id: str) -> GpuCallSummary | None:
        collector = self.collector
        return collector.take_summary(tool_call_id) if collector is not None else None

    # -- miner evidence ----------------------------------------------------------------------

    def note(self, event: Event) -> None:
        """Remember sandboxes whose allowed flows the proxy recognised as the stratum protocol."""
        data = event.data
        if isinstance(data, NetworkConnection) and data.fingerprint == "stratum" and event.sandbox_id:
            with self._lock:
                self._stratum.add(event.sandbox_id)

    def miner_evidence(self, scope: CallScope, sample: GpuSample) -> list[str]:
        out: list[str] = []
        if self._detector.section.enabled and (sample.image or sample.cmdline):
            key = (sample.image or "", sample.cmdline or "")
            rules = self._miner_rules.get(key)
            if rules is None:
                rec = {"Image": key[0], "CommandLine": key[1], "argv": key[1].split()}
                found = self._detector.evaluate("process_creation", rec)
                rules = tuple(i.id for i in found if i.category == "cryptomining")
                if len(self._miner_rules) < _MINER_CACHE_MAX:
                    self._miner_rules[key] = rules
            out.extend(f"rule {r}" for r in rules)
        with self._lock:
            if scope.sandbox_id in self._stratum:
                out.append("the sandbox's network flows speak the stratum mining protocol")
        return out

    def close(self) -> None:
        if self._poller is not None:
            self._poller.close()
