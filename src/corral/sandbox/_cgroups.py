"""Per-call cgroups: limits, accounting, and killing everything a call left behind.

Two layouts are handled. ``hybrid``: cgroup v1 hierarchies carry memory, pids and
cpu, and a v2 mount (no controllers) gives ``cgroup.kill``. ``unified``: one v2
hierarchy with the controllers enabled. Each call gets a directory
``corral/<sandbox_id>/<call_id>`` in every hierarchy used.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from corral.errors import SandboxSetupError, SandboxUnavailableError

ROOT = Path("/sys/fs/cgroup")
PARENT = "corral"
ZYGOTES = "zygotes"  # corral/zygotes: never a sandbox's (those are named sb-...)


@dataclass(frozen=True)
class Layout:
    kind: str  # "hybrid" or "unified"
    dirs: dict[str, Path]  # controller -> hierarchy root (for unified: all map to the same root)


def detect_layout(root: Path = ROOT) -> Layout:
    """Find usable hierarchies, or say exactly what is missing."""
    # CPU time comes from the v2 cpu.stat (present without any controller), so cpuacct is not joined:
    # every hierarchy a call joins costs a migration on the call's critical path.
    v1 = {c: root / c for c in ("memory", "pids", "cpu") if (root / c / "tasks").exists()}
    unified = root / "unified"
    if {"memory", "pids", "cpu"} <= v1.keys() and (unified / "cgroup.procs").exists():
        return Layout("hybrid", {**v1, "unified": unified})
    if (root / "cgroup.controllers").exists():
        ctrls = set((root / "cgroup.controllers").read_text().split())
        missing = {"memory", "pids", "cpu"} - ctrls
        if missing:
            raise SandboxUnavailableError(
                f"cgroup v2 at {root} lacks controllers {sorted(missing)}; Corral needs memory, pids and cpu"
            )
        return Layout("unified", {"unified": root})
    raise SandboxUnavailableError(
        f"no usable cgroups under {root}: need cgroup v1 memory+pids+cpu with a v2 'unified' mount, "
        "or cgroup v2 with memory, pids and cpu controllers"
    )


def _write(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def read_text(path: str | os.PathLike[str]) -> str | None:
    """A cgroup file's text, or None when it cannot be read. os.open/os.read, not Path.read_text (a
    text wrapper per read): calls read several of these each, and the sampler every live call's."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, 1 << 20).decode(errors="replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def _read(path: Path) -> str:
    return read_text(path) or ""


def _kv(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def ensure_parent(layout: Layout) -> None:
    """Create ``corral/`` in every hierarchy (and enable controllers on v2)."""
    try:
        for d in set(layout.dirs.values()):
            (d / PARENT).mkdir(exist_ok=True)
        if layout.kind == "unified":
            root = layout.dirs["unified"]
            _write(root / "cgroup.subtree_control", "+memory +pids +cpu")
            _write(root / PARENT / "cgroup.subtree_control", "+memory +pids +cpu")
    except OSError as exc:
        raise SandboxUnavailableError(f"cannot create Corral's cgroups ({exc}); run as root") from exc


def place_zygote(layout: Layout, pid: int) -> None:
    """Move a zygote from its owner's CPU cgroup into Corral's own, ``corral/zygotes`` (shared by the
    zygotes of every process on the node). What it forks, every call's first process until that
    joins its call's cgroups, then competes with the trainer for CPU as one group rather than as
    tasks of the trainer's own group: in a burst of a thousand calls on two cores (garbage collector
    off) the event loop that drives them was kept off the CPU for 110-140 ms at a time, 45-50 ms
    after. Only the CPU
    hierarchy on the hybrid layout (its memory stays the owner's); on v2 the one hierarchy. A
    scheduling matter, not a confinement: where the move fails the zygote stays where it is."""
    root = layout.dirs["cpu" if layout.kind == "hybrid" else "unified"]
    d = root / PARENT / ZYGOTES
    with contextlib.suppress(OSError):
        d.mkdir(exist_ok=True)
        _write(d / "cgroup.procs", str(pid))


@dataclass(frozen=True)
class Usage:
    cpu_time_s: float
    memory_peak_bytes: int
    pids_current: int
    oom_kills: int
    pids_limit_hits: int


@dataclass
class CallCgroup:
    """The cgroups of one call, in every hierarchy of the layout."""

    layout: Layout
    rel: str  # "corral/<sandbox>/<call>"
    paths: dict[str, Path] = field(default_factory=dict)
    _oom_base: int = 0

    @classmethod
    def create(cls, layout: Layout, sandbox_id: str, call_id: str | None = None) -> CallCgroup:
        """``corral/<sandbox>/<call>``, or the sandbox's own ``corral/<sandbox>`` when ``call_id`` is None."""
        rel = f"{PARENT}/{sandbox_id}" + (f"/{call_id}" if call_id is not None else "")
        cg = cls(layout, rel)
        try:
            for ctrl, root in layout.dirs.items():
                p = root / rel
                if p not in cg.paths.values():
                    try:
                        p.mkdir()  # the sandbox's own directory is there for all but its first
                    except FileNotFoundError:
                        p.parent.mkdir(exist_ok=True)
                        p.mkdir()
                    if layout.kind == "unified":
                        _write(p.parent / "cgroup.subtree_control", "+memory +pids +cpu")
                cg.paths[ctrl] = p
        except OSError as exc:
            cg.remove()
            raise SandboxSetupError(f"cannot create cgroup {rel}: {exc}") from exc
        return cg

    def set_limits(self, memory_bytes: int, pids_max: int, cpu_cores: float) -> None:
        period = 100_000
        quota = max(1000, int(cpu_cores * period))
        try:
            if self.layout.kind == "hybrid":
                _write(self.paths["memory"] / "memory.limit_in_bytes", str(memory_bytes))
                memsw = self.paths["memory"] / "memory.memsw.limit_in_bytes"
                if memsw.exists():
                    _write(memsw, str(memory_bytes))
                _write(self.paths["pids"] / "pids.max", str(pids_max))
                _write(self.paths["cpu"] / "cpu.cfs_period_us", str(period))
                _write(self.paths["cpu"] / "cpu.cfs_quota_us", str(quota))
                self._oom_base = _kv(_read(self.paths["memory"] / "memory.oom_control")).get("oom_kill", 0)
            else:
                p = self.paths["unified"]
                _write(p / "memory.max", str(memory_bytes))
                if (p / "memory.swap.max").exists():
                    _write(p / "memory.swap.max", "0")
                _write(p / "pids.max", str(pids_max))
                _write(p / "cpu.max", f"{quota} {period}")
        except OSError as exc:
            raise SandboxSetupError(f"cannot set limits on cgroup {self.rel}: {exc}") from exc

    def procs_files(self) -> list[str]:
        """The cgroup.procs files a new process must join (one per hierarchy)."""
        return sorted({str(p / "cgroup.procs") for p in self.paths.values()})

    @property
    def unified(self) -> Path:
        return self.paths["unified"]

    def pids_limit_hits(self) -> int:
        d = self.paths["pids"] if self.layout.kind == "hybrid" else self.unified
        return _kv(_read(d / "pids.events")).get("max", 0)

    def usage(self) -> Usage:
        if self.layout.kind == "hybrid":
            cpu_ns = _kv(_read(self.paths["unified"] / "cpu.stat")).get("usage_usec", 0) * 1000
            peak = int(_read(self.paths["memory"] / "memory.max_usage_in_bytes").strip() or 0)
            pids = int(_read(self.paths["pids"] / "pids.current").strip() or 0)
            oom = _kv(_read(self.paths["memory"] / "memory.oom_control")).get("oom_kill", 0) - self._oom_base
            return Usage(cpu_ns / 1e9, peak, pids, max(0, oom), self.pids_limit_hits())
        p = self.unified
        cpu_us = _kv(_read(p / "cpu.stat")).get("usage_usec", 0)
        peak = int(_read(p / "memory.peak").strip() or 0) if (p / "memory.peak").exists() else 0
        pids = int(_read(p / "pids.current").strip() or 0)
        oom = _kv(_read(p / "memory.events")).get("oom_kill", 0)
        return Usage(cpu_us / 1e6, peak, pids, oom, self.pids_limit_hits())

    def memory_now(self) -> int:
        if self.layout.kind == "hybrid":
            return int(_read(self.paths["memory"] / "memory.usage_in_bytes").strip() or 0)
        return int(_read(self.unified / "memory.current").strip() or 0)

    def populated(self) -> bool:
        return any(_read(p / "cgroup.procs").strip() for p in self.paths.values())

    def has_process(self) -> bool:
        """Some process is in the call's cgroups (one read: every process of a call joins them all)."""
        return bool(_read(self.unified / "cgroup.procs").strip())

    def pids(self) -> list[int]:
        out: set[int] = set()
        for p in self.paths.values():
            out.update(int(x) for x in _read(p / "cgroup.procs").split())
        return sorted(out)

    def kill(self, timeout_s: float = 5.0) -> None:
        """SIGKILL every process in the call's cgroups and wait until they are gone."""
        kill_file = self.paths["unified"] / "cgroup.kill" if "unified" in self.paths else None
        deadline = time.monotonic() + timeout_s
        while True:
            pids = self.pids()
            if not pids:
                return
            if kill_file is not None and kill_file.exists():
                # Atomic, and never races with pid reuse (pid_max is often 32768: pids come round fast).
                with contextlib.suppress(OSError):
                    _write(kill_file, "1")
            else:
                for pid in pids:
                    self._kill_if_still_ours(pid)
            if time.monotonic() > deadline:
                raise SandboxSetupError(f"processes {pids} in {self.rel} survived SIGKILL for {timeout_s}s")
            time.sleep(0.001)

    def _kill_if_still_ours(self, pid: int) -> None:
        """SIGKILL ``pid`` only if it is still a process of this cgroup (checked through a pidfd,
        so a pid the kernel gave to another process in the meantime is left alone)."""
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                still = any(line.rstrip().endswith("/" + self.rel) for line in f)
            if still:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except (ProcessLookupError, FileNotFoundError):
            pass
        finally:
            os.close(pidfd)

    def remove(self) -> None:
        """Remove the call's directories (and the sandbox parent when it is empty)."""
        for p in sorted(set(self.paths.values()), key=lambda x: len(x.parts), reverse=True):
            for attempt in range(200):
                try:
                    p.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or attempt == 199:
                        raise SandboxSetupError(f"cannot remove cgroup {p}: {exc}") from exc
                    time.sleep(0.002)


def remove_sandbox_dirs(layout: Layout, sandbox_id: str) -> None:
    """Remove ``corral/<sandbox_id>`` everywhere, killing anything still inside its call groups."""
    roots = set(layout.dirs.values())
    call_ids: set[str] = set()
    for root in roots:
        d = root / PARENT / sandbox_id
        if d.is_dir():
            call_ids.update(c.name for c in d.iterdir() if c.is_dir())
    for cid in call_ids:
        rel = f"{PARENT}/{sandbox_id}/{cid}"
        cg = CallCgroup(layout, rel, {c: r / rel for c, r in layout.dirs.items() if (r / rel).is_dir()})
        cg.kill()
        cg.remove()
    for root in roots:
        with contextlib.suppress(FileNotFoundError):
            (root / PARENT / sandbox_id).rmdir()
