"""The exec collector against real processes in real cgroups."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from monitor_cgroups import MakeScope, finish, run_in

from corral.errors import CollectorError
from corral.events import Event, FileDenied, Health, ProcessExit, ProcessStart
from corral.monitor import ExecCollector
from corral.monitor._exec import TracerKind
from corral.monitor._execrecords import ArgvAssembler, ExecEnter, Lost, Marker
from corral.sandbox import CallScope
from corral.sandbox._callers import finish_call

TRACERS = ["libbpf", "bpftrace"]  # every behaviour below holds for both tracers


@pytest.fixture(scope="module", params=TRACERS)
def collector(request: pytest.FixtureRequest) -> Iterator[tuple[ExecCollector, list[Event]]]:
    events: list[Event] = []
    with ExecCollector(events.append, tracer=request.param) as c:
        assert c.tracer == request.param
        yield c, events


def _starts(events: list[Event], call_id: str) -> list[ProcessStart]:
    return [e.data for e in events if isinstance(e.data, ProcessStart) and e.ctx.tool_call_id == call_id]


Collected = tuple[ExecCollector, list[Event]]


def test_shell_with_background_job(collector: Collected, make_scope: MakeScope) -> None:
    c, events = collector
    scope = make_scope("sbA", run_id="r1", step=3, episode_id="e7", turn=2)
    c.call_started(scope)
    py = shutil.which("python3") or sys.executable
    r = run_in(scope, f"ls / >/dev/null; {py} -c 'print(1)'; (sleep 0.1 &); sleep 0.3")
    assert r.returncode == 0, r.stderr
    finish(c, scope)
    mine = [e for e in events if e.ctx.tool_call_id == scope.ctx.tool_call_id]
    assert all(e.sandbox_id == "sbA" and e.ctx == scope.ctx for e in mine)
    starts = _starts(events, scope.ctx.tool_call_id or "")
    by_argv = {tuple(s.argv): s for s in starts}
    sh = by_argv.get(("sh", "-c", f"ls / >/dev/null; {py} -c 'print(1)'; (sleep 0.1 &); sleep 0.3"))
    assert sh is not None and sh.Image.endswith("/sh")
    ls = by_argv[("ls", "/")]
    assert ls.Image == "/usr/bin/ls" and ls.ParentProcessId == sh.ProcessId
    assert ls.ParentImage == sh.Image and ls.CommandLine == "ls /" and ls.User == "0"
    assert any(s.argv[1:] == ["-c", "print(1)"] for s in starts)
    bg = by_argv[("sleep", "0.1")]
    # started by a forked subshell of sh: the parent is that subshell, which still runs sh
    assert bg.ParentImage == sh.Image and bg.ParentProcessId != sh.ProcessId
    exits = [e.data for e in mine if isinstance(e.data, ProcessExit)]
    assert {x.ProcessId for x in exits} >= {ls.ProcessId, sh.ProcessId, bg.ProcessId}
    assert all(x.exit_code == 0 for x in exits if x.ProcessId == ls.ProcessId)


def test_exit_status_signal_and_outsiders(
    collector: tuple[ExecCollector, list[Event]], make_scope: MakeScope
) -> None:
    c, events = collector
    scope = make_scope("sbB")
    c.call_started(scope)
    run_in(scope, "sh -c 'exit 3'; sh -c 'kill -9 $$'; true")
    subprocess.run(["true"], check=True)  # outside every registered cgroup: never reported
    finish(c, scope)
    exits = [e.data for e in events if isinstance(e.data, ProcessExit) and e.ctx == scope.ctx]
    assert any(x.exit_code == 3 for x in exits)
    assert any(x.signal == 9 for x in exits)
    assert not any(isinstance(e.data, ProcessStart) and e.sandbox_id is None for e in events)


def test_a_denied_exec_is_reported(collector: Collected, make_scope: MakeScope, tmp_path: Path) -> None:
    c, events = collector
    scope = make_scope("sbDenied")
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\ntrue\n")
    script.chmod(0o644)
    c.call_started(scope)
    run_in(scope, f"{script}; /bin/true after")
    finish(c, scope)
    denied = [e.data for e in events if isinstance(e.data, FileDenied) and e.ctx == scope.ctx]
    assert [(d.TargetFilename, d.operation) for d in denied] == [(str(script), "exec (EACCES)")]
    assert any(s.argv == ["/bin/true", "after"] for s in _starts(events, scope.ctx.tool_call_id or ""))


def test_long_argv_is_complete(collector: tuple[ExecCollector, list[Event]], make_scope: MakeScope) -> None:
    c, events = collector
    scope = make_scope("sbC")
    c.call_started(scope)
    args = [f"arg{i}" for i in range(100)] + ["x" * 500]
    run_in(scope, "/bin/echo " + " ".join(args) + " >/dev/null; exec sleep 0.2")
    finish(c, scope)
    echo = [s for s in _starts(events, scope.ctx.tool_call_id or "") if s.Image == "/bin/echo"]
    assert len(echo) == 1
    # the probe cuts argv; either /proc completed it or the event says it is cut
    assert echo[0].argv == ["/bin/echo", *args] or echo[0].argv_truncated


def test_burst_across_cgroups(collector: tuple[ExecCollector, list[Event]], make_scope: MakeScope) -> None:
    """Thousands of execs in four calls at once: each recorded once, in its own call."""
    c, events = collector
    n = 5000  # 20,000 execs in all
    scopes = [make_scope(f"sb{i}") for i in range(4)]
    for s in scopes:
        c.call_started(s)
    procs = []
    for i, s in enumerate(scopes):
        paths = [p / "cgroup.procs" for p in s.cgroup_paths.values()]

        def enter(paths: list = paths) -> None:  # type: ignore[type-arg]
            for p in paths:
                with open(p, "w") as f:
                    f.write("0")

        script = f"i=0; while [ $i -lt {n} ]; do /bin/true tag{i} $i; i=$((i+1)); done"
        procs.append(subprocess.Popen(["sh", "-c", script], preexec_fn=enter))
    for p in procs:
        assert p.wait(120) == 0
    for s in scopes:
        finish(c, s)
    health = [e.data for e in events if isinstance(e.data, Health) and e.data.status != "ok"]
    assert [h for h in health if h.status != "failed"] == []
    # Nothing goes missing silently: on an overloaded machine the kernel may drop records, and then
    # every missing exec is covered by a reported loss (sequence gaps), which must stay rare.
    reported_lost = sum(h.count for h in health)
    missing = 0
    for i, s in enumerate(scopes):
        starts = [x for x in _starts(events, s.ctx.tool_call_id or "") if x.Image == "/bin/true"]
        # An exec whose argument records were lost says so; it counts as missing (a reported loss).
        seen = [x.argv for x in starts if not x.argv_truncated]
        indexes = [int(a[2]) for a in seen]
        assert len(indexes) == len(set(indexes))  # none duplicated
        assert set(indexes) <= set(range(n))
        assert all(a[1] == f"tag{i}" for a in seen)  # none in the wrong call
        missing += n - len(seen)
    assert missing <= reported_lost <= 4 * n // 100


def test_sequence_gaps_are_reported_as_lost_records() -> None:
    asm = ArgvAssembler(strlen=200)

    def line(text: str) -> str:
        return json.dumps({"type": "printf", "data": text + "\n"})

    assert asm.feed(line("S 0 10 100 0 1")) == Marker(100, 0, 1)
    assert asm.feed(line("K 1 5 101 10 11 7")) is not None  # CPU 1 starts at any number
    assert asm.feed(line("E 0 11 102 10 7 /bin/true")) is None  # E, A, F share one sequence number
    assert asm.feed(line("A 0 11 10 /bin/true")) is None
    assert isinstance(asm.feed(line("F 0 11 10 1 0")), ExecEnter)
    assert asm.feed(line("S 0 15 103 0 2")) == Lost(3)  # 12, 13 and 14 never arrived
    assert asm.take_pending() == Marker(103, 0, 2)
    assert asm.feed(line("S 1 6 104 1 2")) == Marker(104, 1, 2)
    assert asm.feed("\n") is None  # bpftrace's blank lines at exit


def test_missing_tool_fails_loudly() -> None:
    events: list[Event] = []
    c = ExecCollector(events.append, bpftrace="no-such-bpftrace", tracer="bpftrace")
    with pytest.raises(CollectorError):
        c.start()
    assert any(isinstance(e.data, Health) and e.data.status == "failed" for e in events)


@pytest.mark.parametrize(("mine_tracer", "other_tracer"), [("libbpf", "libbpf"), ("libbpf", "bpftrace")])
def test_collectors_do_not_answer_each_others_syncs(
    make_scope: MakeScope, mine_tracer: TracerKind, other_tracer: TracerKind
) -> None:
    """Every tracer sees every marker syscall: a busy second collector (here or in another
    process) must not make this one drain before its own markers arrive."""
    mine: list[Event] = []
    with (
        ExecCollector(mine.append, tracer=mine_tracer) as c,
        ExecCollector(lambda e: None, tracer=other_tracer) as other,
    ):
        for _ in range(50):  # the other collector's tokens run far ahead of ours
            other._sync(5)
        scope = make_scope("sbSync")
        c.call_started(scope)
        r = run_in(scope, "i=0; while [ $i -lt 300 ]; do /bin/true sync $i; i=$((i+1)); done")
        assert r.returncode == 0
        finish(c, scope)
        seen = {x.argv[2] for x in _starts(mine, scope.ctx.tool_call_id or "") if x.Image == "/bin/true"}
    assert seen == {str(i) for i in range(300)}


def test_a_call_starts_and_ends_without_waiting_for_a_drain(
    collector: Collected, make_scope: MakeScope
) -> None:
    """Calls register from the event loop: a drain in progress (which emits events and may wait for
    a sync round) must not hold them up, and the call's execs are still all attributed to it."""
    c, events = collector
    scope = make_scope("sbNoWait")
    with c._drain_lock:  # a drain is running on the collector's thread
        t = threading.Thread(target=c.call_started, args=(scope,))
        t.start()
        t.join(5)
        assert not t.is_alive()
    r = run_in(scope, "/bin/true nowait 1; /bin/true nowait 2")
    assert r.returncode == 0
    with c._drain_lock:
        t = threading.Thread(target=c.scope_released, args=(make_scope("sbOther"),))
        t.start()
        t.join(5)
        assert not t.is_alive()
    finish(c, scope)
    seen = [x.argv for x in _starts(events, scope.ctx.tool_call_id or "") if x.Image == "/bin/true"]
    assert sorted(seen) == [["/bin/true", "nowait", "1"], ["/bin/true", "nowait", "2"]]


def test_settles_from_many_threads_each_see_their_own_calls(
    collector: Collected, make_scope: MakeScope
) -> None:
    """Sync rounds from several threads at once (calls ending together, the periodic drain) interleave
    their markers; each still returns only once every record written before it began is read."""
    c, events = collector
    scopes = [make_scope(f"sbPar{i}") for i in range(6)]
    failures: list[BaseException] = []

    def one(i: int) -> None:
        try:
            c.call_started(scopes[i])
            for j in range(5):
                assert run_in(scopes[i], f"/bin/true par{i} {j}").returncode == 0
                c.settle()  # every exec so far is emitted when this returns
                got = {
                    x.argv[2]
                    for x in _starts(events, scopes[i].ctx.tool_call_id or "")
                    if x.Image == "/bin/true"
                }
                assert got == {str(k) for k in range(j + 1)}
            c.scope_released(scopes[i])
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(scopes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == []


def test_a_call_cancelled_while_collectors_finish_is_still_forgotten(
    collector: Collected, make_scope: MakeScope
) -> None:
    """A sandbox closing cancels calls that are still being finished: every collector after the one
    that was waiting must still release the call (nothing stays registered for a dead cgroup)."""
    c, _ = collector
    scope = make_scope("sbCancel")
    released: list[str] = []

    class Waits:  # a collector whose finish never ends by itself (a sync round that hangs)
        def call_started(self, scope: CallScope) -> None: ...

        async def call_finished(self, scope: CallScope, *, lingering: bool = False) -> None:
            await asyncio.Event().wait()

        def scope_released(self, scope: CallScope) -> None:
            released.append("waits")

    c.call_started(scope)

    async def main() -> None:
        task = asyncio.ensure_future(finish_call([Waits(), c], scope, lingering=False))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert released == ["waits"]
    assert scope.cgroup_id not in c._scopes


def test_one_marker_settles_execs_of_every_cpu_with_the_ordered_ring(
    make_scope: MakeScope, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libbpf's ring is read in the order records were reserved on any CPU: a call's settle makes one
    marker where its thread runs (no walk over the CPUs, milliseconds on a large node), and still
    every exec that ran on another CPU is emitted when it returns (on a one-CPU machine, the same
    CPU: the single marker and the missing walk are still what is checked)."""
    cpus = sorted(os.sched_getaffinity(0))
    first, second = cpus[0], cpus[-1]
    events: list[Event] = []
    with ExecCollector(events.append, tracer="libbpf") as c:
        moves: list[object] = []
        real = os.sched_setaffinity

        def spy(pid: int, cpus: object) -> None:
            # This thread or the loop's worker threads; the module's bpftrace collector, alive
            # meanwhile, walks the CPUs on its own sync thread.
            name = threading.current_thread().name
            if name == "MainThread" or name.startswith("asyncio"):
                moves.append(cpus)
            real(pid, cpus)  # type: ignore[arg-type]

        scope = make_scope("sbOrdered")
        c.call_started(scope)
        r = run_in(scope, f"for i in 1 2 3 4 5; do taskset -c {second} /bin/true cpu $i; done")
        assert r.returncode == 0, r.stderr
        mine = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {first})
        monkeypatch.setattr(os, "sched_setaffinity", spy)
        try:
            finish(c, scope)
        finally:
            monkeypatch.undo()
            os.sched_setaffinity(0, mine)
        assert moves == []
        seen = [x.argv[2] for x in _starts(events, scope.ctx.tool_call_id or "") if x.Image == "/bin/true"]
    assert sorted(seen) == ["1", "2", "3", "4", "5"]


def test_a_settle_on_the_loop_fails_when_the_tracer_does(
    make_scope: MakeScope, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call waiting for its marker when the collector fails gets the failure at once; one whose
    marker never comes back fails the collector after the sync timeout. Neither returns as settled."""
    with ExecCollector(lambda e: None, tracer="libbpf", sync_timeout_s=0.5, interval_s=60) as c:
        monkeypatch.setattr(c, "_markers", lambda token: None)  # no marker reaches the ring
        scope = make_scope("sbFails")
        c.call_started(scope)
        timer = threading.Timer(0.1, c._fail, args=("the reader stopped",))
        timer.start()
        t = time.monotonic()
        with pytest.raises(CollectorError, match="the reader stopped"):
            asyncio.run(c.call_finished(scope))
        assert time.monotonic() - t < 0.4
        timer.join()
    with ExecCollector(lambda e: None, tracer="libbpf", sync_timeout_s=0.3, interval_s=60) as c:
        monkeypatch.setattr(c, "_markers", lambda token: None)
        scope = make_scope("sbSilent")
        c.call_started(scope)
        with pytest.raises(CollectorError, match=r"did not answer a sync within 0\.3s"):
            asyncio.run(c.call_finished(scope))
        with pytest.raises(CollectorError):  # failed for good: no call runs unwatched after it
            c.call_started(make_scope("sbAfter"))
