"""Counting the loop's turns while a test's work runs: proof that the loop kept serving meanwhile."""

from __future__ import annotations

import asyncio


class Ticks:
    """``async with Ticks(period) as t``: ``t.count`` is how often a coroutine sleeping ``period``
    (0: one loop iteration) woke up."""

    def __init__(self, period: float = 0.0) -> None:
        self.period = period
        self.count = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            self.count += 1

    async def __aenter__(self) -> Ticks:
        self._task = asyncio.ensure_future(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
