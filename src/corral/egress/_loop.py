"""The egress event loop on its own thread: every socket (proxy, DNS, NFLOG) lives there.

Other threads reach it only through ``call`` (run a coroutine there and wait, bounded) and
``soon`` (schedule a callback), so no socket is ever touched from two threads.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from corral.errors import EgressError

T = TypeVar("T")


class LoopThread:
    def __init__(self, name: str = "corral-egress") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run ``coro`` on the loop and wait for it; a dead or stuck loop is an ``EgressError``."""
        if not self.alive:
            coro.close()
            raise EgressError("egress event loop is not running")
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except TimeoutError as exc:
            fut.cancel()
            raise EgressError("egress event loop did not answer") from exc

    def soon(self, fn: Callable[..., object], *args: object) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    def stop(self, timeout: float = 5.0) -> None:
        if self.alive:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)
