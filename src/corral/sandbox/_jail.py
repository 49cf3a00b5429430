"""A sandbox's confinement: its namespaces, uid, cgroups, and running each call inside them.

``Jail`` knows nothing of detection or event storage; the harness composes it
with those. One Jail per episode: ``await Jail.create(...)``, run many calls
(concurrently if asked), ``await close()``.

The namespaces are built once, when the sandbox is created, and kept alive only
by the file descriptors this object holds; each call is forked into them by the
zygote. Nothing of a sandbox is mounted in the host's mount namespace, so the
cost of a call does not grow with the number of live sandboxes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from corral.errors import SandboxClosedError, SandboxSetupError
from corral.events import TraceContext
from corral.policy import Policy
from corral.sandbox._callers import NetContexts, finish_call, release_call
from corral.sandbox._callio import (
    CallLimits,
    OutputDrain,
    OutputSink,
    PidsWatch,
    Starter,
    execute,
    request_in_cgroup,
    zygote_starter,
)
from corral.sandbox._cgroups import CallCgroup, Layout
from corral.sandbox._command import CallOutcome, new_id, normalize_command
from corral.sandbox._env import call_env
from corral.sandbox._files import FileSession
from corral.sandbox._gpu import GpuGrant
from corral.sandbox._identity import UidLease
from corral.sandbox._offloop import Background, call_in_flight, off_loop
from corral.sandbox._pace import pace
from corral.sandbox._plan import INSIDE_UID, BuildPlan, ImageView, SandboxSpec, plan
from corral.sandbox._preflight import preflight
from corral.sandbox._scope import CallObserver, CallScope, NetworkAttachment
from corral.sandbox._seccomp import filter_bpf
from corral.sandbox._spare import Spare, SpareSlot
from corral.sandbox._state import DEFAULT_STATE_ROOT, lock_state_dir, reap_stale, remove_state
from corral.sandbox._zygote_client import Zygote, recv_async, shared_zygote

_ZYGOTE_PIDS = 1  # the call's first process (pid 1 of its namespace) counts against pids.max
_BUILD_TIMEOUT_S = 60.0
_UPKEEP_DELAY_S = 0.002
_reaped_roots: set[Path] = set()
_reap_lock = threading.Lock()
# One per event loop, shared by that loop's calls (weak: a finished loop takes its watch with it).
_pids_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PidsWatch] = weakref.WeakKeyDictionary()


def _discard(cg: CallCgroup) -> None:
    cg.kill()
    cg.remove()


def _discard_all(cgroups: list[CallCgroup]) -> None:
    for cg in cgroups:
        with contextlib.suppress(SandboxSetupError):  # what is left goes with the sandbox's state dir
            _discard(cg)


def _pids_watch() -> PidsWatch:
    loop = asyncio.get_running_loop()
    watch = _pids_watches.get(loop)
    if watch is None:
        watch = _pids_watches[loop] = PidsWatch()
    return watch


class Jail:
    """Host-side state of one sandbox, and the runner of its calls."""

    def __init__(
        self,
        policy: Policy,
        sandbox_id: str,
        *,
        network: NetworkAttachment | None,
        observers: Sequence[CallObserver],
        state_root: Path,
        layout: Layout,
        zygote: Zygote,
    ) -> None:
        self.policy = policy
        self.id = sandbox_id
        self.network = network
        self.observers = list(observers)
        self.state_dir = state_root / "sandboxes" / sandbox_id
        self.layout = layout
        self.episode = policy.processes.lifetime == "episode"
        self._zygote = zygote
        self._closed = False
        self._lease: UidLease | None = None
        self._lock_fd = -1
        self._ns: dict[str, int] = {}
        self._lifeline = -1
        self._cgroup: CallCgroup | None = None
        self._plan: BuildPlan | None = None
        self._net = NetContexts(network) if network is not None else None
        self._inflight: set[asyncio.Task[Any]] = set()
        self._lingering: list[tuple[CallCgroup, CallScope]] = []  # episode calls whose processes live on
        self._seccomp = "allowlist" if policy.programs.allow is not None else "default"
        self._drain = OutputDrain()  # episode mode: pipes still held by processes earlier calls left
        self._spares = SpareSlot(self._prestart)
        self._retired: list[CallCgroup] = []  # emptied call cgroups, removed after their call returned
        self._retiring = Background()
        self.gpu: GpuGrant | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    async def create(
        cls,
        policy: Policy,
        *,
        sandbox_id: str | None = None,
        image: ImageView | None = None,
        workspace: Path | None = None,
        network: NetworkAttachment | None = None,
        observers: Sequence[CallObserver] = (),
        state_root: Path = DEFAULT_STATE_ROOT,
        gpu: GpuGrant | None = None,
    ) -> Jail:
        if policy.network.mode != "none" and network is None:
            raise SandboxSetupError("policy network.mode is not 'none' but no network attachment was given")
        layout = preflight()
        with _reap_lock:
            if state_root not in _reaped_roots:
                reap_stale(state_root, layout)
                _reaped_roots.add(state_root)
        zygote = shared_zygote(layout)
        jail = cls(
            policy,
            sandbox_id or new_id("sb"),
            network=network,
            observers=observers,
            state_root=state_root,
            layout=layout,
            zygote=zygote,
        )
        try:
            await jail._setup(state_root, image, workspace, gpu)
        except BaseException:
            await asyncio.to_thread(jail._teardown)
            raise
        return jail

    async def _setup(
        self, state_root: Path, image: ImageView | None, workspace: Path | None, gpu: GpuGrant | None
    ) -> None:
        p = self.policy
        self._lease = UidLease.acquire(state_root, p.identity.uid_range_start, p.identity.uid_range_size)
        try:
            self._lock_fd = lock_state_dir(self.state_dir)
        except FileExistsError as exc:
            raise SandboxSetupError(f"sandbox id {self.id} is already in use") from exc
        template = (
            workspace
            if workspace is not None
            else (Path(p.workspace.template) if p.workspace.template else None)
        )
        net_files = dict(self.network.files) if self.network is not None else {}
        spec = SandboxSpec(self.uid, image, template, net_files, gpu)
        self.gpu = gpu
        self._plan = plan(p, spec)
        cg = CallCgroup.create(self.layout, self.id)
        self._cgroup = cg
        cg.set_limits(p.resources.memory_max_bytes, p.resources.pids_max + 2, p.resources.cpu_quota_cores)
        init_cg = CallCgroup.create(self.layout, self.id, "init")
        self._init_cgroup = init_cg
        staging, aux = _staging_dirs(state_root)
        msg = self._plan.request(spec, str(staging), str(aux))
        fds: list[int] = []
        lifeline_r = -1
        try:
            if self.network is not None:
                msg["net"] = "fd"
                try:
                    fds.append(os.open(self.network.netns_path, os.O_RDONLY | os.O_CLOEXEC))
                except OSError as exc:
                    raise SandboxSetupError(
                        f"the sandbox's network namespace {self.network.netns_path} is gone "
                        f"({exc.strerror}); "
                        "its egress layer has failed"
                    ) from exc
            else:
                # The sandbox's own, held while it lives: a fresh one per call was measured about 15 ms
                # slower (namespace teardown is costly), for some 350 KiB of kernel memory per sandbox.
                msg["net"] = "new"
            if self.episode:
                msg["episode"] = True
                lifeline_r, self._lifeline = os.pipe()
                fds.append(lifeline_r)
            fds += [os.open(f, os.O_WRONLY | os.O_CLOEXEC) for f in init_cg.procs_files()]
            self._zygote.ensure_filter(self._seccomp, filter_bpf(self._seccomp == "allowlist"))
            reply = await self._zygote.request(msg, fds)
        finally:
            for fd in fds:
                os.close(fd)
        try:
            answer, got = await asyncio.wait_for(recv_async(reply), _BUILD_TIMEOUT_S)
        except TimeoutError as exc:
            raise SandboxSetupError(f"building sandbox {self.id} took over {_BUILD_TIMEOUT_S}s") from exc
        finally:
            reply.close()
        if answer is None or not answer.get("ok"):
            for fd in got:
                os.close(fd)
            reason = answer.get("error") if answer else "the setup process died"
            raise SandboxSetupError(f"cannot build sandbox {self.id}: {reason}")
        self._ns = dict(zip(answer["names"], got, strict=True))

    @property
    def uid(self) -> int:
        assert self._lease is not None
        return self._lease.uid

    @property
    def cwd(self) -> str:
        assert self._plan is not None
        return self._plan.cwd

    @property
    def workspace(self) -> str:
        """The workspace as the sandbox sees it (it exists only inside the sandbox's mount namespace)."""
        return self.policy.workspace.mount_point

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in list(self._inflight):
            task.cancel()
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        await self._spares.close()
        await self._retiring.drain()
        batch, self._retired = self._retired, []
        await off_loop(lambda: _discard_all(batch))
        await self._release_lingering(force=True)
        self._drain.close()
        await asyncio.to_thread(self._teardown)  # cgroup kills wait, and the egress layer does netlink

    def _teardown(self) -> None:
        errors: list[str] = []
        if self._lifeline >= 0:
            os.close(self._lifeline)  # the episode init sees EOF and exits: its pid namespace dies
            self._lifeline = -1
        for fd in self._ns.values():
            os.close(fd)
        self._ns.clear()
        try:
            remove_state(self.state_dir, self.layout, self.id) if self.state_dir.exists() else None
        except Exception as exc:  # keep going: the uid and lock must still be released
            errors.append(str(exc))
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
        if self._lease is not None:
            self._lease.release()
            self._lease = None
        if self.network is not None:
            try:
                self.network.close()
            except Exception as exc:
                errors.append(f"network: {exc}")
        if errors:
            raise SandboxSetupError(f"tearing down sandbox {self.id}: " + "; ".join(errors))

    # -- calls -----------------------------------------------------------------------------

    async def run(
        self,
        command: str | Sequence[str],
        *,
        ctx: TraceContext,
        timeout: float | None = None,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        on_output: OutputSink | None = None,
    ) -> CallOutcome:
        """Run one call; ``on_output`` gets each chunk of output as it arrives."""
        argv, text = normalize_command(command)
        if self._closed:
            raise SandboxClosedError(f"sandbox {self.id} is closed")
        if ctx.tool_call_id is None:
            ctx = ctx.with_tool_call(new_id("tc"))
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            with call_in_flight():
                return await self._run(argv, text, ctx, timeout, stdin, env or {}, on_output)
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def _run(
        self,
        argv: list[str],
        text: str,
        ctx: TraceContext,
        timeout: float | None,
        stdin: bytes | None,
        env: Mapping[str, str],
        on_output: OutputSink | None,
    ) -> CallOutcome:
        p = self.policy
        assert ctx.tool_call_id is not None and self._plan is not None
        await self._release_lingering(force=False)
        spare = await self._spares.take()
        if spare is not None:
            cg, cg_ino = spare.cgroup, spare.cgroup_ino
        else:
            cg, cg_ino = await off_loop(self._new_call_cgroup, undo=lambda made: _discard(made[0]))
        keep = emptied = False
        try:
            await pace()  # calls starting together take turns, so the loop is served between them
            scope = CallScope(self.id, ctx, dict(cg.paths), cg_ino, self.uid, time.time_ns())
            net_env = dict(self.network.env) if self.network is not None else {}
            full_env = call_env(p, self._plan.env, {**net_env, **env}, os.environ)
            command: dict[str, object] = {"argv": argv, "env": full_env, "cwd": self._plan.cwd}
            start: Starter
            start = (
                self._ordinary(command, cg)
                if spare is None
                else functools.partial(self._on_spare, spare, command, cg)
            )
            limits = CallLimits(
                timeout if timeout is not None else p.resources.wall_timeout_s,
                p.resources.output_max_bytes,
                p.resources.kill_on_pids_limit,
            )
            started: list[CallObserver] = []
            try:
                for obs in self.observers:  # a collector that cannot follow the call stops it
                    obs.call_started(scope)
                    started.append(obs)
                if self._net is not None:
                    self._net.begin(ctx)
                try:
                    raw = await execute(
                        start,
                        cg,
                        limits,
                        stdin=stdin,
                        pids_watch=_pids_watch(),
                        on_output=on_output,
                        episode=self.episode,
                        drain=self._drain,
                    )
                finally:
                    if self._net is not None:
                        self._net.end(ctx)
                    if not self._closed:
                        self._after_return(self._spares.refill)  # the next call's setup, ahead of it
                keep = self.episode and cg.populated()
                emptied = not keep  # every process of the call is gone: only the directories are left
            finally:
                await finish_call(started, scope, lingering=keep)
        finally:
            if spare is not None:
                spare.reply.close()  # closed already unless the call never reached its start
            if keep:
                self._lingering.append((cg, scope))
            elif emptied:
                self._retire(cg)
            else:
                await off_loop(lambda: _discard(cg))
        return CallOutcome(scope, raw, text, keep)

    def _ordinary(self, command: dict[str, object], cg: CallCgroup) -> Starter:
        """The zygote forks the call's first process, which joins ``cg``."""
        return zygote_starter(self._zygote, {**self._call_request(), **command}, list(self._ns.values()), cg)

    async def _on_spare(
        self, spare: Spare, command: dict[str, object], cg: CallCgroup, stdio: Sequence[int]
    ) -> socket.socket:
        """Hand the call to its spare. One that died after it was taken (its channel is closed) never
        saw the command: the call then starts the ordinary way, in the same cgroup."""
        try:
            return await spare.start(command, stdio)
        except OSError:
            self._spares.disable()  # as for a spare found dead when taken
            return await self._ordinary(command, cg)(stdio)

    def _after_return(self, work: Callable[[], object]) -> None:
        """Run upkeep shortly after the call has returned, not at once: a synchronous caller waits
        for the result on another thread, which the loop thread, busy with Python work, would keep
        from the GIL for up to its switch interval (measured: 2 ms of a 4 ms warm call)."""
        asyncio.get_running_loop().call_later(_UPKEEP_DELAY_S, work)

    def _retire(self, cg: CallCgroup) -> None:
        """Remove an emptied call cgroup after the call has returned (``close`` removes what is left)."""
        self._retired.append(cg)
        if len(self._retired) == 1:
            self._after_return(self._remove_retired)

    def _remove_retired(self) -> None:
        batch, self._retired = self._retired, []
        if batch:
            # On a worker: no call waits for it, and the loop has the calls to serve meanwhile.
            self._retiring.spawn(off_loop(lambda: _discard_all(batch), offload=True))

    def _call_request(self) -> dict[str, Any]:
        """The zygote request for a call's first process, less its command."""
        assert self._plan is not None
        return {
            "op": "call",
            "mode": "episode" if self.episode else "call",
            "cwd": self._plan.cwd,
            "tmp": self._plan.tmp,
            "seccomp": self._seccomp,
            "inside_id": INSIDE_UID,
            "ns": list(self._ns),
        }

    def _new_call_cgroup(self) -> tuple[CallCgroup, int]:
        """A fresh cgroup with the call limits (named for itself: a spare's is made before its call)."""
        p = self.policy
        cg = CallCgroup.create(self.layout, self.id, new_id("call"))
        try:
            cg.set_limits(
                p.resources.memory_max_bytes,
                p.resources.pids_max + _ZYGOTE_PIDS,
                p.resources.cpu_quota_cores,
            )
            return cg, os.stat(cg.unified).st_ino
        except BaseException:
            cg.remove()
            raise

    async def _prestart(self) -> Spare:
        """A spare for the next call: its cgroup, and its first process set up inside the sandbox."""
        if self._closed:
            raise SandboxClosedError(f"sandbox {self.id} is closed")
        cg, cg_ino = await off_loop(self._new_call_cgroup, undo=lambda made: _discard(made[0]))
        try:
            reply = await request_in_cgroup(
                self._zygote, {**self._call_request(), "spare": True}, list(self._ns.values()), cg
            )
        except BaseException:
            await off_loop(lambda: _discard(cg))
            raise
        spare = Spare(cg, cg_ino, reply)
        try:
            await spare.ready()  # a call that comes meanwhile waits for it: it is most of the way there
        except BaseException:
            await off_loop(spare.discard)
            raise
        return spare

    async def _release_lingering(self, *, force: bool) -> None:
        """Episode mode: forget the cgroups of earlier calls once their last process is gone."""
        still: list[tuple[CallCgroup, CallScope]] = []
        for cg, scope in self._lingering:
            if force or not cg.populated():
                with contextlib.suppress(SandboxSetupError):
                    cg.kill()
                    cg.remove()
                release_call(self.observers, scope)
            else:
                still.append((cg, scope))
        self._lingering = still

    def lingering_scopes(self) -> list[CallScope]:
        return [s for _, s in self._lingering]

    # -- files -----------------------------------------------------------------------------

    async def files(self) -> FileSession:
        """A session that opens files inside the sandbox's view, as its uid (see ``FileSession``)."""
        if self._closed:
            raise SandboxClosedError(f"sandbox {self.id} is closed")
        names = ["mnt", "user"]
        msg = {"op": "files", "ns": names, "inside_id": INSIDE_UID, "seccomp": self._seccomp, "cwd": self.cwd}
        reply = await self._zygote.request(msg, [self._ns[n] for n in names])
        return await FileSession.open(reply, self.id)


def _staging_dirs(state_root: Path) -> tuple[Path, Path]:
    """Empty host directories every setup child mounts on inside its own private mount namespace."""
    out = []
    for name in ("staging", "aux"):
        d = state_root / "zygote" / name
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        out.append(d)
    return out[0], out[1]
