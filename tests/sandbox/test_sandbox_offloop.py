"""Cgroup work runs off the event loop when many calls are in flight: the loop keeps serving while
it runs, and a caller cancelled meanwhile still gets what was made undone, so a cancelled call leaves
no cgroup behind. With few calls it stays inline (a thread hop would cost more)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import pytest
from loop_ticks import Ticks

from corral.sandbox._offloop import call_in_flight, off_loop


def test_the_loop_keeps_running_while_the_work_blocks() -> None:
    async def main() -> tuple[str, int]:
        async with Ticks(0.005) as ticks:
            made = await off_loop(lambda: (time.sleep(0.3), threading.current_thread().name)[1], offload=True)
        return made, ticks.count

    name, ticks = asyncio.run(main())
    assert name.startswith("corral-cgroup") and ticks >= 20


def test_a_cancelled_caller_gets_what_was_made_undone() -> None:
    undone = threading.Event()
    seen: list[str] = []

    async def main() -> None:
        task = asyncio.ensure_future(
            off_loop(
                lambda: (time.sleep(0.2), "cgroup")[1],
                undo=lambda v: (seen.append(v), undone.set()),
                offload=True,
            )
        )
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert undone.wait(5) and seen == ["cgroup"]


def test_errors_reach_the_caller_and_nothing_is_undone() -> None:
    def fail() -> str:
        raise OSError("cannot create cgroup")

    with pytest.raises(OSError, match="cannot create cgroup"):
        asyncio.run(off_loop(fail, undo=lambda v: pytest.fail("undo of a failed step"), offload=True))


def test_with_few_calls_in_flight_the_work_stays_inline_and_with_many_it_moves() -> None:
    async def where() -> str:
        return await off_loop(lambda: threading.current_thread().name)

    assert asyncio.run(where()) == threading.current_thread().name  # one call: no thread hop
    with contextlib.ExitStack() as calls:
        for _ in range(8):
            calls.enter_context(call_in_flight())
        assert asyncio.run(where()).startswith("corral-cgroup")
    assert asyncio.run(where()) == threading.current_thread().name
