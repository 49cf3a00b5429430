"""A third-party sandbox backend, registered through a real ``corral.backends`` entry point.

It is what an organisation's own backend often is: Corral's local sandbox with something
added, here an audit trail of every operation the trainer performed on it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from corral import AsyncSandbox, Policy, ToolResult
from corral.events import TraceContext
from corral.harness import Command, FileEntry, StreamItem

NOT_A_FACTORY = 42


class AuditedSandbox:
    def __init__(self, policy: Policy | None = None, **kw: Any) -> None:
        self._inner = AsyncSandbox(policy, store=None, **kw)
        self.id = self._inner.id
        self.audit: list[str] = []

    async def run(
        self,
        command: Command,
        ctx: TraceContext | None = None,
        *,
        timeout: float | None = None,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ToolResult:
        self.audit.append(f"run {command!r}")
        return await self._inner.run(command, ctx, timeout=timeout, stdin=stdin, env=env)

    def stream(
        self,
        command: Command,
        ctx: TraceContext | None = None,
        *,
        timeout: float | None = None,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> AsyncIterator[StreamItem]:
        self.audit.append(f"stream {command!r}")
        return self._inner.stream(command, ctx, timeout=timeout, stdin=stdin, env=env)

    async def write_file(self, path: str, data: bytes | str, *, mode: int = 0o644) -> None:
        self.audit.append(f"write_file {path}")
        await self._inner.write_file(path, data, mode=mode)

    async def read_file(self, path: str) -> bytes:
        self.audit.append(f"read_file {path}")
        return await self._inner.read_file(path)

    async def list_files(self, path: str = ".", *, recursive: bool = False) -> list[FileEntry]:
        self.audit.append(f"list_files {path}")
        return await self._inner.list_files(path, recursive=recursive)

    async def upload(self, src: str | Path, dest: str) -> None:
        self.audit.append(f"upload {dest}")
        await self._inner.upload(src, dest)

    async def download(self, src: str, dest: str | Path) -> None:
        self.audit.append(f"download {src}")
        await self._inner.download(src, dest)

    async def close(self) -> None:
        await self._inner.close()

    async def __aenter__(self) -> Self:
        await self._inner.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
