"""Overhead of monitoring (exec + resource collectors) on two workloads, on vs off, as ratios.

Each workload runs in a fresh call cgroup (v2 unified + v1 controllers), as the sandbox does.
  exec-heavy:   1,000 short commands (`/bin/true` in a shell loop)
  compile-like: `make -j2` of 40 small C files with gcc, then link
Runs alternate off/on; the medians and on/off ratios are printed. Also counts exec events seen
(expected: every one). Usage (root): .venv/bin/python benchmarks/bench_monitor.py [RUNS]
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from corral.events import Event, ProcessStart, TraceContext
from corral.monitor import ExecCollector, ResourceCollector
from corral.sandbox._scope import CallScope

ROOT = Path("/sys/fs/cgroup")
TOP = f"corral-bench-{uuid.uuid4().hex[:6]}"


def make_scope() -> CallScope:
    call = uuid.uuid4().hex[:10]
    paths = {}
    for c in ("unified", "memory", "pids", "cpu", "cpuacct"):
        if (ROOT / c / "cgroup.procs").exists():
            p = ROOT / c / TOP / call
            p.mkdir(parents=True)
            paths[c] = p
    return CallScope(
        "bench", TraceContext(tool_call_id=call), paths, paths["unified"].stat().st_ino, 0, time.time_ns()
    )


def remove(scope: CallScope) -> None:
    for p in scope.cgroup_paths.values():
        for _ in range(100):
            try:
                p.rmdir()
                break
            except OSError:
                time.sleep(0.01)


def run(scope: CallScope, argv: list[str], cwd: str | None = None) -> None:
    procs = [p / "cgroup.procs" for p in scope.cgroup_paths.values()]

    def enter() -> None:
        for p in procs:
            with open(p, "w") as f:
                f.write("0")

    subprocess.run(argv, preexec_fn=enter, check=True, cwd=cwd, stdout=subprocess.DEVNULL)


def exec_heavy(scope: CallScope) -> None:
    run(scope, ["sh", "-c", "i=0; while [ $i -lt 1000 ]; do /bin/true; i=$((i+1)); done"])


def compile_like(src: Path) -> Callable[[CallScope], None]:
    def work(scope: CallScope) -> None:
        run(scope, ["make", "-s", "-B", "-j2"], cwd=str(src))

    return work


def make_project(d: Path) -> Path:
    for i in range(40):
        body = "\n".join(f"static int f{j}(int x) {{ return x * {j} + {i}; }}" for j in range(60))
        calls = " + ".join(f"f{j}(x)" for j in range(60))
        (d / f"m{i}.c").write_text(f"{body}\nint g{i}(int x) {{ return {calls}; }}\n")
    decls = "".join(f"int g{i}(int);" for i in range(40))
    (d / "main.c").write_text(
        decls + "int main(void){return (" + "+".join(f"g{i}(1)" for i in range(40)) + ")&1;}\n"
    )
    objs = " ".join(f"m{i}.o" for i in range(40)) + " main.o"
    (d / "Makefile").write_text(f"prog: {objs}\n\tgcc -o prog {objs}\n%.o: %.c\n\tgcc -O1 -c $< -o $@\n")
    return d


def timed(work: Callable[[CallScope], None], observers: list[ExecCollector | ResourceCollector]) -> float:
    scope = make_scope()
    try:
        t = time.perf_counter()
        for o in observers:
            o.call_started(scope)
        work(scope)
        for o in observers:
            o.call_finished(scope)
        return time.perf_counter() - t
    finally:
        remove(scope)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    events: list[Event] = []
    with tempfile.TemporaryDirectory() as tmp, ExecCollector(events.append) as ex:
        rc = ResourceCollector(events.append, interval_s=0.1)
        src = make_project(Path(tmp))
        for name, work in (
            ("exec-heavy (1,000 commands)", exec_heavy),
            ("compile-like (make -j2, 41 files)", compile_like(src)),
        ):
            timed(work, [])  # warm caches
            off, on = [], []
            for _ in range(runs):
                off.append(timed(work, []))
                before = len(events)
                on.append(timed(work, [ex, rc]))
                execs = sum(1 for e in events[before:] if isinstance(e.data, ProcessStart))
            mo, mn = statistics.median(off), statistics.median(on)
            ratio = f"on/off = {mn / mo:.3f} ({runs} runs)"
            print(f"{name}: off {mo * 1000:.0f} ms, on {mn * 1000:.0f} ms, {ratio}; execs seen: {execs}")
        rc.close()
    for c in ("unified", "memory", "pids", "cpu", "cpuacct"):
        with contextlib.suppress(OSError):
            (ROOT / c / TOP).rmdir()


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("bench_monitor needs root (cgroups, bpftrace)")
    main()
