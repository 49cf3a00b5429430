"""Call work on one event loop is paced: a burst of calls takes turns across loop iterations, so the
loop serves its other work between them, and a lone call goes on at once. A full zygote queue makes
callers wait on the loop, in order, never blocking it."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time

from loop_ticks import Ticks

from corral.sandbox._pace import pace
from corral.sandbox._zygote import _proto
from corral.sandbox._zygote_client import Zygote


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_a_burst_of_calls_takes_turns_and_the_loop_runs_between_them() -> None:
    async def main() -> list[object]:
        order: list[object] = []

        async def step(i: int) -> None:
            await pace()
            order.append(i)
            _busy(0.0005)  # a step of call work: inspection, cgroup fds, the zygote request

        async def probe() -> None:
            while True:
                order.append("tick")
                await asyncio.sleep(0)

        p = asyncio.ensure_future(probe())
        await asyncio.sleep(0)
        await asyncio.gather(*(step(i) for i in range(400)))
        p.cancel()
        return order

    order = asyncio.run(main())
    steps = [x for x in order if x != "tick"]
    assert steps == list(range(400))  # every call ran, first come first served
    longest = run = 0
    for x in order:
        run = 0 if x == "tick" else run + 1
        longest = max(longest, run)
    assert longest <= 64  # without pacing all 400 run in one iteration, the loop served after them


def test_other_work_on_the_loop_never_starves_the_calls() -> None:
    async def main() -> int:
        loop = asyncio.get_running_loop()
        done = 0
        stop = False

        def hog() -> None:  # unpaced work that spends more than a window every iteration
            _busy(0.006)
            if not stop:
                loop.call_soon(hog)

        async def step() -> None:
            nonlocal done
            await pace()
            done += 1

        loop.call_soon(hog)
        try:
            await asyncio.wait_for(asyncio.gather(*(step() for _ in range(50))), 20)
        finally:
            stop = True
        return done

    assert asyncio.run(main()) == 50


def test_a_lone_call_does_not_wait_for_an_iteration() -> None:
    async def main() -> bool:
        went_round = False

        def mark() -> None:
            nonlocal went_round
            went_round = True

        asyncio.get_running_loop().call_soon(mark)
        await pace()
        return went_round

    assert asyncio.run(main()) is False


def test_a_full_zygote_queue_waits_on_the_loop_in_order() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    peer = subprocess.Popen(["sleep", "60"])  # the zygote's place; this test reads its socket itself
    zygote = Zygote(peer, ours, 40)
    r, w = os.pipe()
    try:

        async def main() -> list[int]:
            big = "x" * 16384  # as a call's environment can be: the socket buffer fills after some
            async with Ticks() as ticks:
                sends = [
                    asyncio.ensure_future(zygote.send_async({"n": i, "env": big}, [r])) for i in range(60)
                ]
                await asyncio.sleep(0.05)
                # More than the socket's queue holds: the rest wait, and the loop kept running meanwhile.
                assert not all(s.done() for s in sends) and ticks.count > 20
            sends[50].cancel()  # a caller cancelled while waiting: its message must never go
            got: list[int] = []
            loop = asyncio.get_running_loop()
            while len(got) < 59:
                msg, fds = await loop.run_in_executor(None, _proto.recv, theirs)
                assert msg is not None and len(fds) == 1
                for fd in fds:
                    os.close(fd)
                got.append(msg["n"])
            await asyncio.gather(*(s for i, s in enumerate(sends) if i != 50))
            return got

        got = asyncio.run(main())
        assert got == [i for i in range(60) if i != 50]
        theirs.setblocking(False)
        try:
            extra = _proto.recv(theirs)
        except BlockingIOError:
            extra = None
        assert extra is None
    finally:
        peer.kill()
        peer.wait()
        for fd in (r, w):
            os.close(fd)
        ours.close()
        theirs.close()
