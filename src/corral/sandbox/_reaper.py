"""Reaping the processes bubblewrap orphans.

bubblewrap's outer process can exit before one of its helpers, whose zombie then
goes to the nearest subreaper, or to pid 1. Some init systems (container and
microVM inits) never reap, so every call would leak a pid. The harness makes
itself a child subreaper and reaps zombies of sandbox uids after each call.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import glob
import os

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
PR_SET_CHILD_SUBREAPER = 36
_enabled = False


def become_subreaper() -> None:
    global _enabled
    if not _enabled:
        _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        _enabled = True


def reap_orphans(uid_lo: int, uid_hi: int) -> int:
    """Reap exited children whose uid is in [uid_lo, uid_hi): only processes of sandboxes."""
    reaped = 0
    for path in glob.glob("/proc/self/task/*/children"):
        try:
            with open(path) as f:
                pids = [int(p) for p in f.read().split()]
        except OSError:
            continue
        for pid in pids:
            try:
                st = os.stat(f"/proc/{pid}")
                with open(f"/proc/{pid}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if uid_lo <= st.st_uid < uid_hi and state == "Z":
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
                    reaped += 1
    return reaped
