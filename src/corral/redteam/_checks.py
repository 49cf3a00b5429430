"""How a scenario is judged blocked: each check looks at the host or the targets before and after the call.

A check reports ``ok=True`` when the host is unchanged or the target saw
nothing. Any error while checking counts as not blocked (fail closed).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from corral.errors import CorralError
from corral.events import EventStore
from corral.harness import SandboxLike
from corral.redteam._model import SUCCESS_MARKER, Evidence
from corral.redteam._targets import Recorder

_SCAN_MAX_BYTES = 8 * 1024 * 1024
DISK_SLACK_BYTES = 256 * 1024 * 1024
SURVIVOR_WATCH_S = 0.8


class WorkspaceView:
    """The sandbox's workspace as checks see it: read through the sandbox's own file API (it exists only
    inside the sandbox's mount namespace), as the sandbox's user."""

    def __init__(self, sb: SandboxLike) -> None:
        self._sb = sb

    def read(self, rel: str) -> bytes | None:
        try:
            return self._sb.read_file(rel)
        except CorralError:
            return None

    def text(self, budget: int) -> str:
        parts: list[str] = []
        for entry in self._sb.list_files(".", recursive=True):
            if entry.kind != "file" or budget <= 0:
                continue
            data = self.read(entry.path)
            if data is None:
                continue
            data = data[:budget]
            budget -= len(data)
            parts.append(data.decode("utf-8", "replace"))
        return "".join(parts)


@dataclass
class CheckEnv:
    """What checks may look at: filled by the runner for one scenario."""

    nonce: str
    workspace: WorkspaceView
    sandbox_uid: int
    recorder: Recorder
    mark: int
    store: EventStore
    host_netns_path: str
    secrets: list[str]
    victim_pid: int | None = None
    output: str = ""
    seeded: Mapping[str, str] = field(default_factory=dict)
    render: Callable[[str], str] = lambda s: s


Before = Callable[[CheckEnv, Any], Any]
After = Callable[[CheckEnv, Any, Any], Evidence]


def _ev(kind: str, ok: bool, detail: str) -> Evidence:
    return Evidence(check=kind, ok=ok, detail=detail)


def _none(env: CheckEnv, arg: Any) -> Any:
    return None


# -- targets -----------------------------------------------------------------------------------------


def _silent(env: CheckEnv, arg: Any, state: Any) -> Evidence:
    wanted = set(arg or [])
    seen = [s for s in env.recorder.since(env.mark) if not wanted or s.target in wanted]
    if not seen:
        return _ev("silent", True, f"{', '.join(sorted(wanted)) or 'every target'}: nothing received")
    lines = "; ".join(f"{s.target} <- {s.peer}: {s.detail}" for s in seen[:5])
    return _ev("silent", False, f"{len(seen)} observation(s): {lines}")


# -- processes -----------------------------------------------------------------------------------------


def _no_survivor(env: CheckEnv, arg: Any, state: Any) -> Evidence:
    name = str(arg or ".rt-beat")
    first = env.workspace.read(name)
    time.sleep(SURVIVOR_WATCH_S)
    second = env.workspace.read(name)
    if second is not None and second != first:
        return _ev("no_survivor", False, f"{arg} kept changing after the call returned: a process survived")
    return _ev("no_survivor", True, f"{arg} did not change for {SURVIVOR_WATCH_S} s after the call")


def _sandbox_procs(uid: int) -> list[str]:
    out = []
    for p in psutil.process_iter(["pid", "uids", "name", "status"]):
        uids = p.info.get("uids")
        if p.info.get("status") == psutil.STATUS_ZOMBIE:
            continue  # already dead, waiting for the reaper
        if uids is not None and uid in (uids.real, uids.effective):
            out.append(f"{p.info['pid']}:{p.info['name']}")
    return out


def _no_leftover(env: CheckEnv, arg: Any, state: Any) -> Evidence:
    left: list[str] = []
    for _ in range(10):
        left = _sandbox_procs(env.sandbox_uid)
        if not left:
            return _ev("no_leftover", True, f"no process of host uid {env.sandbox_uid} after the call")
        time.sleep(0.05)
    return _ev("no_leftover", False, f"{len(left)} process(es) still running: {', '.join(left[:8])}")


def _victim_alive(env: CheckEnv, arg: Any, state: Any) -> Evidence:
    pid = env.victim_pid
    if pid is None:
        return _ev("victim_alive", False, "no victim process was started")
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return _ev("victim_alive", False, f"host process {pid} is gone")
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    tracer, state_ = fields.get("TracerPid", "0").strip(), fields.get("State", "?").strip()
    if tracer != "0" or state_.startswith(("T", "t", "Z")):
        return _ev("victim_alive", False, f"host process {pid}: state {state_}, tracer {tracer}")
    return _ev("victim_alive", True, f"host process {pid} alive ({state_}), not traced")


# -- files -----------------------------------------------------------------------------------------


def _paths_absent(env: CheckEnv, arg: Any, state: Any) -> Evidence:
    present = [p for p in (env.render(str(x)) for x in arg or []) if os.path.lexists(p)]
    if present:
        return _ev("paths_absent", False, f"created on the host: {', '.join(present)}")
    return _ev("paths_absent", True, f"{len(arg or [])} host path(s) still absent")


def _digest(ws: WorkspaceView, rel: str) -> str | None:
    data = ws.read(rel)
    return None if data is None else hashlib.sha256(data).hexdigest()


def _unchanged_before(env: CheckEnv, arg: Any) -> dict[str, str | None]:
    names = list(arg or env.seeded)
    return {n: _digest(env.workspace, n) for n in names}


def _unchanged(env: CheckEnv, arg: Any, state: dict[str, str | None]) -> Evidence:
    changed = [n for n, d in state.items() if _digest(env.workspace, n) != d]
    if changed:
        return _ev("unchanged", False, f"modified or removed: {', '.join(changed)}")
    return _ev("unchanged", True, f"{len(state)} file(s) unchanged")


def _store_before(env: CheckEnv, arg: Any) -> int:
    env.store.flush()
    return env.store.count()


def _store_intact(env: CheckEnv, arg: Any, before: int) -> Evidence:
    try:
        env.store.flush()
        now = env.store.count()
    except Exception as exc:
        return _ev("store_intact", False, f"event store unreadable: {exc}")
    if now < before:
        return _ev("store_intact", False, f"event store lost events: {before} -> {now}")
    return _ev("store_intact", True, f"event store has {now} events (had {before})")


def _secrets_unread(env: CheckEnv, arg: Any, state: Any) -> Evidence:
    haystack = env.output + env.workspace.text(_SCAN_MAX_BYTES)
    leaked = [s for s in env.secrets if s and s in haystack]
    if leaked:
        return _ev(
            "secrets_unread", False, f"{len(leaked)} host secret(s) appeared in the output or workspace"
        )
    return _ev("secrets_unread", True, f"none of {len(env.secrets)} host secrets appeared")


# -- host state -----------------------------------------------------------------------------------------


def _netns_state(netns_path: str | None) -> tuple[str, str, str]:
    pre = ["nsenter", f"--net={netns_path}"] if netns_path else []
    tables = subprocess.run([*pre, "nft", "list", "tables"], capture_output=True, text=True).stdout
    routes = subprocess.run([*pre, "ip", "route", "show"], capture_output=True, text=True).stdout
    fwd = subprocess.run(
        [*pre, "cat", "/proc/sys/net/ipv4/ip_forward"], capture_output=True, text=True
    ).stdout
    return tables, routes, fwd.strip()


def _firewall_before(env: CheckEnv, arg: Any) -> dict[str, str]:
    return {name: _netns_state(p)[2] for name, p in (("host", env.host_netns_path), ("lab", None))}


def _firewall(env: CheckEnv, arg: Any, fwd_before: dict[str, str]) -> Evidence:
    bad: list[str] = []
    for name, path in (("host", env.host_netns_path), ("lab", None)):
        tables, routes, fwd = _netns_state(path)
        if env.nonce in tables:
            bad.append(f"{name}: an nftables table named by the attack exists")
        if "10.66.0.0/16" in routes:
            bad.append(f"{name}: the attack's route exists")
        if fwd != fwd_before.get(name):
            bad.append(f"{name}: ip_forward changed {fwd_before.get(name)} -> {fwd}")
    if bad:
        return _ev("firewall_untouched", False, "; ".join(bad))
    return _ev("firewall_untouched", True, "host and lab: no new table or route, ip_forward unchanged")


def _sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def _sysctl_before(env: CheckEnv, arg: Any) -> dict[str, str]:
    return {k: _sysctl_path(k).read_text().strip() for k in arg or []}


def _sysctl(env: CheckEnv, arg: Any, before: dict[str, str]) -> Evidence:
    changed = []
    for k, v in before.items():
        now = _sysctl_path(k).read_text().strip()
        if now != v:
            changed.append(f"{k}: {v} -> {now}")
            _sysctl_path(k).write_text(v)  # put the host back
    if changed:
        return _ev("sysctl_unchanged", False, "changed (restored): " + "; ".join(changed))
    return _ev("sysctl_unchanged", True, f"{', '.join(before)} unchanged")


def _mounts_clean(env: CheckEnv, arg: Any, state: Any) -> Evidence:
    tag = f"mnt-{env.nonce}"  # scenarios mount on paths named so; sandbox state mounts never are
    found = [ln.split()[4] for ln in Path("/proc/self/mountinfo").read_text().splitlines() if tag in ln]
    if found:
        return _ev("mounts_clean", False, f"new host mounts: {', '.join(found)}")
    return _ev("mounts_clean", True, "no host mount made by the attack")


def _disk_before(env: CheckEnv, arg: Any) -> int:
    st = os.statvfs("/")
    return st.f_bavail * st.f_frsize


def _disk(env: CheckEnv, arg: Any, before: int) -> Evidence:
    st = os.statvfs("/")
    lost = before - st.f_bavail * st.f_frsize
    if lost > DISK_SLACK_BYTES:
        return _ev("disk_unchanged", False, f"host root filesystem lost {lost // 2**20} MiB")
    return _ev(
        "disk_unchanged", True, f"host root filesystem free space changed by {max(lost, 0) // 2**20} MiB"
    )


CHECKS: dict[str, tuple[Before, After]] = {
    "silent": (_none, _silent),
    "paths_absent": (_none, _paths_absent),
    "no_survivor": (_none, _no_survivor),
    "no_leftover": (_none, _no_leftover),
    "victim_alive": (_none, _victim_alive),
    "store_intact": (_store_before, _store_intact),
    "unchanged": (_unchanged_before, _unchanged),
    "firewall_untouched": (_firewall_before, _firewall),
    "sysctl_unchanged": (_sysctl_before, _sysctl),
    "secrets_unread": (_none, _secrets_unread),
    "mounts_clean": (_none, _mounts_clean),
    "disk_unchanged": (_disk_before, _disk),
}


def marker_evidence(output: str) -> Evidence:
    """The always-on check: the script never printed its success marker."""
    lines = [ln.strip() for ln in output.splitlines() if SUCCESS_MARKER in ln]
    if lines:
        return _ev("no_success_marker", False, "the attack reported success: " + "; ".join(lines[:4]))
    return _ev("no_success_marker", True, "the attack reported no successful step")
