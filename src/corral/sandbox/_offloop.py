"""Cgroup work on worker threads, off the event loop that runs the calls.

Creating and removing a call's cgroups takes the kernel's cgroup lock (a few tenths of a
millisecond per directory, four directories a call on a hybrid v1/v2 node), and killing a call
waits for its processes to die. Done on the loop, a thousand concurrent calls held every other
call, timer and client up for seconds. One small pool per process (a new one after a fork: the
parent's threads are not in the child).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
_WORKERS = 4  # the kernel serialises cgroup creation: more threads would only queue there
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


async def off_loop(fn: Callable[[], T], undo: Callable[[T], object] | None = None) -> T:
    """``fn()`` on a worker thread. It runs to its end even when the caller is cancelled; then
    ``undo`` is applied to what it made, on the worker (the loop may be gone by then), so a
    cancelled call leaves nothing."""
    done = _pool().submit(fn)
    try:
        return await asyncio.shield(asyncio.wrap_future(done))
    except asyncio.CancelledError:
        if undo is not None:
            done.add_done_callback(lambda f: _undo(f, undo))
        raise


def _undo(done: Future[T], undo: Callable[[T], object]) -> None:
    if done.cancelled() or done.exception() is not None:
        return
    with contextlib.suppress(Exception):  # what is left is reaped with the sandbox's state
        undo(done.result())
