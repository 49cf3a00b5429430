"""Checks that the machine can confine calls, with messages that say how to fix what is missing."""

from __future__ import annotations

import functools
import os
import platform

from corral.errors import SandboxUnavailableError
from corral.sandbox._cgroups import Layout, detect_layout, ensure_parent


def _kernel_at_least(major: int, minor: int) -> bool:
    parts = platform.release().split(".")
    try:
        return (int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)) >= (major, minor)
    except (IndexError, ValueError):
        return False


def check_machine() -> Layout:
    """Uncached check (``preflight`` caches it for the life of the process)."""
    if os.geteuid() != 0:
        raise SandboxUnavailableError(
            "the sandbox needs root: it creates namespaces, cgroups and per-sandbox host uids "
            "(run as root, or talk to a node agent started with `corral serve`)"
        )
    if platform.machine() not in ("x86_64", "aarch64"):
        raise SandboxUnavailableError(f"the sandbox supports x86_64 and aarch64, not {platform.machine()}")
    if not _kernel_at_least(5, 12):
        raise SandboxUnavailableError(
            f"kernel {platform.release()} is too old: the sandbox needs 5.12 or newer (mount_setattr, "
            "idmapped mounts)"
        )
    try:
        with open("/proc/sys/user/max_user_namespaces") as f:
            if int(f.read().strip() or 0) == 0:
                raise SandboxUnavailableError("user namespaces are disabled (user.max_user_namespaces = 0)")
    except FileNotFoundError as exc:
        raise SandboxUnavailableError("this kernel has no user namespaces") from exc
    with open("/proc/filesystems") as f:
        known = {line.split()[-1] for line in f if line.strip()}
    missing = {"tmpfs", "proc", "devpts"} - known
    if missing:
        raise SandboxUnavailableError(f"the kernel lacks file systems the sandbox needs: {sorted(missing)}")
    layout = detect_layout()
    ensure_parent(layout)
    return layout


def preflight() -> Layout:
    """The cgroup layout, or SandboxUnavailableError naming what is missing."""
    return _checked()


_checked = functools.cache(check_machine)
