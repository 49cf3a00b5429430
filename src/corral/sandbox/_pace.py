"""Pacing call work on an event loop, so that a thousand calls arriving together never hold it up.

asyncio runs every ready callback of one iteration before it looks at its timers again. When a
thousand calls start (or end) at once, each step of call work that becomes ready in one iteration
runs in that iteration: at a millisecond or two of Python each, every other timer, client and
model request on the loop waited seconds. ``await pace()`` before such a step takes a turn: a call
goes on at once while this iteration's share is not used up, and otherwise waits for a later
iteration. The share adapts to what a step costs on this machine, so that an iteration's paced
work stays near ``SLICE_S`` and the loop is served between them. Work is not reduced, only spread:
throughput stays the loop's, and a lone call never waits.
"""

from __future__ import annotations

import asyncio
import collections
import time
import weakref

SLICE_S = 0.004  # paced work per loop iteration
_MAX_SHARE = 256
_START_SHARE = 8


class _Pacer:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._share = _START_SHARE  # turns per iteration
        self._left = _START_SHARE  # turns left in this iteration
        self._given = 0  # turns given since the last tick
        self._last = 0.0  # when the last tick ran
        self._ticking = False

    async def turn(self) -> None:
        if not self._waiting and self._left > 0:
            self._left -= 1
            self._given += 1
            self._schedule()
            return
        fut = self._loop.create_future()
        self._waiting.append(fut)
        self._schedule()
        await fut

    def _schedule(self) -> None:
        if not self._ticking:
            self._ticking = True
            self._last = time.perf_counter()
            self._loop.call_soon(self._tick)

    def _tick(self) -> None:
        """Once per iteration while turns are taken: size the share from what the last one cost."""
        now = time.perf_counter()
        if self._given:
            per_turn = max((now - self._last) / self._given, 1e-6)
            self._share = max(1, min(_MAX_SHARE, int(SLICE_S / per_turn)))
        self._last = now
        self._left = self._share
        self._given = 0
        while self._waiting and self._left > 0:
            fut = self._waiting.popleft()
            if fut.done():  # its caller was cancelled
                continue
            fut.set_result(None)
            self._left -= 1
            self._given += 1
        if self._given or self._waiting:
            self._loop.call_soon(self._tick)
        else:
            self._ticking = False
            self._left = self._share


_pacers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pacer] = weakref.WeakKeyDictionary()


async def pace() -> None:
    """Take a turn for the next step of call work on this loop (see the module's docstring)."""
    loop = asyncio.get_running_loop()
    pacer = _pacers.get(loop)
    if pacer is None:
        pacer = _pacers[loop] = _Pacer(loop)
    await pacer.turn()
