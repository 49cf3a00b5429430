"""The GPU collector: "no GPU" here, and its logic on recorded NVML samples against real call cgroups.

The samples are NVML's readings as recorded (ReplaySource); the calls, their cgroups and the
processes a limit kills are real. Time is a clock the test advances, so GPU seconds are exact.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

import pytest
from monitor_cgroups import MakeScope, finish
from nvml_transcript import TranscriptNvml

from corral.errors import CollectorError
from corral.events import Alert, Event, GpuUsage, Health, Level, PolicyDecision, TraceContext
from corral.monitor import GpuCollector, GpuLimits, GpuSample, GpuSourceError, NvmlSource, ReplaySource
from corral.monitor._gpu_watch import v2_root
from corral.sandbox._scope import CallScope

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path("/sys/fs/cgroup/unified")
GiB = 1 << 30


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def cg(scope: CallScope) -> str:
    return "/" + str(scope.cgroup_paths["unified"].relative_to(ROOT))


def spawn_in(scope: CallScope, command: str) -> subprocess.Popen[bytes]:
    """A real process of the call: moved into its cgroups before exec, as the sandbox does."""
    paths = [p / "cgroup.procs" for p in scope.cgroup_paths.values()]

    def enter() -> None:
        for p in paths:
            with open(p, "w") as f:
                f.write("0")

    return subprocess.Popen(["sh", "-c", command], preexec_fn=enter)


def alerts(events: list[Event], ctx: TraceContext | None = None) -> dict[str, Alert]:
    out = {}
    for e in events:
        if isinstance(e.data, Alert) and (ctx is None or e.ctx == ctx):
            out[e.data.rule_id] = e.data
    return out


def busy(scope: CallScope, pid: int, util: float | None, mem: int, gpu: int = 0, **kw: object) -> GpuSample:
    return GpuSample(gpu, pid, mem, util, cg(scope), **kw)  # type: ignore[arg-type]


def test_no_gpu_is_reported_cleanly() -> None:
    src = NvmlSource.open()
    if src.status == "ok":  # a GPU machine: the live path must read something sane
        assert all(s.pid > 0 for s in src.read())
        return
    assert src.status.startswith("no GPU")
    assert src.identities() == ()
    events: list[Event] = []
    c = GpuCollector(events.append, source=src)
    assert not c.available and c.poll() == 0 and c.failure == src.status
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
    src = ReplaySource.load(FIXTURES / "nvml_samples.json")
    c = GpuCollector(events.append, source=src, declared_pids=lambda: {4100, 4101})
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
    # sb7 holds no GPU grant: compute by its call is the "impossible" case, critical and tied to it
    a = alerts(events, scope.ctx)["corral.monitor.gpu_without_grant"]
    assert a.level == Level.critical and a.matched["ProcessId"] == 5123


def test_per_call_accounting_and_the_grant(make_scope: MakeScope) -> None:
    events: list[Event] = []
    clock = Clock()
    a, b = make_scope("sbA"), make_scope("sbB")
    rounds = [
        [busy(a, 11, 50.0, 1 * GiB), busy(b, 21, 100.0, 2 * GiB, gpu=1)],
        [busy(a, 11, 100.0, 1 * GiB), busy(a, 12, None, 2 * GiB), busy(b, 21, 25.0, 2 * GiB, gpu=1)],
    ]
    c = GpuCollector(events.append, source=ReplaySource(rounds), clock=clock)
    c.grant("sbA", GpuLimits(frozenset({(0, None, None)})))
    c.grant("sbB", GpuLimits(frozenset({(0, None, None)})))  # granted GPU 0, seen on GPU 1
    for s in (a, b):
        c.call_started(s)
    clock.t += 2
    c.poll()
    clock.t += 2
    c.poll()
    for s in (a, b):
        finish(c, s)
    sa, sb = c.take_summary(a.ctx.tool_call_id or ""), c.take_summary(b.ctx.tool_call_id or "")
    assert sa is not None and sb is not None
    # A: 0.5 x 2 s, then 1.0 x 2 s + a process without utilisation (counted busy) x 2 s
    assert sa.gpu_time_s == pytest.approx(5.0) and sa.memory_peak_bytes == 3 * GiB and sa.stop_reason is None
    assert sb.gpu_time_s == pytest.approx(2.5)
    assert c.take_summary(a.ctx.tool_call_id or "") is None  # taken once
    usage_a = [e.data for e in events if isinstance(e.data, GpuUsage) and e.ctx == a.ctx]
    assert len(usage_a) == 3 and all(u.declared for u in usage_a)  # a grant declares its use
    assert alerts(events, a.ctx) == {}
    outside = alerts(events, b.ctx)["corral.monitor.gpu_without_grant"]
    assert outside.level == Level.critical and "outside its grant" in outside.title


def test_mig_instances_are_told_apart() -> None:
    lim = GpuLimits(frozenset({(0, 1, 0)}))
    assert lim.allows(GpuSample(0, 1, None, None, gi=1, ci=0))
    assert not lim.allows(GpuSample(0, 1, None, None, gi=2, ci=0))  # another instance of the same GPU
    assert not lim.allows(GpuSample(1, 1, None, None, gi=1, ci=0))
    assert lim.allows(GpuSample(0, 1, None, None))  # NVML without instance ids: the GPU is what it knows
    assert GpuLimits(frozenset({(0, None, None)})).allows(GpuSample(0, 1, None, None, gi=3, ci=0))


@pytest.mark.parametrize(
    ("limits", "util", "mem", "reason", "rule"),
    [
        (GpuLimits(frozenset({(0, None, None)}), compute_budget_s=3), 100.0, GiB, "gpu_budget", "gpu_budget"),
        (
            GpuLimits(frozenset({(0, None, None)}), memory_max_bytes=4 * GiB),
            10.0,
            6 * GiB,
            "gpu_memory",
            "gpu_memory",
        ),
    ],
)
def test_a_call_over_its_limit_is_stopped(
    make_scope: MakeScope, limits: GpuLimits, util: float, mem: int, reason: str, rule: str
) -> None:
    events: list[Event] = []
    clock = Clock()
    scope = make_scope("sbL")
    proc = spawn_in(scope, "sleep 60")
    try:
        src = ReplaySource([[busy(scope, proc.pid, util, mem)] for _ in range(3)])
        c = GpuCollector(events.append, source=src, clock=clock)
        c.grant("sbL", limits)
        c.call_started(scope)
        clock.t += 2
        c.poll()  # 2 GPU seconds (budget 3), or already over the memory limit
        clock.t += 2
        c.poll()
        assert proc.wait(timeout=10) == -9  # killed through the call's cgroup
        finish(c, scope)
    finally:
        proc.kill()
    s = c.take_summary(scope.ctx.tool_call_id or "")
    assert s is not None and s.stop_reason == reason
    a = alerts(events, scope.ctx)[f"corral.monitor.{rule}"]
    assert a.level == Level.high and a.category == "resource_abuse"


def test_episode_budget_counts_every_call_of_the_sandbox(make_scope: MakeScope) -> None:
    events: list[Event] = []
    clock = Clock()
    first, second = make_scope("sbE"), make_scope("sbE")
    # each call's end polls once more (the empty rounds)
    src = ReplaySource([[busy(first, 31, 100.0, GiB)], [], [busy(second, 32, 100.0, GiB)], []])
    c = GpuCollector(events.append, source=src, clock=clock)
    c.grant("sbE", GpuLimits(frozenset({(0, None, None)}), compute_budget_s=5, episode_compute_budget_s=3))
    c.call_started(first)
    clock.t += 2
    c.poll()
    finish(c, first)
    c.call_started(second)
    clock.t += 2
    c.poll()  # 2 s more: 4 s in the sandbox, over the episode's 3 (each call is within its 5)
    finish(c, second)
    s1, s2 = c.take_summary(first.ctx.tool_call_id or ""), c.take_summary(second.ctx.tool_call_id or "")
    assert s1 is not None and s1.stop_reason is None
    assert s2 is not None and s2.stop_reason == "gpu_budget"
    assert alerts(events, second.ctx)["corral.monitor.gpu_budget"].matched["episode_compute_budget_s"] == 3


def test_gpu_work_after_its_call_returned(make_scope: MakeScope) -> None:
    events: list[Event] = []
    clock = Clock()
    scope = make_scope("sbP")
    rounds = [[busy(scope, 41, 0.0, GiB)], [busy(scope, 41, 0.0, GiB)], [busy(scope, 41, 97.0, GiB)]]
    c = GpuCollector(events.append, source=ReplaySource(rounds), clock=clock)
    c.grant("sbP", GpuLimits(frozenset({(0, None, None)})))
    c.call_started(scope)
    clock.t += 1
    c.poll()
    asyncio.run(c.call_finished(scope, lingering=True))  # episode mode: a process lives on
    assert "corral.monitor.gpu_after_call" not in alerts(events)  # it holds a context, idle: not work
    clock.t += 1
    c.poll()
    a = alerts(events, scope.ctx)["corral.monitor.gpu_after_call"]
    assert a.level == Level.high and a.category == "cryptomining" and a.matched["sm_util_pct"] == 97.0
    c.scope_released(scope)


def test_miner_evidence_raises_a_critical_alert(make_scope: MakeScope) -> None:
    events: list[Event] = []
    scope = make_scope("sbM")
    seen: list[tuple[str, str | None]] = []

    def check(sc: CallScope, s: GpuSample) -> list[str]:
        seen.append((sc.sandbox_id, s.image))
        return ["rule miner-binaries"] if s.image and s.image.endswith("/xmrig-cuda") else []

    rounds = [
        [busy(scope, 51, 99.0, GiB, image="/usr/bin/python3.11", cmdline="python3 train.py")],
        [busy(scope, 52, 99.0, GiB, image="/workspace/.x/xmrig-cuda", cmdline="./xmrig-cuda -o pool:3333")],
    ]
    c = GpuCollector(events.append, source=ReplaySource(rounds), miner_check=check)
    c.grant("sbM", GpuLimits(frozenset({(0, None, None)})))
    c.call_started(scope)
    c.poll()
    assert alerts(events) == {}
    c.poll()
    finish(c, scope)
    a = alerts(events, scope.ctx)["corral.monitor.gpu_miner"]
    assert a.level == Level.critical and a.matched["evidence"] == ["rule miner-binaries"]
    assert a.matched["CommandLine"] == "./xmrig-cuda -o pool:3333"
    assert seen == [("sbM", "/usr/bin/python3.11"), ("sbM", "/workspace/.x/xmrig-cuda")]
    usage = [e.data for e in events if isinstance(e.data, GpuUsage)]
    assert usage[1].Image == "/workspace/.x/xmrig-cuda"


def test_recorded_failure_loads_and_raises() -> None:
    src = ReplaySource.load(FIXTURES / "nvml_failure.json")
    assert len(src.read()) == 1
    with pytest.raises(GpuSourceError, match="GPU is lost") as exc:
        src.read()
    assert isinstance(exc.value, CollectorError)


@pytest.mark.parametrize("mode", ["stop", "warn"])
def test_a_broken_source_stops_granted_calls(make_scope: MakeScope, mode: str) -> None:
    events: list[Event] = []
    granted, other = make_scope("sbG"), make_scope("sbN")
    g_proc, o_proc = spawn_in(granted, "sleep 60"), spawn_in(other, "sleep 60")
    try:
        src = ReplaySource([[busy(granted, g_proc.pid, 50.0, GiB)], "Unknown Error: GPU is lost"])
        c = GpuCollector(events.append, source=src)
        c.grant("sbG", GpuLimits(frozenset({(0, None, None)}), on_failure=mode))  # type: ignore[arg-type]
        c.call_started(granted)
        c.call_started(other)
        assert c.poll() == 1 and c.available
        assert c.poll() == 0
        assert not c.available and c.failure is not None and "GPU is lost" in c.failure
        health = [e.data for e in events if isinstance(e.data, Health) and e.data.status == "failed"]
        assert len(health) == 1 and "GPU is lost" in health[0].message
        if mode == "stop":
            assert g_proc.wait(timeout=10) == -9
        else:
            time.sleep(0.2)
            assert g_proc.poll() is None  # warned, left running
        assert o_proc.poll() is None  # a call without a grant is not the GPU monitor's to stop
        assert c.poll() == 0  # failed for good: no more reads
        finish(c, granted)
        finish(c, other)
    finally:
        g_proc.kill()
        o_proc.kill()
        g_proc.wait()
        o_proc.wait()
    s = c.take_summary(granted.ctx.tool_call_id or "")
    assert s is not None and s.stop_reason == ("gpu_monitor_failure" if mode == "stop" else None)
    a = alerts(events, granted.ctx)["corral.monitor.gpu_monitor_failure"]
    assert ("stopped" in a.title) == (mode == "stop")
    assert alerts(events, other.ctx) == {}


@pytest.mark.parametrize(
    ("mounts", "root"),
    [
        (
            "cgroup /sys/fs/cgroup/memory cgroup rw 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n",
            "/sys/fs/cgroup/unified",
        ),
        ("cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\n", "/sys/fs/cgroup"),
        ("proc /proc proc rw 0 0\n", "/sys/fs/cgroup"),
    ],
)
def test_v2_root_follows_the_layout(tmp_path: Path, mounts: str, root: str) -> None:
    f = tmp_path / "mounts"
    f.write_text(mounts)
    assert v2_root(f) == Path(root)
    assert v2_root() == ROOT  # this machine: hybrid


def _nv(sample: GpuSample) -> tuple[object, ...]:
    """The fields NVML answers (cgroup, program and command line come from /proc of this machine)."""
    return (sample.gpu_index, sample.pid, sample.used_memory_bytes, sample.sm_util_pct, sample.gi, sample.ci)


def test_nvml_source_reads_what_nvml_answers() -> None:
    src = NvmlSource(TranscriptNvml(FIXTURES / "nvml_transcript.json"), "ok")
    first = [_nv(s) for s in src.read()]
    assert first == [
        (0, 4100, 8 * GiB, 80.0, None, None),  # the mean of its samples
        (0, 5200, None, 10.0, None, None),  # memory not available: None, not 0
        (1, 6300, 2 * GiB, None, 2, 0),  # MIG: no per-process utilisation, the instance named
    ]
    second = [_nv(s) for s in src.read()]
    assert second == [(0, 4100, 8 * GiB, 0.0, None, None)]  # no sample since: no kernel ran
    third = [_nv(s) for s in src.read()]
    assert third[0] == (0, 4100, 8 * GiB, 40.0, None, None)  # the sample read before is not counted again


def test_nvml_source_names_gpus_and_mig_instances() -> None:
    src = NvmlSource(TranscriptNvml(FIXTURES / "nvml_transcript.json"), "ok")
    ids = src.identities()
    assert [(i.index, i.bus_id, i.uuid) for i in ids] == [
        (0, "00000000:07:00.0", "GPU-0a1b2c3d-0000-4000-8000-00000000000a"),
        (1, "00000000:41:00.0", "GPU-0a1b2c3d-0000-4000-8000-00000000000b"),
    ]
    assert ids[0].mig == ()
    assert ids[1].mig == (
        (1, 0, "MIG-5f6e7d8c-0000-4000-8000-0000000000c1", 10 * GiB),
        (2, 0, "MIG-5f6e7d8c-0000-4000-8000-0000000000c2", 10 * GiB),
    )


def test_nvml_failing_mid_run_is_a_source_error() -> None:
    src = NvmlSource(TranscriptNvml(FIXTURES / "nvml_transcript.json", lost_after=1), "ok")
    assert len(src.read()) == 3
    with pytest.raises(GpuSourceError, match="NVML failed: NVML error 15"):
        src.read()
