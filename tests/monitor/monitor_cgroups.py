"""Real cgroups for collector tests: a call's directories in v2 (unified) and the v1 controllers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import pytest

from corral.events import TraceContext
from corral.sandbox._scope import CallScope

ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("unified", "memory", "pids", "cpu", "cpuacct")

MakeScope = Callable[..., CallScope]


def _cleanup(path: Path) -> None:
    # cgroup.kill only (v2; every test process joins the v2 group too): killing pids read from
    # cgroup.procs races with pid reuse, and pid_max is 32768 here, so it could hit an unrelated process.
    for _ in range(200):
        with contextlib.suppress(OSError):
            (path / "cgroup.kill").write_text("1")
        try:
            path.rmdir()
            return
        except OSError:
            time.sleep(0.01)


@pytest.fixture
def make_scope() -> Iterator[MakeScope]:
    """Create call cgroups ``corral-test-<uuid>/<sandbox>/<call>`` in every hierarchy; removed after."""
    top = f"corral-test-{uuid.uuid4().hex[:8]}"
    made: list[Path] = []

    def make(sandbox_id: str = "sb1", call_id: str | None = None, **ctx: object) -> CallScope:
        call_id = call_id or uuid.uuid4().hex[:12]
        paths: dict[str, Path] = {}
        for c in CONTROLLERS:
            if not (ROOT / c / "cgroup.procs").exists():
                continue
            p = ROOT / c / top / sandbox_id / call_id
            p.mkdir(parents=True, exist_ok=True)
            made.append(p)
            paths[c] = p
        tc = TraceContext(tool_call_id=call_id, **ctx)  # type: ignore[arg-type]
        return CallScope(
            sandbox_id=sandbox_id,
            ctx=tc,
            cgroup_paths=paths,
            cgroup_id=paths["unified"].stat().st_ino,
            host_uid=os.getuid(),
            start_ns=time.time_ns(),
        )

    yield make
    for p in made:  # kill through the v2 groups first: the v1 ones cannot be removed while populated
        if p.is_relative_to(ROOT / "unified"):
            with contextlib.suppress(OSError):
                (p / "cgroup.kill").write_text("1")
    for p in reversed(made):
        _cleanup(p)
    for c in CONTROLLERS:
        base = ROOT / c / top
        for d in sorted(base.glob("**/"), key=lambda x: -len(x.parts)):
            with contextlib.suppress(OSError):
                d.rmdir()


def run_in(scope: CallScope, command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``sh -c command`` inside the call's cgroups (moved there before exec, as the sandbox does)."""
    paths = [p / "cgroup.procs" for p in scope.cgroup_paths.values()]

    def enter() -> None:
        for p in paths:
            with open(p, "w") as f:
                f.write("0")

    return subprocess.run(
        ["sh", "-c", command], preexec_fn=enter, capture_output=True, text=True, timeout=timeout, check=False
    )


class _Observer(Protocol):
    async def call_finished(self, scope: CallScope, *, lingering: bool = ...) -> None: ...

    def scope_released(self, scope: CallScope) -> None: ...


def finish(observer: _Observer, scope: CallScope) -> None:
    """What the sandbox does when a call ends in ``call`` mode: finished, then released."""
    asyncio.run(observer.call_finished(scope, lingering=False))
    observer.scope_released(scope)
