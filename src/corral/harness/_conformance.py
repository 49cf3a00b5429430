"""The conformance suite every sandbox backend runs (local, node service, Ray pool, third parties).

Every check runs in a fresh sandbox, on both faces of a backend: ``async`` awaits
an ``AsyncSandboxLike`` on a loop of its own; ``sync`` drives a ``SandboxLike``
from threads (so concurrency and streaming are checked through the sync methods
themselves). ``run_conformance``/``arun_conformance`` return one result per
check; ``corral.harness.conformance`` turns the same checks into pytest tests,
with a backend's known gaps as strict expected failures.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
import traceback
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from corral.events import TraceContext
from corral.harness._conformance_checks import CHECKS, Check, CheckEnv, ConformanceFailure, Variant
from corral.harness._interface import AsyncSandboxLike, Command, FileEntry, SandboxLike, StreamItem
from corral.sandbox import ToolResult

T = TypeVar("T")
SyncFactory = Callable[[], SandboxLike]
AsyncFactory = Callable[[], AsyncSandboxLike]


async def _in_thread(fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    """``fn`` in a thread of its own (no shared pool: concurrent sync calls must not queue for one)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def settle(value: Any, exc: BaseException | None) -> None:
        if fut.done():
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value)

    def work() -> None:
        try:
            value = fn(*args, **kw)
        except BaseException as exc:
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, value, None)

    threading.Thread(target=work, name="corral-conformance", daemon=True).start()
    return await fut


class _SyncDriven:
    """An ``AsyncSandboxLike`` whose every method calls the wrapped sync sandbox from a thread."""

    def __init__(self, sb: SandboxLike) -> None:
        self.sb = sb
        self.id = sb.id

    async def run(
        self,
        command: Command,
        ctx: TraceContext | None = None,
        *,
        timeout: float | None = None,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ToolResult:
        return await _in_thread(self.sb.run, command, ctx, timeout=timeout, stdin=stdin, env=env)

    async def stream(
        self,
        command: Command,
        ctx: TraceContext | None = None,
        *,
        timeout: float | None = None,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> AsyncIterator[StreamItem]:
        # Pulled one item at a time, so the sync iterator is idle (closable) whenever this is.
        it: Iterator[StreamItem] = self.sb.stream(command, ctx, timeout=timeout, stdin=stdin, env=env)
        end = object()
        try:
            while (item := await _in_thread(next, it, end)) is not end:
                yield item
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                await _in_thread(close)

    async def write_file(self, path: str, data: bytes | str, *, mode: int = 0o644) -> None:
        await _in_thread(self.sb.write_file, path, data, mode=mode)

    async def read_file(self, path: str) -> bytes:
        return await _in_thread(self.sb.read_file, path)

    async def list_files(self, path: str = ".", *, recursive: bool = False) -> list[FileEntry]:
        return await _in_thread(self.sb.list_files, path, recursive=recursive)

    async def upload(self, src: str | Path, dest: str) -> None:
        await _in_thread(self.sb.upload, src, dest)

    async def download(self, src: str, dest: str | Path) -> None:
        await _in_thread(self.sb.download, src, dest)

    async def close(self) -> None:
        await _in_thread(self.sb.close)

    async def __aenter__(self) -> Self:
        await _in_thread(self.sb.__enter__)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await _in_thread(self.sb.__exit__, exc_type, exc, tb)


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    known_gap: str | None  # the backend's stated reason, when it declared this gap
    error: str | None
    variant: Variant = "sync"


async def _run_check(check: Check, make: Callable[[], Any], variant: Variant, tmp: Path) -> None:
    env = CheckEnv(tmp=tmp, variant=variant)
    sb: AsyncSandboxLike = await _in_thread(make) if variant == "sync" else make()
    async with asyncio.timeout(check.timeout_s), sb:
        await check.fn(sb, env)


def run_check(check: Check, factory: SyncFactory | AsyncFactory, variant: Variant, tmp: Path) -> None:
    """Run one check in a fresh sandbox from ``factory`` (raises ConformanceFailure when it fails)."""
    if variant == "sync":
        sync_factory: Any = factory

        def make() -> _SyncDriven:
            return _SyncDriven(sync_factory())

        asyncio.run(_run_check(check, make, variant, tmp))
    else:
        asyncio.run(_run_check(check, factory, variant, tmp))


def _check_gaps(gaps: Mapping[str, str]) -> dict[str, str]:
    unknown = set(gaps) - {c.name for c in CHECKS}
    if unknown:
        raise ValueError(f"known_gaps names checks that do not exist: {sorted(unknown)}")
    return dict(gaps)


def _suite(
    factory: SyncFactory | AsyncFactory, variant: Variant, known_gaps: Mapping[str, str] | None
) -> list[CheckResult]:
    gaps = _check_gaps(known_gaps or {})
    results: list[CheckResult] = []
    for check in CHECKS:
        with tempfile.TemporaryDirectory(prefix=f"corral-conf-{check.name}-") as tmp:
            try:
                run_check(check, factory, variant, Path(tmp))
            except ConformanceFailure as exc:
                results.append(CheckResult(check.name, False, gaps.get(check.name), str(exc), variant))
            except Exception as exc:  # a backend error is a failed check, reported with where it came from
                err = "".join(traceback.format_exception_only(exc)).strip()
                results.append(CheckResult(check.name, False, gaps.get(check.name), err, variant))
            else:
                results.append(CheckResult(check.name, True, gaps.get(check.name), None, variant))
    return results


def run_conformance(
    factory: SyncFactory, *, known_gaps: Mapping[str, str] | None = None
) -> list[CheckResult]:
    """Every check, each in a fresh sandbox from ``factory`` (sync sandboxes); gaps run and are reported."""
    return _suite(factory, "sync", known_gaps)


def arun_conformance(
    factory: AsyncFactory, *, known_gaps: Mapping[str, str] | None = None
) -> list[CheckResult]:
    """``run_conformance`` for async sandboxes: ``factory`` returns an ``AsyncSandboxLike`` not yet started.

    Each check runs on an event loop of its own (call this from synchronous code).
    """
    return _suite(factory, "async", known_gaps)
