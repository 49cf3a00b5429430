"""Keeping leases alive while a client holds sandboxes it is not calling (one task, batched)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from corral.errors import CorralError

Send = Callable[[list[str]], Awaitable[list[str]]]  # renews the ids; returns the ones the far side lost


class Heartbeats:
    """Renews every registered lease in one request each ``min(lease_s) / 3``, on the loop that registers.

    A trainer that is busy elsewhere (a long generation, an idle episode) keeps its
    sandboxes; a trainer that dies stops renewing, and the far side reaps them after
    their lease. Ids the far side no longer holds are dropped.
    """

    def __init__(self, send: Send) -> None:
        self._send = send
        self._leases: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None

    def add(self, sandbox_id: str, lease_s: float) -> None:
        self._leases[sandbox_id] = lease_s
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._beat(), name="corral-heartbeat")
        elif self._wake is not None:
            self._wake.set()  # a shorter lease may need an earlier beat

    def discard(self, sandbox_id: str) -> None:
        self._leases.pop(sandbox_id, None)

    def __len__(self) -> int:
        return len(self._leases)

    async def _beat(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        last = loop.time()
        while self._leases:
            due = last + min(self._leases.values()) / 3  # recomputed when a shorter lease arrives
            if loop.time() < due:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), due - loop.time())
                continue
            last = loop.time()
            try:
                gone = await self._send(list(self._leases))
            except CorralError:
                continue  # the far side may be restarting; the next beat tries again
            for sid in gone:
                self._leases.pop(sid, None)

    async def aclose(self) -> None:
        self._leases.clear()
        task, self._task = self._task, None
        if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
