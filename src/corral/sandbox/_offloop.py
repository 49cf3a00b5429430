"""Cgroup work on worker threads, off the event loop that runs the calls.

Creating and removing a call's cgroups takes the kernel's cgroup lock (a few tenths of a
millisecond per directory, four directories a call on a hybrid v1/v2 node), and killing a call
waits for its processes to die. Done on the loop, a thousand concurrent calls held every other
call, timer and client up for seconds. With only a few calls in flight the work runs inline: a
hop to a worker and back costs more than it (about 2 ms of a warm call on a 2-core node). One small
pool per process (a new one after a fork: the parent's threads are not in the child).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from corral.sandbox._pace import pace

T = TypeVar("T")
_WORKERS = 4  # the kernel serialises cgroup creation: more threads would only queue there
_INLINE_MAX = 4  # calls in flight up to which cgroup work stays on the loop
_in_flight = 0  # calls running in this process (all loops; a heuristic, so no lock)
_pools: dict[int, ThreadPoolExecutor] = {}
_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    pid = os.getpid()
    with _lock:
        pool = _pools.get(pid)
        if pool is None:
            _pools.clear()  # a forked child's copy of the parent's pool has no threads
            pool = _pools[pid] = ThreadPoolExecutor(_WORKERS, thread_name_prefix="corral-cgroup")
        return pool


@contextlib.contextmanager
def call_in_flight() -> Iterator[None]:
    """Count a call as running, for ``off_loop``'s choice."""
    global _in_flight
    _in_flight += 1
    try:
        yield
    finally:
        _in_flight -= 1


def busy(n: int | None = None) -> bool:
    """More calls in flight (or ``n`` items of work) than inline work would serve well."""
    return (_in_flight if n is None else n) > _INLINE_MAX


async def off_loop(
    fn: Callable[[], T], undo: Callable[[T], object] | None = None, *, offload: bool | None = None
) -> T:
    """``fn()``, on a worker thread when the process is busy (``offload``: decide here). It runs to
    its end even when the caller is cancelled; then ``undo`` is applied to what it made, on the
    worker (the loop may be gone by then), so a cancelled call leaves nothing."""
    if not (busy() if offload is None else offload):
        return fn()
    done = _pool().submit(fn)
    try:
        result = await asyncio.shield(asyncio.wrap_future(done))
        await pace()  # results of many callers arrive together: their next steps take turns
        return result
    except asyncio.CancelledError:
        if undo is not None:
            done.add_done_callback(lambda f: _undo(f, undo))
        raise


def _undo(done: Future[T], undo: Callable[[T], object]) -> None:
    if done.cancelled() or done.exception() is not None:
        return
    with contextlib.suppress(Exception):  # what is left is reaped with the sandbox's state
        undo(done.result())


class Background:
    """Upkeep tasks no caller waits for (removing emptied cgroups, dropping an idle spare), kept so
    that a close can wait for those of its loop."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        here = [t for t in self._tasks if t.get_loop() is asyncio.get_running_loop()]
        await asyncio.gather(*here, return_exceptions=True)
