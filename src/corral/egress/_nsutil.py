"""Thread-local network namespace switching and the few libc calls Python does not wrap."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from corral.errors import EgressError

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MNT_DETACH = 2
NETNS_DIR = "/run/netns"

_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise EgressError(f"{what}: {os.strerror(err)}")


def setns(fd: int) -> None:
    """Move the calling thread (only) into the network namespace ``fd`` refers to."""
    _check(_libc.setns(fd, CLONE_NEWNET), "setns")


@contextmanager
def in_netns(fd: int) -> Iterator[None]:
    """Run the block in another netns on this thread; sockets made inside stay bound to it."""
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(fd)
        try:
            yield
        finally:
            setns(back)
    finally:
        os.close(back)


def create_named_netns(name: str) -> int:
    """Create a netns pinned at /run/netns/NAME (as ``ip netns add`` does); returns an fd to it."""
    os.makedirs(NETNS_DIR, exist_ok=True)
    path = os.path.join(NETNS_DIR, name)
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        with open(path, "x"):
            pass
        _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        try:
            src = b"/proc/thread-self/ns/net"
            _check(_libc.mount(src, path.encode(), None, MS_BIND, None), f"bind-mount {path}")
            return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        finally:
            setns(back)
    except BaseException:
        remove_named_netns(name)
        raise
    finally:
        os.close(back)


def remove_named_netns(name: str) -> None:
    """Unpin a named netns; the kernel frees it once nothing holds it (asynchronously)."""
    path = os.path.join(NETNS_DIR, name)
    _libc.umount2(path.encode(), MNT_DETACH)
    with suppress(FileNotFoundError):
        os.unlink(path)


def write_sysctl(key: str, value: str) -> None:
    """Write a sysctl of the calling thread's netns (``/proc/sys/net`` resolves per thread)."""
    with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
        f.write(value)
