"""The client side of a file session (see ``_zygote/_files.py``): requests and typed errors.

Paths are as the sandbox sees them; the zygote's session process resolves them
inside the sandbox's own root as the sandbox's uid, and hands back descriptors.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from typing import Any

from corral.errors import (
    SandboxFileError,
    SandboxFileNotFoundError,
    SandboxIsADirectoryError,
    SandboxNotADirectoryError,
    SandboxPermissionError,
    SandboxSetupError,
)
from corral.sandbox._zygote import _proto
from corral.sandbox._zygote_client import recv_async

_ERRORS: dict[int, type[SandboxFileError]] = {
    errno.ENOENT: SandboxFileNotFoundError,
    errno.EISDIR: SandboxIsADirectoryError,
    errno.ENOTDIR: SandboxNotADirectoryError,
    errno.EACCES: SandboxPermissionError,
    errno.EPERM: SandboxPermissionError,
    errno.EROFS: SandboxPermissionError,
}


def file_error(code: int, text: str, path: str) -> SandboxFileError:
    cls = _ERRORS.get(code, SandboxFileError)
    if issubclass(cls, OSError):
        return cls(code, text, path)
    return cls(f"{path}: {text}")


class FileSession:
    """One process in the sandbox serving file requests, one at a time (a lock orders them)."""

    def __init__(self, sock: socket.socket, sandbox_id: str) -> None:
        self._sock = sock
        self.sandbox_id = sandbox_id
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, sock: socket.socket, sandbox_id: str) -> FileSession:
        msg, fds = await recv_async(sock)
        for fd in fds:
            os.close(fd)
        if not msg or not msg.get("ok"):
            sock.close()
            why = msg.get("error") if msg else "the session process died"
            raise SandboxSetupError(f"cannot open a file session in sandbox {sandbox_id}: {why}")
        return cls(sock, sandbox_id)

    async def _ask(self, msg: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        async with self._lock:
            _proto.send(self._sock, msg)
            reply, fds = await recv_async(self._sock)
        if reply is None:
            raise SandboxSetupError(f"the file session of sandbox {self.sandbox_id} ended")
        if not reply.get("ok"):
            for fd in fds:
                os.close(fd)
            raise file_error(
                int(reply.get("errno", errno.EIO)), str(reply.get("error")), str(msg.get("path"))
            )
        return reply, fds

    async def open_file(
        self, path: str, mode: str, *, parents: bool = False, perm: int = 0o644
    ) -> tuple[int, int]:
        """(fd, size). ``mode``: "r", "w" (truncate), "x" (must not exist) or "a"."""
        reply, fds = await self._ask(
            {"op": "open", "path": path, "mode": mode, "parents": parents, "perm": perm}
        )
        return fds[0], int(reply.get("size", 0))

    async def stat(self, path: str) -> dict[str, Any]:
        reply, _ = await self._ask({"op": "stat", "path": path})
        return reply

    async def list(self, path: str, *, recursive: bool, limit: int) -> list[dict[str, Any]]:
        reply, _ = await self._ask({"op": "list", "path": path, "recursive": recursive, "limit": limit})
        return list(reply["entries"])

    async def mkdir(self, path: str, *, parents: bool = True, perm: int = 0o755) -> None:
        await self._ask({"op": "mkdir", "path": path, "parents": parents, "perm": perm})

    async def symlink(self, path: str, target: str) -> None:
        await self._ask({"op": "symlink", "path": path, "target": target})

    async def chmod(self, path: str, perm: int) -> None:
        await self._ask({"op": "chmod", "path": path, "perm": perm})

    def close(self) -> None:
        self._sock.close()
