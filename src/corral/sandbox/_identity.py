"""Host uids for sandboxes: each live sandbox holds one uid that no other sandbox has.

A lease is an ``flock`` on ``<state>/uids/<uid>.lock``: the kernel drops it when
the holder dies, so a crashed harness never strands a uid.
"""

from __future__ import annotations

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

    @classmethod
    def acquire(cls, state_dir: Path, start: int, size: int) -> UidLease:
        d = state_dir / "uids"
        d.mkdir(parents=True, exist_ok=True)
        offset = random.randrange(size)
        for i in range(size):
            uid = start + (offset + i) % size
            fd = os.open(d / f"{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            if _uid_has_processes(uid):
                # A process of a dead harness's sandbox still runs under this uid: skip it.
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
                continue
            return cls(uid, fd)
        raise SandboxSetupError(f"all {size} sandbox uids from {start} are in use")

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1


def _uid_has_processes(uid: int) -> bool:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    return True
            except OSError:
                continue
    return False
