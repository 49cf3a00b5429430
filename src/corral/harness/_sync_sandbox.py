"""The synchronous face of any async sandbox, and ``corral.Sandbox`` (the local one).

Every method runs the async implementation on the process's portal loop, so
sync and async users get exactly the same behaviour; threads may call at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from corral.events import EventStore, TraceContext
from corral.harness._async_sandbox import AsyncSandbox
from corral.harness._harness import DEFAULT_STORE, EventSink, Harness, StoreArg
from corral.harness._interface import AsyncSandboxLike, Command, FileEntry, StreamItem
from corral.harness._portal import Portal, portal
from corral.policy import Policy
from corral.sandbox import ImageView, ToolResult


class SyncSandbox:
    """Wraps an ``AsyncSandboxLike``; the wrapped sandbox must already be started (or start lazily)."""

    def __init__(self, inner: AsyncSandboxLike, *, loop_portal: Portal | None = None) -> None:
        self._inner = inner
        self._portal = loop_portal or portal()
        self.id = inner.id

    @property
    def inner(self) -> AsyncSandboxLike:
        return self._inner

    def run(
        self,
        command: Command,
        ctx: TraceContext | None = None,
        *,
        timeout: float | None = None,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ToolResult:
        return self._portal.call(self._inner.run(command, ctx, timeout=timeout, stdin=stdin, env=env))

    def stream(
        self,
        command: Command,
        ctx: TraceContext | None = None,
        *,
        timeout: float | None = None,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Iterator[StreamItem]:
        return self._portal.iterate(self._inner.stream(command, ctx, timeout=timeout, stdin=stdin, env=env))

    def write_file(self, path: str, data: bytes | str, *, mode: int = 0o644) -> None:
        self._portal.call(self._inner.write_file(path, data, mode=mode))

    def read_file(self, path: str) -> bytes:
        return self._portal.call(self._inner.read_file(path))

    def list_files(self, path: str = ".", *, recursive: bool = False) -> list[FileEntry]:
        return self._portal.call(self._inner.list_files(path, recursive=recursive))

    def upload(self, src: str | Path, dest: str) -> None:
        self._portal.call(self._inner.upload(src, dest))

    def download(self, src: str, dest: str | Path) -> None:
        self._portal.call(self._inner.download(src, dest))

    def close(self) -> None:
        self._portal.call(self._inner.close())

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Sandbox(SyncSandbox):
    """A sandbox for one episode: ``with Sandbox(policy) as sb: sb.run("pytest -q", ctx)``.

    The same arguments as ``AsyncSandbox``; it is built when constructed, so a
    machine or policy that cannot confine calls fails here, before any call.
    """

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        image: str | ImageView | None = None,
        workspace: str | os.PathLike[str] | None = None,
        sandbox_id: str | None = None,
        store: StoreArg = DEFAULT_STORE,
        sinks: Sequence[EventSink] = (),
        host: str | None = None,
        harness: Harness | None = None,
    ) -> None:
        inner = AsyncSandbox(
            policy,
            image=image,
            workspace=workspace,
            sandbox_id=sandbox_id,
            store=store,
            sinks=sinks,
            host=host,
            harness=harness,
        )
        super().__init__(inner)
        self._local = inner
        self._portal.call(inner.start())
        self.harness: Harness = inner.harness  # type: ignore[assignment]
        self.policy = inner.policy

    @property
    def workspace(self) -> str:
        return self._local.workspace

    @property
    def uid(self) -> int:
        return self._local.uid

    @property
    def sandbox_ip(self) -> str | None:
        return self._local.sandbox_ip

    @property
    def store(self) -> EventStore | None:
        return self.harness.store
