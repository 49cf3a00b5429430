"""Starting helper processes that must die with this process, from a thread that lives as long as it.

A parent-death signal fires when the *thread* that forked the child exits, not the process. Helpers
(the zygote, the exec tracer) ask for one so that nothing of Corral outlives a crashed trainer, so
they are started from this one long-lived thread: started from a worker thread that later ends,
they would be killed with it.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")

_jobs: queue.SimpleQueue[tuple[Callable[[], object], Future[object]]] | None = None
_owner_pid = -1
_lock = threading.Lock()


def _serve(jobs: queue.SimpleQueue[tuple[Callable[[], object], Future[object]]]) -> None:
    while True:
        fn, fut = jobs.get()
        try:
            fut.set_result(fn())
        except BaseException as exc:
            fut.set_exception(exc)


def in_launcher(fn: Callable[[], T]) -> T:
    """Run ``fn`` (which starts a child process) on the launcher thread and return its result."""
    global _jobs, _owner_pid
    with _lock:
        if _jobs is None or _owner_pid != os.getpid():  # after a fork the thread is gone: a new one
            _jobs = queue.SimpleQueue()
            _owner_pid = os.getpid()
            threading.Thread(target=_serve, args=(_jobs,), name="corral-launcher", daemon=True).start()
        jobs = _jobs
    fut: Future[object] = Future()
    jobs.put((fn, fut))
    return fut.result()  # type: ignore[return-value]
