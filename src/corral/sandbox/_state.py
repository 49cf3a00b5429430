"""A sandbox's host-side state directory, and reaping what crashed harnesses left behind.

``<root>/sandboxes/<id>/lock`` is flocked by the owning process for the sandbox's
life. A directory whose lock can be taken belongs to a dead owner: its cgroups,
processes and mounts are removed before anything new is created.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from pathlib import Path

from corral.errors import SandboxSetupError
from corral.sandbox._cgroups import Layout, remove_sandbox_dirs
from corral.sandbox._mounts import mounts_under, unmount

DEFAULT_STATE_ROOT = Path(os.environ.get("CORRAL_STATE_DIR", "/run/corral"))


def lock_state_dir(d: Path) -> int:
    d.mkdir(parents=True, mode=0o711)
    os.chmod(d, 0o711)  # the sandbox uid must traverse it to reach its bind sources
    fd = os.open(d / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def remove_state(d: Path, layout: Layout, sandbox_id: str) -> None:
    """Kill, unmount and delete everything of one sandbox; safe to call twice."""
    remove_sandbox_dirs(layout, sandbox_id)
    for mp in mounts_under(d):
        unmount(mp)
    left = mounts_under(d)
    if left:  # never delete through a mount: it could be a user's workspace directory
        raise SandboxSetupError(f"mounts still present under {d}: {left}")
    shutil.rmtree(d, ignore_errors=True)


def reap_stale(root: Path, layout: Layout) -> list[str]:
    """Clean up sandboxes whose owner died; returns their ids."""
    reaped: list[str] = []
    base = root / "sandboxes"
    if not base.is_dir():
        return reaped
    for d in base.iterdir():
        lock = d / "lock"
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            fd = -1
            try:
                if time.time() - d.stat().st_mtime < 60:
                    continue  # being created right now: its lock is not there yet
            except FileNotFoundError:
                continue
        if fd >= 0:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue  # alive
        remove_state(d, layout, d.name)
        if fd >= 0:
            os.close(fd)
        reaped.append(d.name)
    return reaped
