"""Sharing one run of a blocking step among every coroutine that needs it.

Several calls ending together each need "everything up to now has been
committed" (the store) or "every exec up to now has been read" (the tracer).
One run of the step that started after a caller arrived satisfies that caller,
so concurrent callers share runs instead of queueing one each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from corral.sandbox._pace import pace


class Coalescer:
    """``await c()`` returns once a run of ``fn`` that began after the await began has finished."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self._fn = fn
        self._running: asyncio.Task[None] | None = None
        self._next: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._running, self._next = loop, None, None
        if self._next is None:
            self._next = loop.create_future()
        fut = self._next
        if self._running is None:
            self._start()
        await asyncio.shield(fut)
        await pace()  # every caller of a run wakes at once: their next steps take turns

    def _start(self) -> None:
        assert self._loop is not None
        fut, self._next = self._next, None
        if fut is None:
            self._running = None
            return

        async def run() -> None:
            try:
                await asyncio.to_thread(self._fn)
            except BaseException as exc:
                if not fut.done():
                    fut.set_exception(exc)
            else:
                if not fut.done():
                    fut.set_result(None)
            finally:
                self._start()  # callers who came while this ran need a run of their own

        self._running = self._loop.create_task(run())
