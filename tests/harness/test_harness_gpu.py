"""The harness's GPU side end to end: grants, per-call accounting in results, limits, fail closed.

Real sandboxes on a fake node (real character devices made with mknod, see gpu_support) with
NVML's readings played back (ReplaySource) for the call's real cgroup; the poller is slowed down
and the test polls by hand while the call runs, so each reading lands where the test says.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from corral import Harness, Policy, TraceContext
from corral.errors import SandboxUnavailableError
from corral.events import Event, GpuUsage, Health, NetworkConnection, PolicyDecision, ToolCall
from corral.harness import SyncSandbox
from corral.monitor import GpuSample, ReplaySource
from corral.sandbox import DEFAULT_STATE_ROOT, CallScope, GpuInventory, ToolResult, discover_gpus
from gpu_support import UUID_A, UUID_B, fake_node

GiB = 1 << 30
SLOW = {"gpu_interval_s": 300}


@pytest.fixture
def inventory(tmp_path: Path) -> GpuInventory:
    node = fake_node(tmp_path)
    return discover_gpus(node.dev, node.proc, lib_dirs=[str(node.lib)], bin_dirs=[str(node.bin)])


def _policy(**gpu: object) -> Policy:
    return Policy.default().with_overrides(
        monitoring=SLOW, gpu=gpu, resources={"wall_timeout_s": 30}, processes={"lifetime": "call"}
    )


def _cg(sid: str, tcid: str) -> str:
    """A sample's stand-in cgroup for the call ``tcid``; ``_CallReplay`` reads it as the real one."""
    return f"/corral/{sid}/{tcid}"


class _CallReplay(ReplaySource):
    """Played-back samples whose cgroup names a call (``_cg``): each is read as that live call's real
    cgroup, which is named when it is made, before the call it serves is known."""

    harness: Harness | None = None

    def read(self) -> list[GpuSample]:
        samples = super().read()
        collector = self.harness.gpu.collector if self.harness is not None else None
        if collector is None:
            return samples
        real = {_cg(sc.sandbox_id, sc.ctx.tool_call_id or ""): key for key, sc in collector._calls.items()}
        return [dataclasses.replace(x, cgroup=real.get(x.cgroup or "", x.cgroup)) for x in samples]


def _following(*args: Any, gpu_source: _CallReplay, **kwargs: Any) -> Harness:
    harness = Harness(*args, gpu_source=gpu_source, **kwargs)
    gpu_source.harness = harness
    return harness


def _run_polling(
    harness: Harness, sb: SyncSandbox, cmd: str, ctx: TraceContext, *, polls: int, gap: float
) -> ToolResult:
    """Run ``cmd`` and poll the GPU source ``polls`` times, ``gap`` apart, while it runs."""
    out: list[ToolResult] = []
    t = threading.Thread(target=lambda: out.append(sb.run(cmd, ctx)))
    t.start()
    collector = harness.gpu.collector
    assert collector is not None
    for _ in range(1000):  # until the collector follows the call (its cgroup exists before that)
        if any(sc.ctx == ctx for sc in collector._calls.values()) or not t.is_alive():
            break
        time.sleep(0.01)
    for _ in range(polls):
        time.sleep(gap)
        if not t.is_alive():
            break
        collector.poll()
    t.join(60)
    assert out, "the call did not return"
    return out[0]


def test_gpu_compute_in_a_sandbox_without_a_grant_is_critical() -> None:
    events: list[Event] = []
    ctx = TraceContext(run_id="r-gpu", episode_id="e-gpu", tool_call_id="tc-gpu-1")
    sid = "sb-gputest01"
    trainer_pid = 4242
    rounds = [
        [
            GpuSample(0, 777, 9 << 30, 99.0, cgroup=_cg(sid, "tc-gpu-1")),  # a miner in the sandbox
            GpuSample(0, trainer_pid, 60 << 30, 80.0, cgroup="/trainer"),  # the declared workload
        ]
    ]
    harness = _following(
        Policy.default().with_overrides(monitoring=SLOW),
        sinks=[events.append],
        gpu_source=_CallReplay(rounds),
        declared_gpu_pids=lambda: {trainer_pid},
    )
    try:
        with harness.sandbox(sid) as sb:
            r = _run_polling(harness, sb, "sleep 1", ctx, polls=1, gap=0.05)
    finally:
        harness.close()
    usage = {e.data.ProcessId: (e.data, e.ctx) for e in events if isinstance(e.data, GpuUsage)}
    assert usage[777][0].declared is False and usage[777][1] == ctx
    assert usage[trainer_pid][0].declared is True
    flags = [e for e in events if isinstance(e.data, PolicyDecision) and e.data.action == "flag"]
    assert [(f.ctx.tool_call_id, f.data.detail["kind"]) for f in flags] == [  # type: ignore[union-attr]
        ("tc-gpu-1", "undeclared_gpu_compute")
    ]
    assert [a.rule_id for a in r.alerts] == ["corral.monitor.gpu_without_grant"]
    assert r.alerts[0].level == "critical"
    assert r.gpu_time_s is not None and r.gpu_time_s > 0  # no grant, yet GPU use: reported


def test_without_a_gpu_nothing_polls() -> None:
    harness = Harness(Policy.default(), gpu_source=ReplaySource([], status="no GPU: NVML not found"))
    try:
        harness.observers()
        assert harness.gpu.collector is None
    finally:
        harness.close()


def test_a_policy_asking_for_a_gpu_on_a_machine_without_one_fails_before_anything_starts(
    tmp_path: Path,
) -> None:
    empty = discover_gpus(tmp_path / "dev", tmp_path / "proc")
    host = discover_gpus()  # this machine's own view
    cases = [empty] + ([host] if not host.gpus else [])
    for inv in cases:
        harness = Harness(_policy(devices=[0]), store=None, gpu_inventory=inv)
        sid = f"sb-nogpu-{len(str(inv.dev_root))}"
        try:
            asks = r"asks for GPUs \(gpu.devices: \[0\]\) but no NVIDIA"
            with pytest.raises(SandboxUnavailableError, match=asks), harness.sandbox(sid) as sb:
                sb.run("true")
        finally:
            harness.close()
        assert not (DEFAULT_STATE_ROOT / "sandboxes" / sid).exists()  # nothing was built


def test_a_granted_call_sees_its_gpu_and_reports_its_use(inventory: GpuInventory) -> None:
    events: list[Event] = []
    sid, tcid = "sb-gpugrant1", "tc-grant-1"
    sample = GpuSample(
        0, 901, GiB, 50.0, cgroup=_cg(sid, tcid), image="/usr/bin/python3", cmdline="python3 t.py"
    )
    rounds = [[sample]] * 3
    harness = _following(
        _policy(devices=[0]), sinks=[events.append], gpu_source=_CallReplay(rounds), gpu_inventory=inventory
    )
    ctx = TraceContext(run_id="r", episode_id="e", tool_call_id=tcid)
    try:
        with harness.sandbox(sid) as sb:
            cmd = "ls -A /dev | grep nvidia | tr '\\n' ' '; echo; echo $CUDA_VISIBLE_DEVICES; sleep 1.5"
            r = _run_polling(harness, sb, cmd, ctx, polls=2, gap=0.4)
    finally:
        harness.close()
    assert r.exit_code == 0 and r.stop_reason is None and r.alerts == []
    assert r.stdout.splitlines() == ["nvidia-uvm nvidia1 nvidiactl ", UUID_A]  # index 0 is minor 1
    # 50 % of the time between polls: at least 2 x 0.4 s apart, and at most the call's length
    assert r.gpu_time_s is not None and 0.3 <= r.gpu_time_s <= 0.5 * r.duration_s + 0.05
    assert r.gpu_memory_peak_bytes == GiB
    call = [e.data for e in events if isinstance(e.data, ToolCall)]
    assert call[0].gpu_time_s == r.gpu_time_s and call[0].gpu_memory_peak_bytes == GiB
    usage = [e for e in events if isinstance(e.data, GpuUsage)]
    assert usage and all(e.ctx == ctx and e.data.declared for e in usage)  # type: ignore[union-attr]
    assert usage[0].data.Image == "/usr/bin/python3"  # type: ignore[union-attr]


def test_sandboxes_share_the_pool(inventory: GpuInventory) -> None:
    harness = Harness(
        _policy(devices=[0, UUID_B], max_per_sandbox=1),
        store=None,
        gpu_source=ReplaySource([]),
        gpu_inventory=inventory,
    )
    try:
        with harness.sandbox() as a, harness.sandbox() as b:
            seen = {sb.run("echo $CUDA_VISIBLE_DEVICES").stdout.strip() for sb in (a, b)}
        assert seen == {UUID_A, UUID_B}
        with harness.sandbox() as c:  # both released: the first of the pool again
            assert c.run("echo $CUDA_VISIBLE_DEVICES").stdout.strip() == UUID_A
    finally:
        harness.close()


def test_a_call_past_its_gpu_budget_is_stopped_and_alerted(inventory: GpuInventory) -> None:
    events: list[Event] = []
    sid, tcid = "sb-gpubudget", "tc-budget-1"
    rounds = [[GpuSample(0, 902, GiB, 100.0, cgroup=_cg(sid, tcid))]] * 40
    harness = _following(
        _policy(devices=[0], compute_budget_s=0.3),
        sinks=[events.append],
        gpu_source=_CallReplay(rounds),
        gpu_inventory=inventory,
    )
    try:
        with harness.sandbox(sid) as sb:
            r = _run_polling(harness, sb, "sleep 25", TraceContext(tool_call_id=tcid), polls=40, gap=0.1)
            after = sb.run("echo still-usable")
    finally:
        harness.close()
    assert r.stop_reason == "gpu_budget" and r.duration_s < 10 and r.exit_code != 0
    assert "GPU time" in (r.agent_message or "")
    assert [a.rule_id for a in r.alerts] == ["corral.monitor.gpu_budget"]
    assert r.gpu_time_s is not None and r.gpu_time_s > 0.3
    kills = [e.data for e in events if isinstance(e.data, PolicyDecision) and e.data.action == "kill"]
    assert [k.reason for k in kills] == ["gpu_budget"]
    assert after.stdout == "still-usable\n"  # the budget is per call


def test_nvml_breaking_stops_the_call_and_refuses_the_next(inventory: GpuInventory) -> None:
    sid, tcid = "sb-gpubreak", "tc-break-1"
    rounds: list[list[GpuSample] | str] = [
        [GpuSample(0, 903, GiB, 40.0, cgroup=_cg(sid, tcid))],
        "NVML failed: GPU is lost",
    ]
    src = _CallReplay(rounds)
    harness = _following(_policy(devices=[0]), store=None, gpu_source=src, gpu_inventory=inventory)
    try:
        with harness.sandbox(sid) as sb:
            r = _run_polling(harness, sb, "sleep 25", TraceContext(tool_call_id=tcid), polls=2, gap=0.2)
            nxt = sb.run("echo should-not-run")
    finally:
        harness.close()
    assert r.stop_reason == "gpu_monitor_failure" and r.duration_s < 10
    assert "corral.monitor.gpu_monitor_failure" in [a.rule_id for a in r.alerts]
    assert nxt.blocked and nxt.exit_code is None and nxt.stdout == ""
    assert nxt.stop_reason == "gpu_monitor_failure" and "GPU is lost" in (nxt.block_reason or "")
    assert nxt.agent_message == "[corral] This command was not run: the GPU is unavailable."


@pytest.mark.parametrize("mode", ["stop", "warn"])
def test_no_nvml_with_a_grant(inventory: GpuInventory, mode: str) -> None:
    missing = ReplaySource([], status="no GPU: nvidia-ml-py is not installed (pip install 'corral[gpu]')")
    harness = Harness(
        _policy(devices=[0], on_monitor_failure=mode), store=None, gpu_source=missing, gpu_inventory=inventory
    )
    try:
        with harness.sandbox() as sb:
            r = sb.run("echo ran")
    finally:
        harness.close()
    if mode == "stop":
        assert r.blocked and r.stop_reason == "gpu_monitor_failure" and r.stdout == ""
        assert "nvidia-ml-py is not installed" in (r.block_reason or "")
    else:
        assert r.stdout == "ran\n" and not r.blocked and r.gpu_time_s is None
        assert [a.rule_id for a in r.alerts] == ["corral.monitor.gpu_unwatched"]


def test_gpu_work_left_running_after_its_call_shows_in_the_next_result(inventory: GpuInventory) -> None:
    sid, first, second = "sb-gpulinger", "tc-linger-1", "tc-linger-2"
    rounds: list[list[GpuSample] | str] = [
        [],  # the first call's last look: it has just started its background job
        [GpuSample(0, 904, GiB, 96.0, cgroup=_cg(sid, first))],
    ]
    policy = _policy(devices=[0]).with_overrides(processes={"lifetime": "episode"})
    harness = _following(policy, store=None, gpu_source=_CallReplay(rounds), gpu_inventory=inventory)
    try:
        with harness.sandbox(sid) as sb:
            r1 = sb.run("sleep 30 >/dev/null 2>&1 &", TraceContext(tool_call_id=first))
            collector = harness.gpu.collector
            assert collector is not None
            collector.poll()  # the background job now keeps the GPU busy, nobody waiting for it
            r2 = sb.run("true", TraceContext(tool_call_id=second))
    finally:
        harness.close()
    assert r1.alerts == [] and r1.exit_code == 0
    late = [a for a in r2.alerts if a.rule_id == "corral.monitor.gpu_after_call"]
    assert late and late[0].level == "high" and late[0].matched["ProcessId"] == 904


def test_a_miner_on_the_gpu_is_caught_by_the_rule_pack(inventory: GpuInventory) -> None:
    sid = "sb-gpuminer"
    miner = GpuSample(
        0,
        905,
        GiB,
        99.0,
        cgroup=_cg(sid, "tc-miner-2"),
        image="/workspace/.cache/xmrig",
        cmdline="/workspace/.cache/xmrig --donate-level 1 -o 198.51.100.7:3333",
    )
    trainer = GpuSample(
        0,
        906,
        GiB,
        99.0,
        cgroup=_cg(sid, "tc-miner-1"),
        image="/usr/bin/python3.11",
        cmdline="python3 train.py --epochs 3",
    )
    rounds = [[trainer], [], [miner], []]
    src = _CallReplay(rounds)
    harness = _following(_policy(devices=[0]), store=None, gpu_source=src, gpu_inventory=inventory)
    try:
        with harness.sandbox(sid) as sb:
            ctx1, ctx2 = TraceContext(tool_call_id="tc-miner-1"), TraceContext(tool_call_id="tc-miner-2")
            benign = _run_polling(harness, sb, "sleep 0.5", ctx1, polls=1, gap=0.1)
            bad = _run_polling(harness, sb, "sleep 0.5", ctx2, polls=1, gap=0.1)
            # the sandbox's proxied flows spoke stratum (an egress fingerprint): evidence on its own
            harness.emit(
                Event(
                    sandbox_id=sid,
                    data=NetworkConnection(Protocol="tcp", decision="allowed", fingerprint="stratum"),
                )
            )
            scope = CallScope(sid, TraceContext(), {}, 0, 0, 0)
            assert harness.gpu.miner_evidence(scope, trainer) == [
                "the sandbox's network flows speak the stratum mining protocol"
            ]
    finally:
        harness.close()
    assert benign.alerts == []
    hit = [a for a in bad.alerts if a.rule_id == "corral.monitor.gpu_miner"]
    assert hit and hit[0].level == "critical"
    assert any(e.startswith("rule ") for e in hit[0].matched["evidence"])


def test_a_poller_that_breaks_fails_the_gpu_watch_closed(inventory: GpuInventory) -> None:
    events: list[Event] = []
    malformed = GpuSample("zero", 1, None, None)  # type: ignore[arg-type]  # a reading that makes no sense
    policy = _policy(devices=[0]).with_overrides(monitoring={"gpu_interval_s": 0.05})
    src = ReplaySource([[malformed]])
    harness = Harness(policy, sinks=[events.append], store=None, gpu_source=src, gpu_inventory=inventory)
    try:
        collector = harness.gpu.start()
        assert collector is not None
        for _ in range(200):
            if collector.failure is not None:
                break
            time.sleep(0.02)
        assert collector.failure is not None and "poller failed" in collector.failure
        with harness.sandbox() as sb:
            r = sb.run("echo x")
        assert r.blocked and r.stop_reason == "gpu_monitor_failure"
    finally:
        harness.close()
    assert any(isinstance(e.data, Health) and e.data.status == "failed" for e in events)
