"""The one sandbox interface every backend offers, sync and async, and the items it hands out.

``corral.Sandbox`` / ``corral.AsyncSandbox`` (local), the node service's
``RemoteSandbox`` / ``AsyncRemoteSandbox`` and the Ray pool's sandboxes all
satisfy these protocols; ``corral.harness.conformance`` checks that they also
behave the same.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal, Protocol, Self, runtime_checkable

from pydantic import BaseModel, ConfigDict

from corral.events import TraceContext
from corral.sandbox import ToolResult

Command = str | Sequence[str]


class OutputChunk(BaseModel):
    """Output of a running call, as it was produced (within the policy's output cap)."""

    model_config = ConfigDict(frozen=True, ser_json_bytes="base64", val_json_bytes="base64")

    stream: Literal["stdout", "stderr"]
    data: bytes

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


class FileEntry(BaseModel):
    """One entry of ``list_files``: a path relative to the listed directory."""

    model_config = ConfigDict(frozen=True)

    path: str
    kind: Literal["file", "dir", "symlink", "other"]
    size: int
    mode: int
    target: str | None = None  # a symlink's target, as the sandbox sees it


StreamItem = OutputChunk | ToolResult


@runtime_checkable
class SandboxLike(Protocol):
    """The synchronous sandbox interface."""

    id: str

    def run(
        self,
        command: Command,
        ctx: TraceContext | None = None,
        *,
        timeout: float | None = None,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ToolResult: ...

    def stream(
        self,
        command: Command,
        ctx: TraceContext | None = None,
        *,
        timeout: float | None = None,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Iterator[StreamItem]: ...

    def write_file(self, path: str, data: bytes | str, *, mode: int = 0o644) -> None: ...

    def read_file(self, path: str) -> bytes: ...

    def list_files(self, path: str = ".", *, recursive: bool = False) -> list[FileEntry]: ...

    def upload(self, src: str | Path, dest: str) -> None: ...

    def download(self, src: str, dest: str | Path) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


@runtime_checkable
class AsyncSandboxLike(Protocol):
    """The asynchronous sandbox interface: the same methods, awaited."""

    id: str

    async def run(
        self,
        command: Command,
        ctx: TraceContext | None = None,
        *,
        timeout: float | None = None,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ToolResult: ...

    def stream(
        self,
        command: Command,
        ctx: TraceContext | None = None,
        *,
        timeout: float | None = None,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> AsyncIterator[StreamItem]: ...

    async def write_file(self, path: str, data: bytes | str, *, mode: int = 0o644) -> None: ...

    async def read_file(self, path: str) -> bytes: ...

    async def list_files(self, path: str = ".", *, recursive: bool = False) -> list[FileEntry]: ...

    async def upload(self, src: str | Path, dest: str) -> None: ...

    async def download(self, src: str, dest: str | Path) -> None: ...

    async def close(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...
