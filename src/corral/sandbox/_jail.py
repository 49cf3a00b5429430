"""A sandbox's confinement: the workspace, the uid, and running each call in fresh namespaces.

``Jail`` knows nothing of detection or event storage; the harness composes it
with those. One Jail per episode: create, run many calls, close.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from corral.errors import InputError, SandboxClosedError, SandboxSetupError
from corral.events import TraceContext
from corral.policy import Policy
from corral.sandbox._bwrap import (
    INSIDE_GID,
    INSIDE_UID,
    INSIDE_USER,
    CallMounts,
    build_argv,
    call_env,
    resolve_programs,
)
from corral.sandbox._cgroups import CallCgroup
from corral.sandbox._identity import UidLease
from corral.sandbox._launch import RawOutcome, launch
from corral.sandbox._mounts import bind_mount, mount_tmpfs
from corral.sandbox._preflight import preflight
from corral.sandbox._reaper import become_subreaper, reap_orphans
from corral.sandbox._scope import CallObserver, CallScope, NetworkAttachment
from corral.sandbox._seccomp import filter_fd
from corral.sandbox._state import DEFAULT_STATE_ROOT, lock_state_dir, reap_stale, remove_state

# bwrap's own two processes (the outer monitor and pid 1 inside) count against pids.max.
_BWRAP_PIDS = 2
_reaped_roots: set[Path] = set()
_reap_lock = threading.Lock()


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def normalize_command(command: object) -> tuple[list[str], str]:
    """argv to run and its display text. A string runs under ``/bin/sh -c``."""
    if isinstance(command, str):
        if not command.strip():
            raise InputError("command is empty")
        return ["/bin/sh", "-c", command], command
    if isinstance(command, (list, tuple)) and command and all(isinstance(a, str) for a in command):
        return list(command), shlex.join(command)
    raise InputError(f"command must be a non-empty string or list of strings, got {type(command).__name__}")


@dataclass(frozen=True)
class CallOutcome:
    scope: CallScope
    raw: RawOutcome
    command_text: str


class Jail:
    """Host-side state of one sandbox, and the runner of its calls."""

    def __init__(
        self,
        policy: Policy,
        *,
        sandbox_id: str | None = None,
        network: NetworkAttachment | None = None,
        observers: Sequence[CallObserver] = (),
        state_root: Path = DEFAULT_STATE_ROOT,
    ) -> None:
        if policy.network.mode != "none" and network is None:
            raise SandboxSetupError("policy network.mode is not 'none' but no network attachment was given")
        self.bwrap, self.layout = preflight()
        become_subreaper()
        with _reap_lock:
            if state_root not in _reaped_roots:
                reap_stale(state_root, self.layout)
                _reaped_roots.add(state_root)
        self.policy = policy
        self.id = sandbox_id or new_id("sb")
        self.network = network
        self.observers = list(observers)
        self.state_dir = state_root / "sandboxes" / self.id
        self._closed = False
        self._lock = threading.Lock()  # one call at a time per sandbox
        self._lease: UidLease | None = None
        self._lock_fd = -1
        self._ws_owner: tuple[int, int] | None = None
        try:
            self._setup(state_root)
        except BaseException:
            self._teardown()
            raise

    def _setup(self, state_root: Path) -> None:
        p = self.policy
        self._lease = UidLease.acquire(state_root, p.identity.uid_range_start, p.identity.uid_range_size)
        uid = self._lease.uid
        try:
            self._lock_fd = lock_state_dir(self.state_dir)
        except FileExistsError as exc:
            raise SandboxSetupError(f"sandbox id {self.id} is already in use") from exc
        allowlist = p.programs.allow is not None
        if p.workspace.host_path is None:
            ws = self.state_dir / "workspace"
            mount_tmpfs(ws, size_bytes=p.workspace.size_max_bytes, uid=uid, gid=uid, noexec=allowlist)
        else:
            src = Path(p.workspace.host_path)
            if not src.is_dir():
                raise SandboxSetupError(f"workspace.host_path {src} is not a directory")
            st = src.stat()
            self._ws_owner = (st.st_uid, st.st_gid)
            _chown_tree(src, uid, uid)
            # Bound under the state dir so the sandbox uid needs no access to the path's parents.
            ws = self.state_dir / "workspace"
            bind_mount(src, ws, noexec=allowlist)
        scratch = None
        if allowlist:
            scratch = self.state_dir / "scratch"
            mount_tmpfs(scratch, size_bytes=p.filesystem.tmp_size_max_bytes, uid=uid, gid=uid, noexec=True)
            for sub in ("tmp", "shm"):
                (scratch / sub).mkdir()
                os.chown(scratch / sub, uid, uid)
                os.chmod(scratch / sub, 0o1777)
        passwd, group = self.state_dir / "passwd", self.state_dir / "group"
        passwd.write_text(
            f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
            f"{INSIDE_USER}:x:{INSIDE_UID}:{INSIDE_GID}:agent:{p.workspace.mount_point}:/bin/sh\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        )
        group.write_text(f"root:x:0:\n{INSIDE_USER}:x:{INSIDE_GID}:\nnogroup:x:65534:\n")
        for f in (passwd, group):
            os.chmod(f, 0o644)
        self._programs = (
            resolve_programs(p.programs.allow, p.env.set.get("PATH", "/usr/bin:/bin"))
            if p.programs.allow
            else None
        )
        extra = dict(self.network.files) if self.network is not None else {}
        self.mounts = CallMounts(ws, passwd, group, scratch, extra)

    @property
    def uid(self) -> int:
        assert self._lease is not None
        return self._lease.uid

    @property
    def workspace(self) -> Path:
        return self.mounts.workspace

    def run(
        self,
        command: str | Sequence[str],
        *,
        ctx: TraceContext,
        timeout: float | None = None,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CallOutcome:
        argv, text = normalize_command(command)
        with self._lock:
            if self._closed:
                raise SandboxClosedError(f"sandbox {self.id} is closed")
            if ctx.tool_call_id is None:
                ctx = ctx.with_tool_call(new_id("tc"))
            return self._run_locked(argv, text, ctx, timeout, stdin, env or {})

    def _run_locked(
        self,
        argv: list[str],
        text: str,
        ctx: TraceContext,
        timeout: float | None,
        stdin: bytes | None,
        env: Mapping[str, str],
    ) -> CallOutcome:
        p = self.policy
        assert ctx.tool_call_id is not None  # run() names every call
        cg = CallCgroup.create(self.layout, self.id, ctx.tool_call_id)
        try:
            cg.set_limits(
                p.resources.memory_max_bytes, p.resources.pids_max + _BWRAP_PIDS, p.resources.cpu_quota_cores
            )
            scope = CallScope(
                self.id, ctx, dict(cg.paths), os.stat(cg.unified).st_ino, self.uid, time.time_ns()
            )
            net_env = dict(self.network.env) if self.network is not None else {}
            full_env = call_env(p, {**net_env, **env}, os.environ)
            if self._programs is not None:
                self._wipe_scratch()
            sfd = filter_fd(self._programs is not None)
            try:
                bw = build_argv(
                    p,
                    self.mounts,
                    argv,
                    full_env,
                    seccomp_fd=sfd,
                    programs=self._programs,
                    own_netns=self.network is None,
                    bwrap=self.bwrap,
                )
                started: list[CallObserver] = []
                try:
                    for obs in self.observers:  # a collector that cannot follow the call stops it
                        obs.call_started(scope)
                        started.append(obs)
                    if self.network is not None:
                        self.network.begin_call(ctx)
                    raw = launch(
                        bw,
                        cgroup=cg,
                        uid=self.uid,
                        gid=self.uid,
                        netns_path=self.network.netns_path if self.network is not None else None,
                        pass_fds=(sfd,),
                        timeout_s=timeout if timeout is not None else p.resources.wall_timeout_s,
                        output_max_bytes=p.resources.output_max_bytes,
                        kill_on_pids_limit=p.resources.kill_on_pids_limit,
                        stdin=stdin,
                        kill_at_exit=not p.processes.outlive_call,
                    )
                finally:
                    if self.network is not None:
                        self.network.end_call()
                    for obs in started:
                        obs.call_finished(scope)
            finally:
                os.close(sfd)
        finally:
            if not p.processes.outlive_call:
                cg.kill()
                cg.remove()
            self._reap()
        return CallOutcome(scope, raw, text)

    def _reap(self) -> None:
        ident = self.policy.identity
        reap_orphans(ident.uid_range_start, ident.uid_range_start + ident.uid_range_size)

    def _wipe_scratch(self) -> None:
        # /tmp is private to each call; under an allowlist it lives on the sandbox's noexec tmpfs.
        assert self.mounts.scratch is not None
        for sub in ("tmp", "shm"):
            d = self.mounts.scratch / sub
            for entry in os.scandir(d):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._teardown()

    def _teardown(self) -> None:
        errors: list[str] = []
        self._reap()
        try:
            remove_state(self.state_dir, self.layout, self.id) if self.state_dir.exists() else None
        except Exception as exc:  # keep going: the uid and lock must still be released
            errors.append(str(exc))
        if self._ws_owner is not None:
            with contextlib.suppress(OSError):
                _chown_tree(Path(str(self.policy.workspace.host_path)), *self._ws_owner)
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


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)
