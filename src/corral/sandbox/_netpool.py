"""Spare network namespaces for calls that need a fresh one each (``call`` lifetime, no egress).

A network namespace costs about 350 KiB of kernel memory, so idle sandboxes do not hold one:
each call gets its own, fresh, and drops it when it ends. Making one takes about a millisecond,
so a few are kept ready and refilled in the background; a call that finds none makes its own.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading

from corral.sandbox._zygote_client import Zygote, recv, shared_zygote


class NetnsPool:
    def __init__(self, *, low: int = 4, batch: int = 8) -> None:
        self._low = low
        self._batch = batch
        self._spares: collections.deque[int] = collections.deque()
        self._lock = threading.Lock()
        self._refilling = False
        self.made = 0
        self.missed = 0  # calls that found no spare

    def take(self) -> int | None:
        """A fresh network namespace (the caller closes the fd), or None if none is ready."""
        with self._lock:
            fd = self._spares.popleft() if self._spares else None
            if fd is None:
                self.missed += 1
            start = not self._refilling and len(self._spares) < self._low
            if start:
                self._refilling = True
        if start:
            threading.Thread(target=self._refill, name="corral-netns", daemon=True).start()
        return fd

    def _refill(self) -> None:
        try:
            zygote: Zygote = shared_zygote()
            reply = zygote.request({"op": "netns", "count": self._batch})
            with reply:
                for _ in range(self._batch):
                    msg, fds = recv(reply, timeout_s=30)
                    if not msg or not msg.get("ok") or not fds:
                        for fd in fds:
                            os.close(fd)
                        return
                    with self._lock:
                        self._spares.append(fds[0])
                        self.made += 1
        except Exception:  # no spares: calls make their own namespace, nothing is lost
            return
        finally:
            with self._lock:
                self._refilling = False

    def close(self) -> None:
        with self._lock:
            while self._spares:
                with contextlib.suppress(OSError):
                    os.close(self._spares.popleft())


_pool: tuple[int, NetnsPool] | None = None
_lock = threading.Lock()


def netns_pool() -> NetnsPool:
    global _pool
    with _lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), NetnsPool())
        return _pool[1]
