"""A background event loop that runs the async implementation for synchronous callers.

One per process and network namespace (restarted after a fork): the loop's threads, and the children
they start (image pulls, clients' connections), must see the network of the thread that asked, and a
thread born in another netns never leaves it. Synchronous sandboxes submit
coroutines here and block on the result, so sync and async callers share one
implementation; many threads may call at once and their calls run concurrently
on the loop.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

from corral.errors import CorralError
from corral.sandbox import per_netns

T = TypeVar("T")
_END = object()


class Portal:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="corral-portal", daemon=True)
        self._thread.start()
        self._ready.wait()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()

    def _check_thread(self) -> None:
        if threading.current_thread() is self._thread:
            raise CorralError(
                "a synchronous Corral sandbox was used from inside Corral's own event loop; use AsyncSandbox"
            )

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and return its result (exceptions propagate)."""
        self._check_thread()
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result()
        except BaseException:
            fut.cancel()
            raise

    def iterate(self, agen: AsyncIterator[T]) -> Iterator[T]:
        """Drive an async iterator on the loop, yielding its items here as they come."""
        self._check_thread()
        items: queue.SimpleQueue[Any] = queue.SimpleQueue()

        async def pump() -> None:
            try:
                async for item in agen:
                    items.put(item)
            except BaseException as exc:
                items.put(_Raise(exc))
                return
            items.put(_END)

        fut = asyncio.run_coroutine_threadsafe(pump(), self.loop)
        try:
            while True:
                item = items.get()
                if item is _END:
                    return
                if isinstance(item, _Raise):
                    raise item.exc
                yield item
        finally:
            if not fut.done():
                fut.cancel()


class _Raise:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_portals: dict[tuple[int, int], Portal] = {}  # (pid, netns) -> its portal
_lock = threading.Lock()


def portal() -> Portal:
    with _lock:
        return per_netns(_portals, Portal)
