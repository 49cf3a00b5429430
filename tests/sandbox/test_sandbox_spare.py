"""The next call's process, prepared while the sandbox waits: confined like any call, used once,
never left behind, and never in the way when it cannot serve."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import psutil
import pytest

from corral import Policy, TraceContext
from corral.sandbox import Jail, _spare

CTX = TraceContext(run_id="spare")


def _with_jail(policy: Policy, body: Callable[[Jail], Awaitable[None]]) -> None:
    async def main() -> None:
        j = await Jail.create(policy)
        try:
            await body(j)
        finally:
            await j.close()

    asyncio.run(main())


async def _ready_spare(jail: Jail) -> _spare.Spare:
    """Wait until the slot holds a spare whose process has finished its setup."""
    for _ in range(400):
        spare = jail._spares._spare
        if spare is not None and spare.cgroup.pids():
            return spare
        await asyncio.sleep(0.005)
    raise AssertionError("no spare was made after a call")


def _uid_processes(uid: int) -> list[int]:
    return [p.pid for p in psutil.process_iter(["uids"]) if p.info["uids"].real == uid]


def test_a_spare_runs_the_next_call_with_the_full_confinement(policy: Policy) -> None:
    _with_jail(policy, _a_spare_runs_the_next_call_with_the_full_confinement)


async def _a_spare_runs_the_next_call_with_the_full_confinement(jail: Jail) -> None:
    first = await jail.run(["/bin/true"], ctx=CTX)
    assert first.raw.exit_code == 0
    spare = await _ready_spare(jail)
    [waiting] = spare.cgroup.pids()
    # set up, holding no command yet, and still host root: between calls no process has the sandbox's uid
    assert psutil.Process(waiting).uids().real == 0 and _uid_processes(jail.uid) == []
    status = "grep -E '^(Uid|CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; echo pid=$$; pwd"
    out = await jail.run(["/bin/sh", "-c", status], ctx=CTX)
    assert out.scope.cgroup_id == spare.cgroup_ino  # the spare ran it
    text = out.raw.stdout.decode()
    assert "CapEff:\t0000000000000000" in text and "CapBnd:\t0000000000000000" in text
    assert "NoNewPrivs:\t1" in text and "Seccomp:\t2" in text
    assert "pid=1\n" in text  # its own pid namespace
    assert text.rstrip().endswith(jail.cwd)
    assert jail._spares._spare is not spare  # used once


def test_each_call_gets_a_fresh_spare_with_nothing_of_the_last(policy: Policy) -> None:
    _with_jail(policy, _each_call_gets_a_fresh_spare_with_nothing_of_the_last)


async def _each_call_gets_a_fresh_spare_with_nothing_of_the_last(jail: Jail) -> None:
    await jail.run(["/bin/true"], ctx=CTX)
    seen = set()
    for _ in range(3):
        spare = await _ready_spare(jail)
        r = await jail.run(["/bin/sh", "-c", "ls /tmp; touch /tmp/mark; sleep 30 &"], ctx=CTX)
        assert r.scope.cgroup_id == spare.cgroup_ino
        assert b"mark" not in r.raw.stdout
        seen.add(spare.cgroup_ino)
    assert len(seen) == 3
    # the background sleeps died with their calls
    await _ready_spare(jail)
    assert _uid_processes(jail.uid) == []


def test_a_call_that_comes_while_its_spare_is_set_up_waits_for_it_and_runs_in_it(
    policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Until a spare says it is ready its cgroup is empty, which a call taking it at once used to
    # read as a killed spare, turning spares off for the sandbox: calls a model turn apart never
    # got one on a slow machine. A slower set-up makes that window wide enough to hit every time.
    made: list[int] = []
    ready = _spare.Spare.ready

    async def slow_ready(self: _spare.Spare, timeout_s: float = _spare.READY_TIMEOUT_S) -> None:
        await asyncio.sleep(0.05)
        await ready(self, timeout_s)
        made.append(self.cgroup_ino)

    monkeypatch.setattr(_spare.Spare, "ready", slow_ready)
    _with_jail(policy, _a_call_that_comes_while_its_spare_is_set_up_waits_for_it_and_runs_in_it(made))


def _a_call_that_comes_while_its_spare_is_set_up_waits_for_it_and_runs_in_it(
    made: list[int],
) -> Callable[[Jail], Awaitable[None]]:
    async def body(jail: Jail) -> None:
        await jail.run(["/bin/true"], ctx=CTX)
        for _ in range(3):
            await asyncio.sleep(0.01)  # the refill has begun; its process is not ready yet
            assert jail._spares._filling is not None and not jail._spares._filling.done()
            r = await jail.run(["/bin/echo", "ran"], ctx=CTX)
            assert r.raw.stdout == b"ran\n"
            assert r.scope.cgroup_id == made[-1]  # in the spare it waited for
        assert jail._spares.enabled

    return body


def test_a_spare_that_died_waiting_is_not_used_and_the_call_runs(policy: Policy) -> None:
    _with_jail(policy, _a_spare_that_died_waiting_is_not_used_and_the_call_runs)


async def _a_spare_that_died_waiting_is_not_used_and_the_call_runs(jail: Jail) -> None:
    await jail.run(["/bin/true"], ctx=CTX)
    spare = await _ready_spare(jail)
    spare.cgroup.kill()
    r = await jail.run(["/bin/echo", "still runs"], ctx=CTX)
    assert r.raw.exit_code == 0 and r.raw.stdout == b"still runs\n"
    # Found dead when taken, or (when the zygote reports its death late) when handed the call:
    # either way the call ran on a process of its own.
    assert not jail._spares.enabled  # a sandbox whose spares die gets none: calls take the ordinary path
    r = await jail.run(["/bin/true"], ctx=CTX)
    assert r.raw.exit_code == 0 and jail._spares._spare is None


def test_an_idle_sandbox_holds_no_spare(policy: Policy) -> None:
    _with_jail(policy, _an_idle_sandbox_holds_no_spare)


async def _an_idle_sandbox_holds_no_spare(jail: Jail) -> None:
    jail._spares._idle_s = 0.2
    await jail.run(["/bin/true"], ctx=CTX)
    spare = await _ready_spare(jail)
    await asyncio.sleep(0.6)
    assert jail._spares._spare is None
    assert not spare.cgroup.paths["unified"].exists()
    assert _uid_processes(jail.uid) == []
    r = await jail.run(["/bin/true"], ctx=CTX)  # and the next call still runs
    assert r.raw.exit_code == 0


def test_close_leaves_neither_the_spare_nor_its_cgroup(policy: Policy) -> None:
    asyncio.run(_close_leaves_neither_the_spare_nor_its_cgroup(policy))


async def _close_leaves_neither_the_spare_nor_its_cgroup(policy: Policy) -> None:
    j = await Jail.create(policy)
    await j.run(["/bin/true"], ctx=CTX)
    spare = await _ready_spare(j)
    uid = j.uid
    await j.close()
    assert not spare.cgroup.paths["unified"].exists()
    assert _uid_processes(uid) == []
    assert _spare.budget.held == 0


def test_a_close_while_the_spare_is_being_made_leaves_nothing(policy: Policy) -> None:
    asyncio.run(_a_close_while_the_spare_is_being_made_leaves_nothing(policy))


async def _a_close_while_the_spare_is_being_made_leaves_nothing(policy: Policy) -> None:
    j = await Jail.create(policy)
    await j.run(["/bin/true"], ctx=CTX)
    await asyncio.sleep(0.003)  # the refill has just started
    uid = j.uid
    await j.close()
    assert _uid_processes(uid) == []
    assert _spare.budget.held == 0


def test_spares_past_the_process_budget_are_not_made(policy: Policy, monkeypatch: pytest.MonkeyPatch) -> None:
    asyncio.run(_spares_past_the_process_budget_are_not_made(policy, monkeypatch))


async def _spares_past_the_process_budget_are_not_made(
    policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_spare.budget, "limit", 1)
    a, b = await Jail.create(policy), await Jail.create(policy)
    try:
        await a.run(["/bin/true"], ctx=CTX)
        await _ready_spare(a)
        await b.run(["/bin/true"], ctx=CTX)
        await asyncio.sleep(0.1)
        assert b._spares._spare is None
        r = await b.run(["/bin/echo", "ok"], ctx=CTX)  # served the ordinary way
        assert r.raw.stdout == b"ok\n"
    finally:
        await a.close()
        await b.close()
    assert _spare.budget.held == 0


def test_concurrent_calls_share_one_spare_and_all_run(policy: Policy) -> None:
    _with_jail(policy, _concurrent_calls_share_one_spare_and_all_run)


async def _concurrent_calls_share_one_spare_and_all_run(jail: Jail) -> None:
    await jail.run(["/bin/true"], ctx=CTX)
    await _ready_spare(jail)
    results = await asyncio.gather(*(jail.run(["/bin/echo", str(i)], ctx=CTX) for i in range(6)))
    assert [r.raw.stdout for r in results] == [f"{i}\n".encode() for i in range(6)]
    assert len({r.scope.cgroup_id for r in results}) == 6
