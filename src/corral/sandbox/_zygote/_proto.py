"""Messages between the harness and the zygote: one JSON object per SOCK_SEQPACKET datagram, plus fds.

A message too large for one datagram travels in a sealed memfd whose descriptor
is sent first, with the datagram saying so. Shared by both sides; standard
library only.
"""

from __future__ import annotations

import array
import json
import os
import socket
from typing import Any

MAX_INLINE = 48 * 1024
MAX_FDS = 250
_LARGE = b"\x00memfd"


def send(
    sock: socket.socket, msg: dict[str, Any], fds: list[int] | tuple[int, ...] = (), flags: int = 0
) -> None:
    """One message; ``flags`` go to sendmsg (``MSG_DONTWAIT``: BlockingIOError when the queue is full)."""
    data = json.dumps(msg, separators=(",", ":")).encode()
    carried: list[int] = list(fds)
    memfd = -1
    if len(data) > MAX_INLINE:
        memfd = os.memfd_create("corral-msg", os.MFD_CLOEXEC)
        view = memoryview(data)
        while view:
            view = view[os.write(memfd, view) :]
        os.lseek(memfd, 0, os.SEEK_SET)
        carried.insert(0, memfd)
        data = _LARGE
    if len(carried) > MAX_FDS:
        raise ValueError(f"{len(carried)} descriptors in one message (at most {MAX_FDS})")
    try:
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", carried))] if carried else []
        sock.sendmsg([data], anc, flags)
    finally:
        if memfd >= 0:
            os.close(memfd)


def recv(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """The next message and its fds (the caller owns them); ``(None, [])`` at end of stream."""
    fds = array.array("i")
    data, anc, flags, _ = sock.recvmsg(
        MAX_INLINE + 1024, socket.CMSG_LEN(MAX_FDS * fds.itemsize), socket.MSG_CMSG_CLOEXEC
    )
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
    got = list(fds)
    if flags & (socket.MSG_CTRUNC | socket.MSG_TRUNC):
        for fd in got:
            os.close(fd)
        raise ValueError("message truncated")
    if not data and not got:
        return None, []
    if data == _LARGE:
        memfd = got.pop(0)
        try:
            chunks = []
            while True:
                chunk = os.read(memfd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(memfd)
        data = b"".join(chunks)
    return json.loads(data), got
