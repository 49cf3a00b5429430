"""Cold start of the command line: whole-process wall time and peak RSS, medians of fresh processes.

Each figure is one new process, started with posix_spawn and reaped with wait4 (its own peak RSS),
so nothing stays warm in this one. Baselines measured in the same run: the bare interpreter
(``python -c pass``), bubblewrap running ``true`` with the namespaces Corral uses, and Anthropic's
sandbox-runtime (``srt -c true``) when it is on PATH. ``corral run -- true`` is measured twice: in
this process's own sandbox (``--local``, the default policy, exec monitoring and detection on), and
through a node agent (``corral serve``, started here on a private socket and state directory).

Usage: .venv/bin/python benchmarks/bench_cold_start.py [RUNS]   (as root: sandboxes need it)
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
CORRAL = str(BIN / "corral")


def one(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one fresh process running ``argv``."""
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        fa = [
            (os.POSIX_SPAWN_DUP2, devnull, 0),
            (os.POSIX_SPAWN_DUP2, devnull, 1),
            (os.POSIX_SPAWN_DUP2, devnull, 2),
        ]
        t = time.perf_counter()
        pid = os.posix_spawnp(argv[0], argv, env, file_actions=fa)
        _, status, usage = os.wait4(pid, 0)
        wall = time.perf_counter() - t
    finally:
        os.close(devnull)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {os.waitstatus_to_exitcode(status)}")
    return wall, usage.ru_maxrss / 1024


def measure(name: str, argv: list[str], env: dict[str, str], runs: int) -> tuple[float, float]:
    one(argv, env)  # page cache and bytecode warm, as on a node that ran it before
    samples = [one(argv, env) for _ in range(runs)]
    wall = statistics.median(s[0] for s in samples)
    rss = statistics.median(s[1] for s in samples)
    print(f"{name:44} {wall * 1000:8.1f} ms {rss:7.1f} MiB", flush=True)
    return wall, rss


def start_agent(tmp: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    sock = tmp / "agent.sock"
    proc = subprocess.Popen(
        [CORRAL, "serve", "--socket", str(sock)],
        env={**env, "CORRAL_HOME": str(tmp / "agent-home")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("corral serve did not start")
        time.sleep(0.1)
    return proc


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 9
    tmp = Path(tempfile.mkdtemp(prefix="corral-bench-cold-"))
    base_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    base_env["CORRAL_HOME"] = str(tmp / "home")
    base_env["CORRAL_STATE_DIR"] = str(tmp / "state")
    no_agent = {**base_env, "CORRAL_SOCKET": str(tmp / "none.sock")}
    print(f"{'whole process, median of ' + str(runs):44} {'wall':>11} {'peak RSS':>11}")
    floor, _ = measure("python -c pass (floor)", [sys.executable, "-c", "pass"], base_env, runs)
    bwrap = shutil.which("bwrap")
    if bwrap:
        ns = ["--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev"]
        measure("bwrap ... true (baseline)", [bwrap, *ns, "true"], base_env, runs)
    srt = shutil.which("srt")
    srt_wall = measure("srt -c true (baseline)", [srt, "-c", "true"], base_env, runs)[0] if srt else None
    imp, _ = measure("import corral", [sys.executable, "-c", "import corral"], base_env, runs)
    measure("corral --help", [CORRAL, "--help"], no_agent, runs)
    default = Path(__file__).resolve().parents[1] / "src" / "corral" / "data" / "default.yaml"
    measure("corral policy check (default policy)", [CORRAL, "policy", "check", str(default)], no_agent, runs)
    line = tmp / "one.jsonl"
    line.write_text('{"command": "git status"}\n')
    measure("corral scan (one line)", [CORRAL, "scan", str(line)], no_agent, runs)
    local, _ = measure("corral run --local -- true", [CORRAL, "run", "--local", "--", "true"], no_agent, runs)
    agent = start_agent(tmp, base_env)
    try:
        via = {**base_env, "CORRAL_SOCKET": str(tmp / "agent.sock")}
        argv = [CORRAL, "run", "--", "true"]
        remote, _ = measure("corral run -- true (node agent running)", argv, via, runs)
    finally:
        agent.terminate()
        agent.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"import corral / python floor = {imp / floor:.2f}")
    print(f"corral run: local / via agent = {local / remote:.2f}")
    if srt_wall is not None:
        print(f"corral run via agent / srt = {remote / srt_wall:.2f}; local / srt = {local / srt_wall:.2f}")


if __name__ == "__main__":
    main()
