"""Prometheus metrics of one node service, on a registry of its own (no process-wide globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from corral.events import Event


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.live = Gauge("corral_sandboxes_live", "Sandboxes alive now", registry=r)
        self.created = Counter("corral_sandboxes_created", "Sandboxes created", registry=r)
        self.reaped = Counter(
            "corral_sandboxes_reaped", "Sandboxes reaped after their lease ran out", registry=r
        )
        self.calls = Counter("corral_calls", "Tool calls run", registry=r)
        self.blocked = Counter("corral_calls_blocked", "Tool calls policy blocked", registry=r)
        self.alerts = Counter("corral_alerts", "Alerts raised", ["category", "level"], registry=r)
        self.egress_denied = Counter(
            "corral_egress_denied", "Outbound attempts denied", ["layer"], registry=r
        )
        self.store_lag = Gauge(
            "corral_store_pending_events", "Events not yet committed to the store", registry=r
        )
        self.file_bytes = Counter(
            "corral_file_bytes", "Bytes moved by file operations", ["direction"], registry=r
        )
        self.errors = Counter("corral_harness_errors", "Calls that failed as a harness error", registry=r)

    def observe(self, ev: Event) -> None:
        """An event sink: counts alerts and denied egress as they pass."""
        d = ev.data
        if d.kind == "alert":
            self.alerts.labels(category=d.category, level=d.level.value).inc()
        elif d.kind == "network_connection" and d.decision == "denied":
            self.egress_denied.labels(layer=d.layer).inc()
        elif d.kind == "dns_query" and d.decision == "denied":
            self.egress_denied.labels(layer="dns").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
