"""A prestarted first process for a sandbox's next call, so that call skips most of its setup.

Most of a warm call's cost is making its cgroup and entering the sandbox: the zygote's fork,
joining the cgroups and namespaces, mounting the call's /proc and /tmp and loading seccomp. A
spare is that process, made as soon as a call's command has exited and set up that far, waiting on
its reply socket for the next call's argv, env, cwd and stdio; it becomes the sandbox's uid, with
no capabilities, only when they come (``_zygote/_call.py``). Nothing of
a previous call is in it (its own fresh cgroup, pid namespace and mount copy), it can run only
what the host sends on a socket no sandboxed process holds, and it is killed with its cgroup when
the sandbox closes or it has waited ``SPARE_IDLE_S`` (an idle sandbox holds no process).

One slot per sandbox: concurrent calls beyond the first take the ordinary path. A spare that
cannot be made, or that died waiting, turns spares off for that sandbox; calls go on unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from corral.errors import SandboxSetupError
from corral.sandbox._cgroups import CallCgroup
from corral.sandbox._offloop import Background, off_loop
from corral.sandbox._zygote import _proto
from corral.sandbox._zygote_client import recv_async

SPARE_IDLE_S = 10.0
READY_TIMEOUT_S = 10.0
# Each spare holds some 1.4 MiB (the pages its setup copied from the zygote), so a process keeps at
# most this many; calls of the sandboxes beyond it take the ordinary path.
SPARES_MAX = 256


class _Budget:
    """Spares held or being made in this process, across every loop and thread."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._lock = threading.Lock()

    def acquire(self) -> bool:
        with self._lock:
            if self.held >= self.limit:
                return False
            self.held += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.held -= 1


budget = _Budget(SPARES_MAX)


@dataclass
class Spare:
    """A set-up call process waiting for its command; owns its cgroup and reply socket."""

    cgroup: CallCgroup
    cgroup_ino: int
    reply: socket.socket
    _dead: bool = field(default=False, init=False)

    def alive(self) -> bool:
        """Read what the zygote and the process have said so far (its pid, that it is ready):
        an exit, a setup error, a closed channel or an empty cgroup means it cannot run a call."""
        self.reply.setblocking(False)
        while not self._dead:
            try:
                msg, fds = _proto.recv(self.reply)
            except BlockingIOError:
                break
            except (OSError, ValueError):
                msg, fds = None, []
            for fd in fds:
                os.close(fd)
            if msg is None or "exit" in msg or "setup_error" in msg:
                self._dead = True
        if not self._dead and not self.cgroup.has_process():
            self._dead = True  # killed, and the zygote has not reaped it yet to say so
        return not self._dead

    async def ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Wait until the process has joined its cgroups and namespaces and waits for its command.
        Until then its cgroup is empty, which ``alive`` takes for a spare that was killed."""
        async with asyncio.timeout(timeout_s):
            while True:
                msg, fds = await recv_async(self.reply)
                for fd in fds:
                    os.close(fd)
                if msg is None or "exit" in msg or "setup_error" in msg:
                    self._dead = True
                    raise SandboxSetupError(f"the next call's process could not be prepared: {msg}")
                if msg.get("ready"):
                    return

    async def start(self, command: dict[str, object], stdio: Sequence[int]) -> socket.socket:
        """Hand over the call's command and stdio; the reply socket then reports as an ordinary call's."""
        self.reply.setblocking(True)
        _proto.send(self.reply, command, list(stdio))
        return self.reply

    def discard(self) -> None:
        """Closing the channel ends the waiting process; killing the cgroup makes sure of it."""
        self.reply.close()
        try:
            self.cgroup.kill()
        finally:
            self.cgroup.remove()


class SpareSlot:
    """At most one spare for one sandbox, made on the event loop that runs its calls."""

    def __init__(self, make: Callable[[], Awaitable[Spare]], idle_s: float = SPARE_IDLE_S) -> None:
        self._make = make
        self._idle_s = idle_s
        self._spare: Spare | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self._filling: asyncio.Task[None] | None = None
        self._discarding = Background()
        self._enabled = True
        self._closed = False
        self._generation = 0  # of the latest fill: an older one still running finds itself unwanted
        self._reserved = False  # holds one of ``budget``'s places, from refill until taken or discarded

    @property
    def enabled(self) -> bool:
        return self._enabled

    def disable(self) -> None:
        """No more spares for this sandbox (one died after it was taken)."""
        self._enabled = False

    async def take(self) -> Spare | None:
        """The spare for a call starting now (waiting for one being made), or ``None``."""
        loop = asyncio.get_running_loop()
        if self._filling is not None and self._loop is loop and not self._filling.done():
            await asyncio.shield(self._filling)
        spare = self._give_up()
        if spare is None:
            return None
        if self._loop is not loop or not spare.alive():
            # Made on another loop (its watchers are gone with it), or it died waiting.
            self._enabled = self._enabled and self._loop is not loop
            await off_loop(spare.discard)
            return None
        return spare

    def refill(self) -> None:
        """Start making the next spare, unless one exists or is being made."""
        if not self._enabled or self._closed or self._reserved or not budget.acquire():
            return
        self._reserved = True
        self._generation += 1
        self._loop = asyncio.get_running_loop()
        self._filling = self._loop.create_task(self._fill(self._generation))

    async def _fill(self, generation: int) -> None:
        try:
            spare = await self._make()
        except Exception:
            self._enabled = False  # the ordinary path reports the cause on the next call
            if generation == self._generation:
                self._give_up()
            return
        if self._closed or generation != self._generation or not self._reserved:
            if generation == self._generation:
                self._give_up()
            await off_loop(spare.discard)  # not wanted any more (closed, or given up on meanwhile)
            return
        self._spare = spare
        assert self._loop is not None
        self._expiry = self._loop.call_later(self._idle_s, self._expire)

    def _give_up(self) -> Spare | None:
        """Empty the slot and its place in ``budget``; the spare it held, if any, is the caller's."""
        spare, self._spare = self._spare, None
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if self._reserved:
            self._reserved = False
            budget.release()
        return spare

    def _expire(self) -> None:
        self._expiry = None
        spare = self._give_up()
        if spare is not None:
            self._discarding.spawn(off_loop(spare.discard))  # a timer callback: on the slot's loop

    async def close(self) -> None:
        self._closed = True
        filling = self._filling
        if filling is not None and not filling.done():
            if self._loop is asyncio.get_running_loop():
                with contextlib.suppress(Exception):
                    await filling
            elif self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(filling.cancel)
        spare = self._give_up()
        if spare is not None:
            await off_loop(spare.discard)
        await self._discarding.drain()
