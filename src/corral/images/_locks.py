"""File locks across processes (flock) and work directories that a later pull can clean up.

flock locks belong to an open file description, so the kernel drops them when every holder has
exited, kill -9 included: a lock that can be taken means its owner is gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from corral.errors import ImageError

_POLL_S = 0.02
_NASCENT_MAX_AGE_S = 600.0  # a lock file is renamed into place microseconds after it is made


@contextmanager
def locked(path: Path, *, shared: bool = False, timeout_s: float, what: str) -> Iterator[int]:
    """Hold an flock on ``path`` (created if missing); give up with an ImageError after ``timeout_s``."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        _acquire(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX, timeout_s, what)
        yield fd
    finally:
        os.close(fd)  # closing the only descriptor releases the lock


def _acquire(fd: int, op: int, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fd, op | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise ImageError(
                    f"{what}: another process has held its lock for {timeout_s:.0f} s; "
                    "wait for it to finish, or stop it"
                ) from None
            time.sleep(_POLL_S)


def lock_shared(fd: int) -> None:
    """A shared lock, waiting for an exclusive holder (the kernel wakes us; no polling)."""
    fcntl.flock(fd, fcntl.LOCK_SH)


def try_lock(fd: int, *, shared: bool = False) -> bool:
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextmanager
def work_dir(tmp: Path) -> Iterator[tuple[Path, int]]:
    """A fresh directory under ``tmp`` and the fd of the lock that marks it live.

    The lock file is made and locked before the directory exists, so ``sweep`` never takes a
    live directory for a dead one. Pass the fd to child processes (``pass_fds``) so that the
    directory stays marked live for as long as any of them still writes into it.
    """
    name = f"{os.getpid()}-{secrets.token_hex(8)}"
    lock = tmp / f"{name}.lock"
    # Locked under a name ``sweep`` ignores, then renamed into place: a sweep in another process
    # that found the lock file between its creation and the flock would take it for a dead one's.
    nascent = tmp / f".{name}.lock.new"
    fd = os.open(nascent, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(nascent, lock)
    except BaseException:
        nascent.unlink(missing_ok=True)
        os.close(fd)
        raise
    d = tmp / name
    try:
        d.mkdir(mode=0o700)
        yield d, fd
    finally:
        shutil.rmtree(d, ignore_errors=True)
        lock.unlink(missing_ok=True)
        os.close(fd)


def sweep(tmp: Path) -> int:
    """Remove work directories whose owners died (a pull or rm killed part-way); return how many."""
    removed = 0
    for lock in tmp.glob("*.lock"):
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            if not try_lock(fd):
                continue
            shutil.rmtree(tmp / lock.name.removesuffix(".lock"), ignore_errors=True)
            lock.unlink(missing_ok=True)
            removed += 1
        finally:
            os.close(fd)
    for nascent in tmp.glob(".*.lock.new"):  # a process killed between creating and renaming it
        with contextlib.suppress(OSError):
            if time.time() - nascent.stat().st_mtime > _NASCENT_MAX_AGE_S:
                nascent.unlink()
    for d in tmp.iterdir():
        # A directory without its lock file was left by a sweep that was itself interrupted.
        if d.is_dir() and not (tmp / f"{d.name}.lock").exists():
            shutil.rmtree(d, ignore_errors=True)
            removed += 1
    return removed
