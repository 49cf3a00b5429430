"""The node's sandboxes: created per named policy, leased to a client, reaped when the lease runs out.

A client that crashes stops renewing its lease (every call and heartbeat renews
it), so its sandboxes are destroyed after ``lease_s``. State of a previous
service process that died is reaped by the sandbox core on first use.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from corral.errors import InputError, SandboxClosedError
from corral.events import Event, EventStore, TraceContext
from corral.harness import Harness, Sandbox
from corral.integrations.service._metrics import ServiceMetrics
from corral.integrations.service._models import SandboxInfo
from corral.policy import Policy
from corral.sandbox import ToolResult, new_id


@dataclass
class _Lease:
    sandbox: Sandbox
    policy: str
    lease_s: float
    owner: str | None
    last_seen: float = field(default_factory=time.monotonic)
    calls: int = 0
    busy: int = 0  # calls in flight: a busy sandbox is never reaped


class NodeService:
    """Owns every sandbox of this node; thread-safe. The HTTP layer is a thin shell over it."""

    def __init__(
        self,
        policies: Mapping[str, Policy],
        *,
        store: EventStore | None = None,
        default_lease_s: float = 300.0,
        max_sandboxes: int = 4096,
        reap_interval_s: float = 1.0,
        host: str | None = None,
        event_sinks: Sequence[Callable[[Event], None]] = (),
    ) -> None:
        if "default" not in policies:
            raise InputError("the service needs a policy named 'default'")
        self.policies = dict(policies)
        self.store = store
        self.metrics = ServiceMetrics()
        self.default_lease_s = default_lease_s
        self.max_sandboxes = max_sandboxes
        self._harnesses = {
            name: Harness(p, store=store, sinks=[self.metrics.observe, *event_sinks], host=host)
            for name, p in policies.items()
        }
        self._leases: dict[str, _Lease] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reaper = threading.Thread(
            target=self._reap_loop, args=(reap_interval_s,), name="corral-reaper", daemon=True
        )
        self._reaper.start()

    # -- lifecycle of sandboxes ---------------------------------------------------------------

    def create(
        self,
        policy: str = "default",
        *,
        sandbox_id: str | None = None,
        lease_s: float | None = None,
        owner: str | None = None,
    ) -> SandboxInfo:
        harness = self._harnesses.get(policy)
        if harness is None:
            raise InputError(f"unknown policy {policy!r}; this service has {sorted(self._harnesses)}")
        with self._lock:
            if len(self._leases) >= self.max_sandboxes:
                raise InputError(f"node is full ({self.max_sandboxes} sandboxes)")
            sid = sandbox_id or new_id("sb")
            if sid in self._leases:
                raise InputError(f"sandbox {sid} exists")
        sb = harness.sandbox(sid)
        lease = _Lease(sb, policy, lease_s or self.default_lease_s, owner)
        with self._lock:
            self._leases[sid] = lease
            self.metrics.live.set(len(self._leases))
        self.metrics.created.inc()
        return self._info(sid, lease)

    def _get(self, sid: str) -> _Lease:
        with self._lock:
            lease = self._leases.get(sid)
            if lease is None:
                raise SandboxClosedError(f"no sandbox {sid} (destroyed, reaped or never created)")
            lease.last_seen = time.monotonic()
            return lease

    def run(
        self,
        sid: str,
        command: str | list[str],
        ctx: TraceContext | None,
        *,
        timeout: float | None = None,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ToolResult:
        lease = self._get(sid)
        with self._lock:
            lease.busy += 1
        try:
            result = lease.sandbox.run(command, ctx, timeout=timeout, stdin=stdin, env=env)
        except Exception:
            self.metrics.errors.inc()
            raise
        finally:
            with self._lock:
                lease.busy -= 1
                lease.last_seen = time.monotonic()
                lease.calls += 1
        self.metrics.calls.inc()
        if result.blocked:
            self.metrics.blocked.inc()
        return result

    def heartbeat(self, sid: str) -> None:
        self._get(sid)

    def destroy(self, sid: str) -> bool:
        with self._lock:
            lease = self._leases.pop(sid, None)
            self.metrics.live.set(len(self._leases))
        if lease is None:
            return False
        lease.sandbox.close()
        return True

    def sandboxes(self) -> list[SandboxInfo]:
        with self._lock:
            return [self._info(sid, lease) for sid, lease in self._leases.items()]

    def info(self, sid: str) -> SandboxInfo:
        return self._info(sid, self._get(sid))

    def _info(self, sid: str, lease: _Lease) -> SandboxInfo:
        return SandboxInfo(
            id=sid,
            policy=lease.policy,
            host=lease.sandbox.harness.host,
            lease_s=lease.lease_s,
            owner=lease.owner,
            calls=lease.calls,
            idle_s=round(time.monotonic() - lease.last_seen, 3),
        )

    def __len__(self) -> int:
        return len(self._leases)

    # -- reaping -----------------------------------------------------------------------------

    def reap_expired(self, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        with self._lock:
            expired = [
                sid for sid, ls in self._leases.items() if ls.busy == 0 and now - ls.last_seen > ls.lease_s
            ]
        reaped = [sid for sid in expired if self.destroy(sid)]
        if reaped:
            self.metrics.reaped.inc(len(reaped))
        return reaped

    def _reap_loop(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            self.reap_expired()
            if self.store is not None:
                self.metrics.store_lag.set(self.store.stats.pending)

    def store_pending(self) -> int:
        return self.store.stats.pending if self.store is not None else 0

    def close(self) -> None:
        """Destroy every sandbox (a clean stop leaves nothing behind) and flush the store."""
        self._stop.set()
        self._reaper.join(timeout=5)
        for sid in list(self._leases):
            self.destroy(sid)
        for h in self._harnesses.values():
            h.close()
        if self.store is not None:
            self.store.flush()
