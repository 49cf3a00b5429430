"""The GPU collector: "no GPU" here, and its logic on recorded NVML samples."""

from __future__ import annotations

import os
import time
from pathlib import Path

from monitor_cgroups import finish

from corral.events import Event, GpuUsage, Health, PolicyDecision, TraceContext
from corral.monitor import GpuCollector, NvmlSource, ReplaySource
from corral.sandbox._scope import CallScope

FIXTURE = Path(__file__).parent / "fixtures" / "nvml_samples.json"
ROOT = Path("/sys/fs/cgroup/unified")


def test_no_gpu_is_reported_cleanly() -> None:
    src = NvmlSource.open()
    if src.status == "ok":  # a GPU machine: the live path must read something sane
        assert all(s.pid > 0 for s in src.read())
        return
    assert src.status.startswith("no GPU")
    events: list[Event] = []
    c = GpuCollector(events.append, source=src)
    assert not c.available and c.poll() == 0
    assert isinstance(events[0].data, Health) and events[0].data.message.startswith("no GPU")


def test_recorded_samples() -> None:
    events: list[Event] = []
    scope = CallScope(
        sandbox_id="sb7",
        ctx=TraceContext(run_id="r", tool_call_id="call9"),
        cgroup_paths={"unified": ROOT / "corral" / "sb7" / "call9"},
        cgroup_id=1234,
        host_uid=os.getuid(),
        start_ns=time.time_ns(),
    )
    c = GpuCollector(events.append, source=ReplaySource.load(FIXTURE), declared_pids=lambda: {4100, 4101})
    c.call_started(scope)
    assert c.poll() == 2
    assert not any(isinstance(e.data, PolicyDecision) for e in events)
    assert c.poll() == 4
    finish(c, scope)  # a last poll: the replay is exhausted, nothing repeats
    usage = [e for e in events if isinstance(e.data, GpuUsage)]
    assert len(usage) == 6
    sandboxed = [e for e in usage if e.data.ProcessId == 5123]  # type: ignore[union-attr]
    assert sandboxed[0].sandbox_id == "sb7" and sandboxed[0].ctx.tool_call_id == "call9"
    flags = [e for e in events if isinstance(e.data, PolicyDecision)]
    where = {(e.sandbox_id, e.data.detail["gpu_index"]) for e in flags}  # type: ignore[union-attr]
    assert where == {(None, 0), ("sb7", 1)}
    assert all(e.data.detail["kind"] == "undeclared_gpu_compute" for e in flags)  # type: ignore[union-attr]
