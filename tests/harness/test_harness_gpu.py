"""The harness's GPU watch: compute inside a sandbox is flagged against the call that ran it."""

from __future__ import annotations

import threading
import time

from corral import Harness, Policy, TraceContext
from corral.events import Event, GpuUsage, PolicyDecision
from corral.monitor import GpuSample, ReplaySource


def test_gpu_compute_in_a_sandbox_is_flagged_with_the_calls_context() -> None:
    events: list[Event] = []
    ctx = TraceContext(run_id="r-gpu", episode_id="e-gpu", tool_call_id="tc-gpu-1")
    sid = "sb-gputest01"
    trainer_pid = 4242
    rounds = [
        [
            GpuSample(0, 777, 9 << 30, 99.0, cgroup=f"/corral/{sid}/tc-gpu-1"),  # a miner in the sandbox
            GpuSample(0, trainer_pid, 60 << 30, 80.0, cgroup="/trainer"),  # the declared workload
        ]
    ]
    harness = Harness(
        Policy.default().with_overrides(monitoring={"gpu_interval_s": 300}),
        sinks=[events.append],
        gpu_source=ReplaySource(rounds),
        declared_gpu_pids=lambda: {trainer_pid},
    )
    try:
        with harness.sandbox(sid) as sb:
            t = threading.Thread(target=sb.run, args=("sleep 1", ctx))
            t.start()
            assert harness._gpu is not None
            key = f"/corral/{sid}/tc-gpu-1"
            for _ in range(500):  # until the collector follows the call (its cgroup exists before that)
                if key in harness._gpu.collector._calls:
                    break
                time.sleep(0.01)
            harness._gpu.collector.poll()  # one poll while the call runs
            t.join()
    finally:
        harness.close()
    usage = {e.data.ProcessId: (e.data, e.ctx) for e in events if isinstance(e.data, GpuUsage)}
    assert usage[777][0].declared is False and usage[777][1] == ctx
    assert usage[trainer_pid][0].declared is True
    flags = [e for e in events if isinstance(e.data, PolicyDecision) and e.data.action == "flag"]
    assert [(f.ctx.tool_call_id, f.data.detail["kind"]) for f in flags] == [
        ("tc-gpu-1", "undeclared_gpu_compute")
    ]


def test_without_a_gpu_nothing_polls() -> None:
    harness = Harness(Policy.default(), gpu_source=ReplaySource([], status="no GPU: NVML not found"))
    try:
        harness.observers()
        assert harness._gpu is None
    finally:
        harness.close()
