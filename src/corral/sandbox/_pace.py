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
    """Turns are taken while this iteration's window (opened by ``_open``) is under ``SLICE_S``;
    later ones wait in order. A tick releases a share of them each iteration, sized from what a
    turn cost; those released into a window that is already spent wait again, ahead of the rest."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        # Released into a spent window: they go first at the next tick, in the order they came.
        self._bounced: collections.deque[asyncio.Future[None]] = collections.deque()
        self._share = _START_SHARE  # waiters released per iteration
        self._opened = 0.0  # when this iteration's window opened
        self._taken = 0  # turns taken in it
        self._ticking = False

    async def turn(self) -> None:
        released = False
        while True:
            if not self._ticking:
                self._ticking = True
                self._open()
                self._loop.call_soon(self._tick)
            first = released or not (self._waiting or self._bounced)
            # The first turn of a window always goes: other work on the loop can never starve calls.
            if first and (not self._taken or time.perf_counter() - self._opened < SLICE_S):
                self._taken += 1
                return
            fut = self._loop.create_future()
            (self._bounced if released else self._waiting).append(fut)
            await fut
            released = True

    def _tick(self) -> None:
        """Once per iteration while calls wait, after the calls it released last time have run:
        size the share from what their turns cost, then release the next share, oldest first."""
        now = time.perf_counter()
        if self._taken:
            per_turn = max((now - self._opened) / self._taken, 1e-6)
            self._share = max(1, min(_MAX_SHARE, int(SLICE_S / per_turn)))
        if not (self._waiting or self._bounced):
            self._ticking = False
            return
        # Queued before the releases, so the next window opens before the released calls run;
        # the next tick after them, so it sees every one of them take its turn or bounce.
        self._loop.call_soon(self._open)
        released = 0
        for queue in (self._bounced, self._waiting):
            while queue and released < self._share:
                fut = queue.popleft()
                if not fut.done():  # its caller was cancelled
                    fut.set_result(None)
                    released += 1
        self._loop.call_soon(self._tick)

    def _open(self) -> None:
        self._opened, self._taken = time.perf_counter(), 0


_pacers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pacer] = weakref.WeakKeyDictionary()


async def pace() -> None:
    """Take a turn for the next step of call work on this loop (see the module's docstring)."""
    loop = asyncio.get_running_loop()
    pacer = _pacers.get(loop)
    if pacer is None:
        pacer = _pacers[loop] = _Pacer(loop)
    await pacer.turn()
