"""Sandbox cost against a bare fork/exec measured in the same run (medians, p90, ratios).

Cases: a warm call (sync and async; back to back, and a model turn after the last), with
detection and monitors, create + destroy, create + first call + destroy, create from a many-file
workspace template, create from a large image root, and memory per idle sandbox with many live.

Run as root: .venv/bin/python benchmarks/bench_sandbox.py [--n 200] [--files 10000] [--image-mb 500]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import psutil

from corral import AsyncSandbox, Harness, Policy, Sandbox, TraceContext

# Calls of one trajectory are apart by at least a model turn; the sandbox prepares the next call then.
TURN_MS = 20


def _measure(fn: Callable[[], object], n: int, pause_s: float = 0.0) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(n):
        if pause_s:
            time.sleep(pause_s)
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


async def _ameasure(fn: Callable[[], Awaitable[object]], n: int, pause_s: float = 0.0) -> list[float]:
    await fn()
    out = []
    for _ in range(n):
        if pause_s:
            await asyncio.sleep(pause_s)
        t = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def _p90(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=10)[-1]


def _template(root: Path, files: int) -> Path:
    repo = root / "template"
    for i in range(files):
        d = repo / f"pkg{i // 500}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"mod{i}.py").write_text(f"X = {i}\n")
    return repo


def _image(root: Path, megabytes: int) -> Path:
    """A root filesystem of ``megabytes``: a static busybox, 20,000 small files and large blobs."""
    img = root / "image"
    (img / "bin").mkdir(parents=True)
    shutil.copy2(shutil.which("busybox") or "/bin/busybox", img / "bin" / "busybox")
    for applet in ("sh", "true", "ls", "cat"):
        os.symlink("busybox", img / "bin" / applet)
    (img / "etc").mkdir()
    (img / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    for i in range(20_000):
        d = img / "usr" / "lib" / f"py{i // 1000}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"m{i}.py").write_text("x = 1\n" * 20)
    pad = img / "opt" / "data"
    pad.mkdir(parents=True)
    block = os.urandom(1 << 20)
    for i in range(megabytes):
        (pad / f"blob{i}").write_bytes(block)
    return img


def _rss_kib(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_full_info().uss / 1024
        except psutil.Error:
            continue
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--image-mb", type=int, default=500)
    ap.add_argument("--live", type=int, default=1000)
    args = ap.parse_args()
    n = args.n
    # The sandbox alone (no collectors, no detection), then the full default harness.
    policy = Policy.default().with_overrides(
        monitoring={"process_exec": False, "resources": False}, detection={"enabled": False}
    )
    ctx = TraceContext(run_id="bench")
    bare = _measure(lambda: subprocess.run(["/bin/true"], check=True), n)
    rows: list[tuple[str, list[float]]] = [("bare fork/exec of true", bare)]
    turn = TURN_MS / 1000
    with Sandbox(policy, store=None) as sb:
        rows.append(("warm call of true (sync)", _measure(lambda: sb.run(["/bin/true"], ctx), n)))
        rows.append(
            (f"  {TURN_MS} ms after the last (sync)", _measure(lambda: sb.run(["/bin/true"], ctx), n, turn))
        )

    async def async_warm(pause_s: float) -> list[float]:
        async with AsyncSandbox(policy, store=None) as asb:
            return await _ameasure(lambda: asb.run(["/bin/true"], ctx), n, pause_s)

    rows.append(("warm call of true (async)", asyncio.run(async_warm(0.0))))
    rows.append((f"  {TURN_MS} ms after the last (async)", asyncio.run(async_warm(turn))))
    with Sandbox(Policy.default(), store=None) as sb:
        rows.append(
            ("  + detection, exec+resource monitors", _measure(lambda: sb.run(["/bin/true"], ctx), n))
        )
    harness = Harness(policy.with_overrides(environment={"images_allowed": ["dir:/var/tmp/"]}), store=None)

    def create_only() -> None:
        harness.sandbox().close()

    def cycle() -> None:
        with harness.sandbox() as s:
            s.run(["/bin/true"], ctx)

    rows.append(("create + destroy (no call)", _measure(create_only, n // 2)))
    rows.append(("create + first call + destroy", _measure(cycle, n // 2)))
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        template = _template(Path(tmp), args.files)
        img = _image(Path(tmp), args.image_mb)

        def from_template() -> None:
            harness.sandbox(workspace=template).close()

        def from_image() -> None:
            harness.sandbox(image=f"dir:{img}").close()

        rows.append((f"create from a {args.files}-file template", _measure(from_template, n // 4)))
        rows.append((f"create from a {args.image_mb} MB image", _measure(from_image, n // 4)))
        with harness.sandbox(workspace=template) as sb:
            rows.append(
                ("warm call in a template workspace", _measure(lambda: sb.run(["/bin/true"], ctx), n))
            )
    base = statistics.median(bare)
    print(f"{'case':<42}{'median ms':>10}{'p90 ms':>10}{'x bare':>9}{'+ms':>8}")
    for name, xs in rows:
        med = statistics.median(xs)
        print(f"{name:<42}{med:>10.2f}{_p90(xs):>10.2f}{med / base:>9.1f}{med - base:>8.2f}")
    # Memory per idle sandbox with many live: the harness process, its zygote and the kernel's share.
    me = psutil.Process()
    before_uss = _rss_kib([me.pid, *[c.pid for c in me.children(recursive=True)]])
    before_mem = psutil.virtual_memory().used
    live = [harness.sandbox() for _ in range(args.live)]
    after_uss = _rss_kib([me.pid, *[c.pid for c in me.children(recursive=True)]])
    after_mem = psutil.virtual_memory().used
    print(
        f"{args.live} idle sandboxes: {(after_uss - before_uss) / args.live:.1f} KiB each in processes, "
        f"{(after_mem - before_mem) / 1024 / args.live:.1f} KiB per sandbox node-wide (kernel included)"
    )
    for s in live:  # after a call each holds its next call's process until it has idled SPARE_IDLE_S
        s.run(["/bin/true"], ctx)
    time.sleep(0.5)
    spare_uss = _rss_kib([me.pid, *[c.pid for c in me.children(recursive=True)]])
    spare_mem = psutil.virtual_memory().used
    print(
        f"  after one call each: {(spare_uss - after_uss) / args.live:.1f} KiB more each in processes, "
        f"{(spare_mem - after_mem) / 1024 / args.live:.1f} KiB more per sandbox node-wide"
    )
    for s in live:
        s.close()
    harness.close()


if __name__ == "__main__":
    main()
