"""Starting helper processes that must die with this process, from a thread that lives as long as it.

A parent-death signal fires when the *thread* that forked the child exits, not the process. Helpers
(the zygote, the exec tracer) ask for one so that nothing of Corral outlives a crashed trainer, so
they are started from this one long-lived thread: started from a worker thread that later ends,
they would be killed with it.

There is one launcher per network namespace a caller runs in: a process may move a thread into another
netns (tests do, to stand in for a host), and a child inherits the netns of the thread that started it.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")
V = TypeVar("V")

_Jobs = queue.SimpleQueue[tuple[Callable[[], object], Future[object]]]
_launchers: dict[tuple[int, int], _Jobs] = {}  # (pid, netns) -> the launcher's queue
_lock = threading.Lock()


def thread_netns() -> int:
    """The network namespace of the calling thread (its inode), which threads and children it starts share."""
    try:
        return os.stat("/proc/thread-self/ns/net").st_ino
    except OSError:  # no procfs: one namespace as far as we can tell
        return 0


def per_netns(table: dict[tuple[int, int], V], make: Callable[[], V]) -> V:
    """The entry of ``table`` for this process and the calling thread's netns, made on first use
    (the caller holds its lock). A forked child starts over: the parent's threads are not in it."""
    key = (os.getpid(), thread_netns())
    value = table.get(key)
    if value is None:
        if any(pid != key[0] for pid, _ in table):
            table.clear()
        value = table[key] = make()
    return value


def _start_launcher() -> _Jobs:
    jobs: _Jobs = queue.SimpleQueue()
    threading.Thread(target=_serve, args=(jobs,), name="corral-launcher", daemon=True).start()
    return jobs


def _serve(jobs: _Jobs) -> None:
    while True:
        fn, fut = jobs.get()
        try:
            fut.set_result(fn())
        except BaseException as exc:
            fut.set_exception(exc)


def in_launcher(fn: Callable[[], T]) -> T:
    """Run ``fn`` (which starts a child process) on the launcher thread and return its result."""
    with _lock:
        jobs = per_netns(_launchers, _start_launcher)
    fut: Future[object] = Future()
    jobs.put((fn, fut))
    return fut.result()  # type: ignore[return-value]
