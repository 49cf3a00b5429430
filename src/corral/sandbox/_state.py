"""A sandbox's host-side state directory, and reaping what crashed harnesses left behind.

``<root>/sandboxes/<id>/lock`` is flocked by the owning process for the sandbox's
life. A directory whose lock can be taken belongs to a dead owner: its cgroups
and processes are removed before anything new is created. (A sandbox's mounts
live only in its own mount namespace, which the kernel frees with its owner.)
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from pathlib import Path

from corral.sandbox._cgroups import PARENT, Layout, remove_sandbox_dirs
from corral.sandbox._identity import UidLease

DEFAULT_STATE_ROOT = Path(os.environ.get("CORRAL_STATE_DIR", "/run/corral"))


def lock_state_dir(d: Path) -> int:
    d.mkdir(parents=True, mode=0o700)
    fd = os.open(d / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def remove_state(d: Path, layout: Layout, sandbox_id: str) -> None:
    """Kill and delete everything of one sandbox; safe to call twice."""
    remove_sandbox_dirs(layout, sandbox_id)
    shutil.rmtree(d, ignore_errors=True)


def _owner_alive(d: Path) -> bool | None:
    """True if the sandbox's owner holds its lock, False if dead, None while it is being created."""
    try:
        fd = os.open(d / "lock", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        try:
            return None if time.time() - d.stat().st_mtime < 60 else False
        except FileNotFoundError:
            return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def reap_stale(root: Path, layout: Layout) -> list[str]:
    """Clean up sandboxes whose owner died, and cgroups no live sandbox owns; returns their ids."""
    reaped: list[str] = []
    UidLease.sweep(root)
    base = root / "sandboxes"
    live: set[str] = set()
    if base.is_dir():
        for d in base.iterdir():
            alive = _owner_alive(d)
            if alive is False:
                remove_state(d, layout, d.name)
                reaped.append(d.name)
            else:
                live.add(d.name)
    # Cgroups of sandboxes whose state dir is gone too (another state root's, or a half-removed one):
    # only those whose lock is gone everywhere we know of, and only ours (named sb-...).
    for hier in set(layout.dirs.values()):
        parent = hier / PARENT
        if not parent.is_dir():
            continue
        for cg in parent.iterdir():
            if (
                cg.is_dir()
                and cg.name.startswith("sb-")
                and cg.name not in live
                and not (base / cg.name).exists()
            ) and _cgroup_is_stale(cg):
                remove_sandbox_dirs(layout, cg.name)
                reaped.append(cg.name)
    return sorted(set(reaped))


def _cgroup_is_stale(cg: Path) -> bool:
    """An orphan cgroup tree older than a minute (a fresh one may belong to a sandbox being created)."""
    try:
        return time.time() - cg.stat().st_mtime > 60
    except FileNotFoundError:
        return False
