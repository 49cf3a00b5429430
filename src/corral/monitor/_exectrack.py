"""Exec tracking as a pure state machine: time-ordered records in, events out.

No I/O here: the collector feeds records (sorted by kernel time) and gets
``ProcessStart``/``ProcessExit``/``FileDenied`` payloads attributed to the call
whose cgroup the process was in. Records from cgroups not registered are
ignored (counted). Parent image and command line come from what was seen in
the same cgroup: a fork inherits its parent's, an exec replaces them.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from corral.events import FileDenied, Payload, ProcessExit, ProcessStart
from corral.monitor._execrecords import ExecDone, ExecEnter, ExecFailed, Exit, Fork, Marker, Record


@dataclass(frozen=True)
class _Proc:
    image: str | None
    cmdline: str | None
    cwd: str | None
    cgroup: int
    # The creator (the process that forked this one) as it was then; kept across execs and
    # reparenting, so a job started by a subshell that already exited still names its parent.
    ppid: int | None = None
    parent_image: str | None = None
    parent_cmdline: str | None = None


@dataclass(frozen=True)
class Attributed:
    """A payload and the cgroup (hence call) it belongs to, at kernel time ``ns``."""

    ns: int
    cgroup: int
    payload: Payload


class ExecTracker:
    def __init__(self) -> None:
        self._cgroups: set[int] = set()
        self._procs: dict[int, _Proc] = {}
        self._pending: dict[int, ExecEnter] = {}
        self.ignored = 0

    def register(self, cgroup: int) -> None:
        self._cgroups.add(cgroup)

    def unregister(self, cgroup: int) -> None:
        self._cgroups.discard(cgroup)
        self._procs = {p: v for p, v in self._procs.items() if v.cgroup != cgroup}
        self._pending = {t: v for t, v in self._pending.items() if v.cgroup != cgroup}

    def feed(self, rec: Record) -> Attributed | None:
        if isinstance(rec, Marker):
            return None
        if rec.cgroup not in self._cgroups:
            self.ignored += 1
            return None
        if isinstance(rec, ExecEnter):
            self._pending[rec.tid] = rec
            return None
        if isinstance(rec, Fork):
            parent = self._procs.get(rec.parent)
            if parent is not None:
                self._procs[rec.child] = _Proc(
                    parent.image,
                    parent.cmdline,
                    parent.cwd,
                    rec.cgroup,
                    rec.parent,
                    parent.image,
                    parent.cmdline,
                )
            return None
        if isinstance(rec, ExecDone):
            return self._exec(rec)
        if isinstance(rec, ExecFailed):
            enter = self._pending.pop(rec.tid, None)
            me = self._procs.get(rec.tid)
            target = enter.filename if enter is not None else "?"
            name = errno.errorcode.get(rec.errno, str(rec.errno))
            payload = FileDenied(
                TargetFilename=target, operation=f"exec ({name})", Image=me.image if me else None
            )
            return Attributed(rec.ns, rec.cgroup, payload)
        return self._exit(rec)

    def _exec(self, rec: ExecDone) -> Attributed:
        enter = self._pending.pop(rec.old_pid, None)
        argv = list(enter.argv) if enter is not None else []
        truncated = enter is None or enter.truncated
        if truncated and rec.cmdline:  # /proc had the full one while the process lived
            argv, truncated = list(rec.cmdline), False
        me = self._procs.get(rec.old_pid) or self._procs.get(rec.pid)
        if me is not None and me.ppid is not None:
            ppid, parent_image, parent_cmdline = me.ppid, me.parent_image, me.parent_cmdline
        else:
            parent = self._procs.get(rec.ppid)
            ppid = rec.ppid
            parent_image, parent_cmdline = (parent.image, parent.cmdline) if parent else (None, None)
        cwd = rec.cwd or (me.cwd if me else None)
        image = rec.filename
        if not os.path.isabs(image) and cwd:
            image = os.path.normpath(os.path.join(cwd, image))
        cmdline = " ".join(argv) if argv else image
        payload = ProcessStart(
            ProcessId=rec.pid,
            ParentProcessId=ppid,
            Image=image,
            CommandLine=cmdline,
            argv=argv,
            ParentImage=parent_image,
            ParentCommandLine=parent_cmdline,
            User=str(rec.uid),
            CurrentDirectory=cwd,
            argv_truncated=truncated,
        )
        self._procs.pop(rec.old_pid, None)
        self._procs[rec.pid] = _Proc(image, cmdline, cwd, rec.cgroup, ppid, parent_image, parent_cmdline)
        return Attributed(rec.ns, rec.cgroup, payload)

    def _exit(self, rec: Exit) -> Attributed:
        me = self._procs.pop(rec.pid, None)
        sig = rec.status & 0x7F
        payload = ProcessExit(
            ProcessId=rec.pid,
            Image=me.image if me else None,
            exit_code=None if sig else (rec.status >> 8) & 0xFF,
            signal=sig or None,
            cpu_time_s=rec.cpu_ns / 1e9,
        )
        return Attributed(rec.ns, rec.cgroup, payload)
