"""The loop that runs synchronous callers' work, and the launcher that starts helpers, live in the
caller's network namespace: a thread that once stood in another netns does not strand later callers."""

from __future__ import annotations

import asyncio
import ctypes
import os
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

import pytest

from corral.harness._portal import Portal, portal
from corral.sandbox import thread_netns
from corral.sandbox._launcher import in_launcher

CLONE_NEWNET = 0x40000000
T = TypeVar("T")


def _in_private_netns(fn: Callable[[], T]) -> T:
    """``fn``'s result, run on a thread that first moved into a fresh network namespace of its own."""
    out: list[T] = []
    errors: list[BaseException] = []

    def body() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWNET) != 0:
            errors.append(OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET): the tests run as root"))
            return
        try:
            out.append(fn())
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=body)
    t.start()
    t.join()
    if errors:
        raise errors[0]
    return out[0]


def _netns_of(p: Portal) -> int:
    async def here() -> int:
        return thread_netns()

    return p.call(here())


async def _connect(port: int) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()
    await writer.wait_closed()


def test_each_netns_gets_its_own_portal_and_reaches_its_own_loopback() -> None:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        port = srv.getsockname()[1]
        private = _in_private_netns(lambda: (thread_netns(), portal()))
        host = portal()
        assert host is not private[1]
        assert _netns_of(host) == thread_netns() != private[0]
        assert _netns_of(private[1]) == private[0]
        host.call(_connect(port))  # the host's loopback, from the host's portal
        with pytest.raises(OSError):  # the private netns has no listener (nor a loopback up)
            private[1].call(_connect(port))
        assert portal() is host


def test_helpers_start_in_the_callers_netns() -> None:
    host = in_launcher(thread_netns)
    assert host == thread_netns()
    ns, launched = _in_private_netns(lambda: (thread_netns(), in_launcher(thread_netns)))
    assert launched == ns != host
    assert in_launcher(thread_netns) == host
    assert os.path.exists("/proc/thread-self/ns/net")
