"""Host-side mounts that back a sandbox: size-capped tmpfs for the workspace and scratch space.

They are mounted in the host mount namespace under the sandbox's state directory
so that bubblewrap can bind them in; flags such as ``noexec`` stay locked on the
bind inside the sandbox's user namespace.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

from corral.errors import SandboxSetupError

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MNT_DETACH = 2


def mount_tmpfs(target: Path, *, size_bytes: int, uid: int, gid: int, noexec: bool) -> None:
    target.mkdir(parents=True, exist_ok=True)
    flags = MS_NOSUID | MS_NODEV | (MS_NOEXEC if noexec else 0)
    opts = f"size={size_bytes},mode=0700,uid={uid},gid={gid}".encode()
    if _libc.mount(b"tmpfs", str(target).encode(), b"tmpfs", flags, opts) != 0:
        err = ctypes.get_errno()
        raise SandboxSetupError(f"cannot mount tmpfs at {target}: {os.strerror(err)}")


def bind_mount(source: Path, target: Path, *, noexec: bool) -> None:
    """Bind ``source`` at ``target`` (nosuid, nodev, and noexec if asked) in the host namespace."""
    target.mkdir(parents=True, exist_ok=True)
    if _libc.mount(str(source).encode(), str(target).encode(), None, MS_BIND, None) != 0:
        err = ctypes.get_errno()
        raise SandboxSetupError(f"cannot bind {source} at {target}: {os.strerror(err)}")
    flags = MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | (MS_NOEXEC if noexec else 0)
    if _libc.mount(None, str(target).encode(), None, flags, None) != 0:
        err = ctypes.get_errno()
        unmount(target)
        raise SandboxSetupError(f"cannot remount {target}: {os.strerror(err)}")


def unmount(target: Path) -> None:
    if _libc.umount2(str(target).encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (22, 2):  # EINVAL: not a mount point; ENOENT: gone
            raise SandboxSetupError(f"cannot unmount {target}: {os.strerror(err)}")


def mounts_under(prefix: Path) -> list[Path]:
    """Mount points at or below ``prefix`` (deepest first), from /proc/self/mountinfo."""
    pre = str(prefix)
    found: list[Path] = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == pre or mp.startswith(pre + "/"):
                found.append(Path(mp))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)
