"""Checks that the machine can confine calls, with messages that say how to fix what is missing."""

from __future__ import annotations

import functools
import os
import shutil

from corral.errors import SandboxUnavailableError
from corral.sandbox._cgroups import Layout, detect_layout, ensure_parent


def check_machine() -> tuple[str, Layout]:
    """Uncached check (``preflight`` caches it for the life of the process)."""
    if os.geteuid() != 0:
        raise SandboxUnavailableError(
            "the sandbox needs root: it creates cgroups, tmpfs mounts and per-sandbox host uids "
            "(run as root, or talk to a node agent started with `corral serve`)"
        )
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailableError("bubblewrap (bwrap) is not installed: apt-get install bubblewrap")
    for tool in ("setpriv", "nsenter"):  # the launch chain drops the uid and joins the netns with them
        if shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
            raise SandboxUnavailableError(f"{tool} is not installed: apt-get install util-linux")
    try:
        with open("/proc/sys/user/max_user_namespaces") as f:
            if int(f.read().strip() or 0) == 0:
                raise SandboxUnavailableError("user namespaces are disabled (user.max_user_namespaces = 0)")
    except FileNotFoundError as exc:
        raise SandboxUnavailableError("this kernel has no user namespaces") from exc
    layout = detect_layout()
    ensure_parent(layout)
    return bwrap, layout


def preflight() -> tuple[str, Layout]:
    """Path of bwrap and the cgroup layout, or SandboxUnavailableError naming what is missing."""
    return _checked()


_checked = functools.cache(check_machine)
