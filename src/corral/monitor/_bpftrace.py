"""The bpftrace program behind the exec collector, and how to start it.

Tracepoints only (kprobes are off on the target machines). Every record is
keyed by the ``cgroup`` builtin, the v2 cgroup id of the task, which is the
inode of its directory under the unified mount: that is how a record is tied
to a call. Processes in the collector's own cgroup are filtered in the kernel.
A marker probe on ``getpriority(MAGIC, token)`` lets the collector prove that
every record a CPU wrote before a point in time has been read. Every record
starts with its CPU and that CPU's probe sequence number (argument lines share
their exec's), so a record the kernel or the reader dropped shows up as a gap
and is reported, never silently missing.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import fcntl
import os
import resource
import secrets
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from corral.errors import CollectorError
from corral.monitor._execrecords import ArgvAssembler, ParseError, Take
from corral.sandbox._launcher import in_launcher

MARKER_WHICH = 0x7C0A11  # an invalid "which": the syscall fails with EINVAL and has no effect


def new_marker() -> int:
    """A marker "which" of this collector alone. Every bpftrace on the node sees every marker
    syscall, so collectors (in this process or others) must not answer each other's syncs."""
    return MARKER_WHICH + secrets.randbelow(1 << 24) * 8


TRACEFS = Path("/sys/kernel/tracing")

_SCRIPT = r"""
tracepoint:syscalls:sys_enter_getpriority /args->which == MARKER/ {
  $s = @seq[cpu]; @seq[cpu] = $s + 1;
  printf("S %d %llu %llu %d %d\n", cpu, $s, nsecs, cpu, args->who);
}
tracepoint:sched:sched_process_fork /cgroup != $1/ {
  $s = @seq[cpu]; @seq[cpu] = $s + 1;
  printf("K %d %llu %llu %d %d %llu\n", cpu, $s, nsecs, pid, args->child_pid, cgroup);
}
tracepoint:syscalls:sys_enter_execve, tracepoint:syscalls:sys_enter_execveat /cgroup != $1/ {
  $s = @seq[cpu]; @seq[cpu] = $s + 1;
  printf("E %d %llu %llu %d %llu %s\n", cpu, $s, nsecs, tid, cgroup, str(args->filename));
  $i = 0;
  $go = 1;
  unroll(MAXARGS) {
    if ($go) {
      $p = *(uint64 *)uptr(args->argv + $i);
      if ($p == 0) { $go = 0; } else { printf("A %d %llu %d %s\n", cpu, $s, tid, str(uptr($p))); $i++; }
    }
  }
  printf("F %d %llu %d %d %d\n", cpu, $s, tid, $i, $go);
}
tracepoint:syscalls:sys_exit_execve, tracepoint:syscalls:sys_exit_execveat
  /cgroup != $1 && (args->ret == -13 || args->ret == -1)/ {
  $s = @seq[cpu]; @seq[cpu] = $s + 1;
  printf("R %d %llu %llu %d %llu %d\n", cpu, $s, nsecs, tid, cgroup, args->ret);
}
tracepoint:sched:sched_process_exec /cgroup != $1/ {
  $s = @seq[cpu]; @seq[cpu] = $s + 1;
  printf("X %d %llu %llu %d %d %d %d %llu %s\n", cpu, $s, nsecs, pid, args->old_pid,
         curtask->real_parent->tgid, uid, cgroup, str(args->filename));
}
tracepoint:sched:sched_process_exit /cgroup != $1 && pid == tid/ {
  $s = @seq[cpu]; @seq[cpu] = $s + 1;
  printf("Q %d %llu %llu %d %llu %d %llu\n", cpu, $s, nsecs, pid, cgroup, curtask->exit_code,
         curtask->se.sum_exec_runtime + curtask->signal->sum_sched_runtime);
}
END { clear(@seq); }
"""


def script(max_args: int, uid_range: tuple[int, int] | None = None, marker: int = MARKER_WHICH) -> str:
    """The program; with ``uid_range`` only tasks of those uids are traced (filtered in the kernel)."""
    text = _SCRIPT.replace("MARKER", str(marker)).replace("MAXARGS", str(max_args))
    if uid_range is not None:
        lo, hi = uid_range
        text = text.replace("/cgroup != $1", f"/uid >= {int(lo)} && uid < {int(hi)} && cgroup != $1")
    return text


def own_cgroup_id() -> int:
    """The v2 cgroup id of this process (filtered out in the kernel: the harness's own execs)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            rel = line[3:].lstrip("/")
            for root in (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup")):
                if (root / "cgroup.procs").exists():
                    return (root / rel).stat().st_ino
    raise CollectorError(
        "no cgroup v2 hierarchy found: the exec collector attributes processes by v2 cgroup id"
    )


def ensure_tracefs() -> None:
    if (TRACEFS / "events").is_dir():
        return
    try:
        subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACEFS)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise CollectorError(f"cannot mount tracefs at {TRACEFS} (needed by bpftrace): {exc}") from exc


_PR_SET_PDEATHSIG = 1


def _child_setup() -> None:
    """In the forked tracer: die with the harness (no orphaned tracer), and lift the memlock limit."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # Kernels >= 5.11 account BPF memory by cgroup; the limit matters only on older ones.
    try:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    except (OSError, ValueError):
        _soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
        with contextlib.suppress(OSError, ValueError):
            resource.setrlimit(resource.RLIMIT_MEMLOCK, (hard, hard))


def spawn(
    max_args: int,
    strlen: int,
    exclude_cgroup: int,
    bpftrace: str = "bpftrace",
    uid_range: tuple[int, int] | None = None,
    marker: int = MARKER_WHICH,
) -> BpftraceTracer:
    """bpftrace started with the program (CollectorError when it cannot be)."""
    exe = shutil.which(bpftrace)
    if exe is None:
        raise CollectorError(f"{bpftrace} not found: the exec collector needs it (apt install bpftrace)")
    ensure_tracefs()
    # Ring buffers absorb bursts while the reader catches up: 64 MiB in all, 1-16 MiB per CPU.
    pages = max(256, min(4096, (64 << 20) // 4096 // max(1, os.cpu_count() or 1)))
    env = {**os.environ, "BPFTRACE_STRLEN": str(strlen), "BPFTRACE_PERF_RB_PAGES": str(pages)}
    argv = [exe, "-B", "line", "-f", "json", "-e", script(max_args, uid_range, marker), str(exclude_cgroup)]
    try:
        # Started from the launcher thread: its parent-death signal then follows the whole process.
        proc = in_launcher(
            lambda: subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                errors="surrogateescape",
                env=env,
                preexec_fn=_child_setup,
            )
        )
    except OSError as exc:
        raise CollectorError(f"cannot start {exe}: {exc}") from exc
    if proc.stdout is not None:  # a deeper pipe, so a slow reader stalls bpftrace less
        with contextlib.suppress(OSError):
            fcntl.fcntl(proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
    return BpftraceTracer(proc)


class BpftraceTracer:
    """A running bpftrace with the program (``spawn``); ``pump`` reads its records until it ends."""

    name = "bpftrace"
    ordered = False  # a perf buffer per CPU: each CPU's records are ordered only among themselves

    def read_now(self) -> bool:
        """Its records come through a pipe that only ``pump``'s thread reads."""
        return False

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self._proc = proc
        self._stderr: collections.deque[str] = collections.deque(maxlen=50)
        self._stderr_thread = threading.Thread(
            target=self._read_stderr, name="corral-exec-stderr", daemon=True
        )
        self._stderr_thread.start()

    def _read_stderr(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            if "RLIMIT_MEMLOCK" not in line:
                self._stderr.append(line.strip())

    def pump(self, take: Take, bad: Callable[[str], None], strlen: int) -> str | None:
        """Read records until bpftrace exits; the reason when it was not stopped."""
        assert self._proc.stdout is not None
        asm = ArgvAssembler(strlen)
        for line in self._proc.stdout:
            try:
                asm.deliver(asm.feed(line), take)
            except ParseError as exc:
                bad(str(exc))
        self._stderr_thread.join(1)
        return f"bpftrace exited: {' | '.join(self._stderr) or 'no message'}"

    def stop(self, *, wait: bool = True) -> None:
        """Killed, not terminated: every call was drained when it finished, and bpftrace's own
        shutdown (its END probe) would add another quarter of a second."""
        if self._proc.poll() is None:
            self._proc.kill()
            if wait:
                self._proc.wait()
