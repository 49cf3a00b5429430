"""What the sandbox tells the layers beside it about a call, and what it expects of them.

The sandbox does not import the monitor or egress layers; they plug in through
these protocols, and the harness wires them together.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from corral.events import TraceContext


@dataclass(frozen=True)
class CallScope:
    """One tool call's confinement, as collectors need to see it.

    ``cgroup_paths`` maps controller names ("unified", "memory", "pids", "cpu")
    to the call's cgroup directory in that hierarchy. ``cgroup_id`` is
    the inode of the unified directory, which is what BPF's cgroup id reports.
    """

    sandbox_id: str
    ctx: TraceContext
    cgroup_paths: Mapping[str, Path]
    cgroup_id: int
    host_uid: int
    start_ns: int


class CallObserver(Protocol):
    """A collector that follows calls.

    ``call_started`` runs before the call's first process exists (raising stops the
    call: it must not run unobserved). ``call_finished`` is awaited when the call's
    command has returned; in ``call`` mode every process of the call is dead by then,
    in ``episode`` mode some may live on (``lingering``) and keep being observed
    until ``scope_released``, which follows once the last of them is gone.
    """

    def call_started(self, scope: CallScope) -> None: ...

    async def call_finished(self, scope: CallScope, *, lingering: bool) -> None: ...

    def scope_released(self, scope: CallScope) -> None: ...


class NetworkAttachment(Protocol):
    """A sandbox's network, provided by the egress layer when the policy allows any egress."""

    @property
    def netns_path(self) -> str: ...

    @property
    def env(self) -> Mapping[str, str]: ...

    @property
    def files(self) -> Mapping[str, str]: ...

    @property
    def sandbox_ip(self) -> str | None: ...

    def begin_call(self, ctx: TraceContext) -> None: ...

    def end_call(self) -> None: ...

    def check(self) -> None: ...

    def close(self) -> None: ...
