"""Optional OpenTelemetry exporter: one span per tool call (extra ``otel``).

Importing this module never needs OpenTelemetry; ``export_spans`` imports it
on use and raises ``RegistryError`` naming the extra when it is missing.
Events that share a tool call id (process starts, network attempts, alerts)
become span events of that call's span.
"""

from __future__ import annotations

import importlib.util
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from corral.errors import RegistryError
from corral.events._model import Event, ToolCall


def otel_available() -> bool:
    return importlib.util.find_spec("opentelemetry.sdk") is not None


def _attrs(event: Event) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in event.flat().items():
        if v is None or k in ("time", "type"):
            continue
        if isinstance(v, bool | int | float | str) or (
            isinstance(v, list) and all(isinstance(x, str) for x in v)
        ):
            out[f"corral.{k}"] = v
    return out


def export_spans(events: Iterable[Event], tracer_provider: Any = None) -> int:
    """Emit one span per ``tool_call`` event through ``tracer_provider`` (default: the global one).

    Returns the number of spans. The caller owns the provider (and its exporter and flushing).
    """
    if not otel_available():
        raise RegistryError("the OpenTelemetry exporter needs the optional extra: pip install 'corral[otel]'")
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode

    calls: list[Event] = []
    children: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        if isinstance(e.data, ToolCall):
            calls.append(e)
        elif e.ctx.tool_call_id is not None:
            children[e.ctx.tool_call_id].append(e)
    provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
    tracer = provider.get_tracer("corral")
    for call in calls:
        d = call.data
        assert isinstance(d, ToolCall)
        span = tracer.start_span("tool_call", start_time=d.start_ns, attributes=_attrs(call))
        for child in children.get(call.ctx.tool_call_id or "", []):
            span.add_event(child.type, attributes=_attrs(child), timestamp=child.time_ns)
        if d.blocked or (d.exit_code not in (0, None)):
            span.set_status(Status(StatusCode.ERROR, d.stop_reason or f"exit {d.exit_code}"))
        span.end(end_time=d.end_ns if d.end_ns is not None else call.time_ns)
    return len(calls)
