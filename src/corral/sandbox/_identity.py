"""Host uids for sandboxes: each live sandbox holds one uid that no other sandbox has.

A lease is an ``flock`` on ``<state>/uids/<uid>.lock``: the kernel drops it when
the holder dies, so a crashed harness never strands a uid. The lock file is
removed on release (so they do not pile up); a taker checks that the file it
locked is still the one at that path, so removing never lets two holders in.
No process of a sandbox outlives it (each lives in the sandbox's pid namespaces),
so a free lease means a uid with nothing running under it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
from dataclasses import dataclass
from pathlib import Path

from corral.errors import SandboxSetupError


@dataclass
class UidLease:
    uid: int
    _fd: int
    _path: Path

    @classmethod
    def acquire(cls, state_dir: Path, start: int, size: int) -> UidLease:
        d = state_dir / "uids"
        d.mkdir(parents=True, exist_ok=True)
        offset = random.randrange(size)
        for i in range(size):
            uid = start + (offset + i) % size
            path = d / f"{uid}.lock"
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # released (and removed) between our open and our lock: not ours
                os.close(fd)
                continue
            return cls(uid, fd, path)
        raise SandboxSetupError(f"all {size} sandbox uids from {start} are in use")

    @staticmethod
    def sweep(state_dir: Path) -> int:
        """Remove lock files nobody holds (left by holders that died); returns how many."""
        removed = 0
        d = state_dir / "uids"
        if not d.is_dir():
            return 0
        for path in d.glob("*.lock"):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            with contextlib.suppress(FileNotFoundError):
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    os.unlink(path)  # still locked by us: a taker that opened it sees a stale inode
                    removed += 1
            os.close(fd)
        return removed

    def release(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)  # while still locked: a waiter then sees a different inode
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1
