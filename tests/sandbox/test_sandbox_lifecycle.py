"""Create/run/destroy leaves nothing behind: no cgroups, mounts, processes, uids or state."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import psutil
import pytest

from corral import Policy, Sandbox, TraceContext
from corral.errors import CollectorError, InputError, SandboxSetupError
from corral.sandbox import DEFAULT_STATE_ROOT, CallScope, Jail
from corral.sandbox._cgroups import PARENT, ZYGOTES, detect_layout
from corral.sandbox._zygote_client import shared_zygote

CGROUP_ROOTS = [
    Path("/sys/fs/cgroup") / c / "corral" for c in ("memory", "pids", "cpu", "cpuacct", "unified")
]


def _leftovers(ids: set[str], uids: set[int]) -> list[str]:
    found: list[str] = []
    for root in CGROUP_ROOTS:
        found += [str(root / i) for i in ids if (root / i).exists()]
    found += [
        str(DEFAULT_STATE_ROOT / "sandboxes" / i)
        for i in ids
        if (DEFAULT_STATE_ROOT / "sandboxes" / i).exists()
    ]
    with open("/proc/self/mountinfo") as f:
        found += [line.split()[4] for line in f if any(i in line for i in ids)]
    found += [f"pid {p.pid}" for p in psutil.process_iter(["uids"]) if p.info["uids"].real in uids]
    return found


def test_200_cycles_leave_nothing_behind(policy: Policy) -> None:
    ids: set[str] = set()
    uids: set[int] = set()
    for i in range(200):
        with Sandbox(policy) as sb:
            ids.add(sb.id)
            uids.add(sb.uid)
            r = sb.run("echo $$ > pid; sleep 60 & true" if i % 2 else "true")
            assert r.exit_code == 0
    assert _leftovers(ids, uids) == []


def test_bad_commands_are_rejected_before_anything_runs(policy: Policy) -> None:
    with Sandbox(policy) as sb:
        for bad in (42, [], "", "   ", ["ls", 3], None):
            with pytest.raises(InputError):
                sb.run(bad)  # type: ignore[arg-type]


def _state_dirs() -> set[Path]:
    d = DEFAULT_STATE_ROOT / "sandboxes"
    return set(d.iterdir()) if d.exists() else set()


def test_failed_setup_leaves_nothing_behind(policy: Policy, tmp_path: Path) -> None:
    before = _state_dirs()
    with pytest.raises(InputError, match="does not exist"):
        Sandbox(policy, workspace=tmp_path / "missing")  # refused before anything is made
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        Sandbox(policy, workspace=tmp_path / "file")
    bad = policy.with_overrides(workspace={"writable_host_path": str(tmp_path / "missing")})
    with pytest.raises(SandboxSetupError, match="does not exist"):
        Sandbox(bad)
    assert _state_dirs() == before


def test_stale_state_of_a_dead_owner_is_reaped(policy: Policy) -> None:
    # Simulate a crashed harness: a sandbox whose lock nobody holds, with its cgroups still there.
    jail = asyncio.run(Jail.create(policy))
    sid, state = jail.id, jail.state_dir
    os.close(jail._lock_fd)  # the "owner" dies without cleaning up
    jail._lock_fd = -1
    from corral.sandbox import reap_stale

    reaped = reap_stale(DEFAULT_STATE_ROOT, jail.layout)
    assert sid in reaped
    assert not state.exists()
    asyncio.run(jail.close())
    assert _leftovers({sid}, set()) == []


def test_writable_host_directory_keeps_its_owner(policy: Policy, tmp_path: Path) -> None:
    ws = tmp_path / "repo"
    ws.mkdir()
    (ws / "README").write_text("hello\n")
    os.chown(ws, 1234, 1234)
    os.chown(ws / "README", 1234, 1234)
    with Sandbox(policy.with_overrides(workspace={"writable_host_path": str(ws)})) as sb:
        r = sb.run("cat README && echo new > out && stat -c '%U %u' README out .")
        assert r.stdout.splitlines() == [
            "hello",
            "agent 1000",
            "agent 1000",
            "agent 1000",
        ]  # the agent's inside
        # ...and the directory's owner's on the host, while the sandbox lives: nothing is chowned
        assert (ws.stat().st_uid, (ws / "out").stat().st_uid) == (1234, 1234)
    assert (ws / "out").read_text() == "new\n"


def test_sandbox_is_unusable_after_close(policy: Policy) -> None:
    from corral.errors import SandboxClosedError

    sb = Sandbox(policy)
    sb.close()
    with pytest.raises(SandboxClosedError):
        sb.run("true")


class _VanishedNetwork:
    """A network attachment whose namespace is gone (its egress layer died): the call must not run."""

    netns_path = "/run/netns/corral-test-does-not-exist"
    env: Mapping[str, str] = MappingProxyType({})
    files: Mapping[str, str] = MappingProxyType({})
    sandbox_ip = None

    def begin_call(self, ctx: object) -> None: ...

    def end_call(self) -> None: ...

    def check(self) -> None: ...

    def close(self) -> None: ...


def test_a_harness_failure_is_an_error_not_the_commands_output(policy: Policy) -> None:
    p = policy.with_overrides(network={"mode": "allowlist"})
    before = _state_dirs()
    with pytest.raises(SandboxSetupError, match="network namespace"):
        asyncio.run(Jail.create(p, network=_VanishedNetwork()))
    assert _state_dirs() == before


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def call_started(self, scope: CallScope) -> None:
        self.calls.append("started")

    async def call_finished(self, scope: CallScope, *, lingering: bool) -> None:
        self.calls.append("finished")

    def scope_released(self, scope: CallScope) -> None:
        self.calls.append("released")


class _DeadCollector:
    """A collector whose tracer died: it refuses to follow a call."""

    def call_started(self, scope: CallScope) -> None:
        raise CollectorError("exec collector failed: tracer exited")

    async def call_finished(self, scope: CallScope, *, lingering: bool) -> None:
        raise AssertionError("never started, so never finished")

    def scope_released(self, scope: CallScope) -> None:
        raise AssertionError("never started, so never released")


def test_a_call_no_collector_can_follow_does_not_run(policy: Policy) -> None:
    rec = _Recorder()

    async def scenario() -> str:
        jail = await Jail.create(policy, observers=[rec, _DeadCollector()])
        try:
            with pytest.raises(CollectorError):
                await jail.run("touch ran", ctx=TraceContext())
            jail.observers = []
            check = await jail.run("ls", ctx=TraceContext())
            return check.raw.stdout.decode()
        finally:
            await jail.close()

    assert "ran" not in asyncio.run(scenario())
    assert rec.calls == ["started", "finished", "released"]  # the collector that did start is told it ended


def test_the_zygote_runs_in_corrals_own_cpu_cgroup(sb: Sandbox) -> None:
    # What the zygote forks (each call's first process, until it joins its call's cgroups) must
    # compete with the trainer for CPU as Corral's group, not as tasks of the trainer's own group.
    layout = detect_layout()
    assert sb.run("true").exit_code == 0
    pid = shared_zygote(layout).pid
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    want = "cpu" if layout.kind == "hybrid" else ""
    [cpu] = [ln for ln in lines if want in ln.split(":")[1].split(",")]
    assert cpu.endswith(f"/{PARENT}/{ZYGOTES}")
