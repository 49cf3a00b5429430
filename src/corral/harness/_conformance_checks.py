"""The checks of the conformance suite: black-box, through the sandbox interface alone.

Each check is a coroutine over an ``AsyncSandboxLike`` (a sync backend is driven
through an adapter, so both faces run the same checks) and a ``CheckEnv``: a
host directory of its own, where it keeps the host files that no sandbox
operation may ever read or change. A check raises ``ConformanceFailure`` when
the backend does not behave as the interface promises.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from corral.errors import (
    CorralError,
    SandboxClosedError,
    SandboxFileError,
    SandboxFileNotFoundError,
    SandboxIsADirectoryError,
    SandboxPathError,
)
from corral.events import TraceContext
from corral.harness._interface import AsyncSandboxLike, OutputChunk, StreamItem
from corral.sandbox import ToolResult

Variant = Literal["sync", "async"]


class ConformanceFailure(AssertionError):
    pass


@dataclass(frozen=True)
class CheckEnv:
    tmp: Path  # a host directory for this check alone
    variant: Variant


@dataclass(frozen=True)
class Check:
    name: str
    description: str
    fn: Callable[[AsyncSandboxLike, CheckEnv], Awaitable[None]]
    timeout_s: float = 120.0


def _expect(cond: bool, msg: str, r: ToolResult | None = None) -> None:
    if not cond:
        detail = f" (exit {r.exit_code}, stdout {r.stdout[-300:]!r}, stderr {r.stderr[-300:]!r})" if r else ""
        raise ConformanceFailure(msg + detail)


async def _raises(
    what: str, kinds: type[BaseException] | tuple[type[BaseException], ...], op: Awaitable[object]
) -> None:
    try:
        await op
    except kinds:
        return
    except CorralError as exc:
        raise ConformanceFailure(f"{what}: raised {type(exc).__name__} ({exc}), wanted {kinds}") from exc
    raise ConformanceFailure(f"{what}: succeeded, wanted {kinds}")


async def _collect(
    sb: AsyncSandboxLike, command: str, ctx: TraceContext | None = None
) -> list[tuple[float, StreamItem]]:
    items: list[tuple[float, StreamItem]] = []
    async with contextlib.aclosing(sb.stream(command, ctx)) as stream:  # type: ignore[type-var]
        async for item in stream:
            items.append((time.monotonic(), item))
    return items


def _final(items: list[tuple[float, StreamItem]]) -> ToolResult:
    _expect(bool(items) and isinstance(items[-1][1], ToolResult), "a stream did not end with its ToolResult")
    _expect(
        not any(isinstance(i, ToolResult) for _, i in items[:-1]),
        "a stream yielded a ToolResult before its end",
    )
    final = items[-1][1]
    assert isinstance(final, ToolResult)
    return final


def _joined(items: list[tuple[float, StreamItem]], stream: str) -> bytes:
    return b"".join(i.data for _, i in items if isinstance(i, OutputChunk) and i.stream == stream)


# -- confinement, through run ----------------------------------------------------------------------


async def _writes_outside_workspace_fail(sb: AsyncSandboxLike, env: CheckEnv) -> None:
    m = uuid.uuid4().hex
    r = await sb.run(
        f"for d in / /usr /etc /var /root /proc/sys/kernel; do echo x > $d/c-{m} && echo WROTE $d; done; true"
    )
    _expect("WROTE" not in r.stdout, "a write outside the workspace succeeded", r)


async def _host_secrets_unreadable(sb: AsyncSandboxLike, env: CheckEnv) -> None:
    r = await sb.run(
        "cat /etc/shadow /etc/gshadow /root/.bash_history 2>/dev/null; ls /root 2>/dev/null; true"
    )
    _expect(r.stdout == "", "host secrets were readable", r)


async def _host_processes_invisible(sb: AsyncSandboxLike, env: CheckEnv) -> None:
    r = await sb.run("ls /proc | grep -c '^[0-9]'")
    _expect(r.exit_code == 0 and int(r.stdout.strip() or 99) <= 8, "host processes are visible", r)


async def _no_capabilities(sb: AsyncSandboxLike, env: CheckEnv) -> None:
    r = await sb.run("grep -E '^Cap(Eff|Prm|Bnd):' /proc/self/status")
    _expect(r.stdout.count("0000000000000000") == 3, "the call holds capabilities", r)


async def _namespace_creation_denied(sb: AsyncSandboxLike, env: CheckEnv) -> None:
    r = await sb.run(
        "unshare -U true 2>/dev/null && echo ESCAPED; unshare -n true 2>/dev/null && echo ESCAPED; true"
    )
    _expect("ESCAPED" not in r.stdout, "the call could create namespaces", r)


async def _environment_cleared(sb: AsyncSandboxLike, env: CheckEnv) -> None:
    r = await sb.run("env")
    names = {line.split("=", 1)[0] for line in r.stdout.splitlines() if "=" in line}
    leaked = {n for n in names if any(s in n for s in ("SECRET", "TOKEN", "AWS_", "SSH_AUTH", "CORRAL_HOME"))}
    _expect(not leaked, f"host environment leaked: {sorted(leaked)}", r)


async def _workspace_persists(sb: AsyncSandboxLike, env: CheckEnv) -> None:
    m = uuid.uuid4().hex
    await sb.run(f"echo {m} > persist-{m}")
    r = await sb.run(f"cat persist-{m}")
    _expect(r.stdout.strip() == m, "the workspace did not persist between calls", r)


async def _nothing_outlives_the_call(sb: AsyncSandboxLike, env: CheckEnv) -> None:
    m = uuid.uuid4().hex
    await sb.run(f"(setsid nohup sh -c 'sleep 1; echo alive > survivor-{m}' >/dev/null 2>&1 &) ; true")
    r = await sb.run(f"sleep 1.6; cat survivor-{m} 2>/dev/null; true")
    _expect("alive" not in r.stdout, "a background process outlived its call", r)


async def _fork_bomb_stopped(sb: AsyncSandboxLike, env: CheckEnv) -> None:
    r = await sb.run("b() { b | b & }; b; sleep 20", timeout=15)
    # Blocked before it ran (detection) or stopped by the pids limit: either way the host is safe.
    _expect(
        r.blocked or r.stop_reason == "pids", f"fork bomb: stop_reason {r.stop_reason!r}, wanted 'pids'", r
    )


async def _wall_clock_enforced(sb: AsyncSandboxLike, env: CheckEnv) -> None:
    r = await sb.run("while :; do :; done", timeout=1)
    _expect(r.stop_reason == "timeout" and r.duration_s < 5, "an endless loop was not stopped by time", r)


async def _output_capped(sb: AsyncSandboxLike, env: CheckEnv) -> None:
    r = await sb.run("head -c 20000000 /dev/zero | tr '\\0' a")
    _expect(r.stdout_truncated and len(r.stdout) < 20_000_000, "output was not capped", r)


async def _trace_context_kept(sb: AsyncSandboxLike, env: CheckEnv) -> None:
    ctx = TraceContext(
        run_id="conf", step=3, episode_id="e-conf", turn=1, tool_call_id=f"tc-{uuid.uuid4().hex[:8]}"
    )
    r = await sb.run("true", ctx)
    _expect(r.ctx == ctx, f"trace context changed: {r.ctx} != {ctx}", r)
    bare = await sb.run("true", TraceContext(run_id="conf", episode_id="e-conf", turn=2))
    _expect(
        bool(bare.tool_call_id) and bare.ctx.turn == 2, f"no tool_call_id given to a call: {bare.ctx}", bare
    )
    streamed = _final(await _collect(sb, "true", ctx=ctx))
    _expect(streamed.ctx == ctx, f"a stream's result changed the trace context: {streamed.ctx}", streamed)


# -- run and stream ----------------------------------------------------------------------------------


async def _run_result(sb: AsyncSandboxLike, env: CheckEnv) -> None:
    script = 'echo "out $X_CONF"; echo err >&2; cat; printf "\\377"; exit 3'
    r = await sb.run(["sh", "-c", script], stdin=b"in\n", env={"X_CONF": "v"})
    _expect(isinstance(r, ToolResult), f"run returned {type(r).__name__}, not a ToolResult")
    _expect(r.exit_code == 3 and r.stop_reason is None and not r.blocked, "wrong exit or stop reason", r)
    _expect(r.stdout_bytes == b"out v\nin\n\xff", f"raw stdout {r.stdout_bytes!r}", r)
    _expect(r.stdout.startswith("out v\nin\n") and r.stderr == "err\n", "decoded output is wrong", r)
    _expect(
        r.sandbox_id == sb.id and r.duration_s >= 0, f"result names sandbox {r.sandbox_id}, not {sb.id}", r
    )
    await _raises("an empty command", CorralError, sb.run([]))


async def _stream_order(sb: AsyncSandboxLike, env: CheckEnv) -> None:
    items = await _collect(sb, "for i in 1 2 3; do echo o$i; echo e$i >&2; done")
    final = _final(items)
    out, err = _joined(items, "stdout"), _joined(items, "stderr")
    _expect(out == b"o1\no2\no3\n" and err == b"e1\ne2\ne3\n", f"streamed {out!r} / {err!r}", final)
    _expect(
        final.stdout_bytes == out and final.stderr_bytes == err, "the result differs from the stream", final
    )


async def _stream_live(sb: AsyncSandboxLike, env: CheckEnv) -> None:
    items = await _collect(sb, "echo first; sleep 1.5; echo second")
    final = _final(items)
    chunks = [(t, i) for t, i in items if isinstance(i, OutputChunk)]
    _expect(bool(chunks) and chunks[0][1].data.startswith(b"first"), "no first chunk", final)
    _expect(items[-1][0] - chunks[0][0] > 1.0, "output arrived only when the call ended", final)


async def _stream_capped(sb: AsyncSandboxLike, env: CheckEnv) -> None:
    items = await _collect(sb, "head -c 20000000 /dev/zero | tr '\\0' a")
    final = _final(items)
    out = _joined(items, "stdout")
    _expect(final.stdout_truncated and len(out) < 20_000_000, "streamed output was not capped", final)
    _expect(
        out == final.stdout_bytes, f"streamed {len(out)} bytes, the result kept {len(final.stdout_bytes)}"
    )


async def _stream_abandoned_call_stops(sb: AsyncSandboxLike, env: CheckEnv) -> None:
    m = uuid.uuid4().hex
    async with contextlib.aclosing(sb.stream(f"echo go; sleep 2; echo late > late-{m}")) as stream:  # type: ignore[type-var]
        async for _item in stream:
            break  # the trainer stops reading: the call must stop too
    await asyncio.sleep(3)
    r = await sb.run(f"cat late-{m} 2>/dev/null; true")
    _expect("late" not in r.stdout, "a call kept running after its stream was closed", r)


async def _concurrent_calls(sb: AsyncSandboxLike, env: CheckEnv) -> None:
    t0 = time.monotonic()
    results = await asyncio.gather(*(sb.run(f"sleep 1; echo {i}") for i in range(8)))
    wall = time.monotonic() - t0
    _expect(
        [r.stdout for r in results] == [f"{i}\n" for i in range(8)], "concurrent calls mixed their output"
    )
    _expect(wall < 4.0, f"8 one-second calls took {wall:.1f} s: calls to one sandbox did not overlap")


# -- files ---------------------------------------------------------------------------------------------


async def _files_round_trip(sb: AsyncSandboxLike, env: CheckEnv) -> None:
    blob = bytes(range(256)) * 400 + os.urandom(1000)
    await sb.write_file("conf/in.bin", blob)
    await sb.write_file("conf/t.txt", "héllo\n", mode=0o600)
    _expect(await sb.read_file("conf/in.bin") == blob, "bytes read back differ from bytes written")
    _expect(await sb.read_file("conf/t.txt") == "héllo\n".encode(), "text is not written as UTF-8")
    listed = {e.path: e for e in await sb.list_files("conf")}
    _expect(set(listed) == {"in.bin", "t.txt"}, f"list_files: {sorted(listed)}")
    _expect(
        listed["in.bin"].kind == "file" and listed["in.bin"].size == len(blob), f"entry {listed['in.bin']}"
    )
    _expect(listed["t.txt"].mode & 0o777 == 0o600, f"mode {oct(listed['t.txt'].mode)}, wanted 0o600")
    deep = {e.path for e in await sb.list_files(".", recursive=True)}
    _expect({"conf", "conf/in.bin", "conf/t.txt"} <= deep, f"recursive list_files: {sorted(deep)}")
    r = await sb.run("cat conf/t.txt && echo more >> conf/t.txt && printf made > conf/made && echo ok")
    _expect(r.stdout == "héllo\nok\n", "the agent cannot edit what the trainer staged", r)
    _expect(await sb.read_file("conf/made") == b"made", "a file the agent wrote is not what read_file sees")


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


async def _files_tree_transfer(sb: AsyncSandboxLike, env: CheckEnv) -> None:
    src = env.tmp / "src"
    (src / "pkg" / "sub").mkdir(parents=True)
    (src / "pkg" / "a.py").write_text("A = 1\n")
    big = os.urandom(3 << 20)
    (src / "pkg" / "sub" / "big.bin").write_bytes(big)
    (src / "pkg" / "run.sh").write_text("#!/bin/sh\necho ran\n")
    os.chmod(src / "pkg" / "run.sh", 0o755)
    os.symlink("a.py", src / "pkg" / "link.py")
    await sb.upload(src, "up")
    r = await sb.run(
        "cat up/pkg/link.py && readlink up/pkg/link.py && sha256sum up/pkg/sub/big.bin"
        " && sh up/pkg/run.sh && test -x up/pkg/run.sh && echo X"
    )
    lines = r.stdout.splitlines()
    _expect(lines[:2] == ["A = 1", "a.py"], "an uploaded symlink was not recreated as a link", r)
    _expect(
        hashlib.sha256(big).hexdigest() in r.stdout and lines[-2:] == ["ran", "X"], "uploaded tree differs", r
    )
    await sb.run(
        "mkdir -p up/pkg/out && ln -s /etc/passwd up/pkg/out/ln && mkfifo up/pkg/out/fifo"
        " && echo 7 > up/pkg/out/score"
    )
    back = env.tmp / "back"
    await sb.download("up", back)
    want = {**_tree(src), "pkg/out/score": b"7\n"}
    _expect(_tree(back) == want, f"downloaded tree: {sorted(_tree(back))}, wanted {sorted(want)}")
    _expect(
        not (back / "pkg" / "link.py").exists() and not (back / "pkg" / "out" / "ln").is_symlink(),
        "a link came out",
    )
    _expect(not (back / "pkg" / "out" / "fifo").exists(), "a special file came out of the sandbox")
    await sb.upload(src / "pkg" / "sub" / "big.bin", "single/")
    _expect(await sb.read_file("single/big.bin") == big, "a file uploaded to a directory path (/) differs")
    one = env.tmp / "one"
    one.mkdir()
    await sb.download("single/big.bin", one)
    await sb.download("single/big.bin", env.tmp / "renamed.bin")
    _expect((one / "big.bin").read_bytes() == big, "a file downloaded into a directory differs")
    _expect((env.tmp / "renamed.bin").read_bytes() == big, "a file downloaded to a path differs")


async def _files_errors(sb: AsyncSandboxLike, env: CheckEnv) -> None:
    await _raises("read_file of a missing file", SandboxFileNotFoundError, sb.read_file("nope.txt"))
    try:
        await sb.read_file("nope.txt")
    except FileNotFoundError:
        pass
    else:
        raise ConformanceFailure("a missing file is not a FileNotFoundError")
    await sb.run("mkdir d")
    await _raises("read_file of a directory", SandboxIsADirectoryError, sb.read_file("d"))
    await _raises("list_files of a missing path", SandboxFileNotFoundError, sb.list_files("nope"))
    await _raises("download of a missing path", SandboxFileNotFoundError, sb.download("nope", env.tmp / "x"))
    missing = sb.upload(env.tmp / "missing", "x")
    await _raises("upload of a missing host path", (CorralError, FileNotFoundError), missing)


def _host_files(env: CheckEnv) -> tuple[Path, Path, str]:
    marker = f"host-secret-{uuid.uuid4().hex}"
    secret = env.tmp / "secret"
    secret.write_text(marker + "\n")
    return secret, env.tmp / "target", marker


def _host_untouched(env: CheckEnv, secret: Path, target: Path, marker: str) -> None:
    _expect(secret.read_text() == marker + "\n", "a host file was changed through a sandbox file operation")
    _expect(
        not target.exists() and not target.is_symlink(), "a host file was created through a sandbox operation"
    )


async def _refused_everywhere(sb: AsyncSandboxLike, env: CheckEnv, bad: str) -> None:
    await _raises(f"read_file({bad!r})", SandboxPathError, sb.read_file(bad))
    await _raises(f"write_file({bad!r})", SandboxPathError, sb.write_file(bad, b"x"))
    await _raises(f"list_files({bad!r})", SandboxPathError, sb.list_files(bad))
    await _raises(f"download({bad!r})", SandboxPathError, sb.download(bad, env.tmp / "dl"))
    await _raises(f"upload(..., {bad!r})", SandboxPathError, sb.upload(env.tmp / "secret", bad))


async def _files_dotdot_refused(sb: AsyncSandboxLike, env: CheckEnv) -> None:
    secret, target, marker = _host_files(env)
    for bad in ("../etc/passwd", "a/../../x", "..", f"../../../../..{target}"):
        await _refused_everywhere(sb, env, bad)
    _host_untouched(env, secret, target, marker)


async def _files_absolute_refused(sb: AsyncSandboxLike, env: CheckEnv) -> None:
    secret, target, marker = _host_files(env)
    for bad in ("/etc/passwd", "/proc/self/environ", "/dev/null", str(secret), str(target)):
        await _refused_everywhere(sb, env, bad)
    _host_untouched(env, secret, target, marker)


async def _files_symlink_escape(sb: AsyncSandboxLike, env: CheckEnv) -> None:
    secret, target, marker = _host_files(env)
    await sb.run(
        f"ln -s {secret} s1; ln -s /etc/shadow s2; ln -s {target} s3; ln -s /proc/self/root/etc s4;"
        f" mkdir d; ln -s {env.tmp} d/hostdir; ln -s {secret} d/secret"
    )
    for path in ("s1", "s2", "s4/shadow", "d/hostdir/secret"):
        try:
            data = await sb.read_file(path)
        except SandboxFileError:
            continue
        _expect(marker.encode() not in data, f"read_file({path!r}) returned a host file")
    for path in ("s3", "d/hostdir/target"):
        with contextlib.suppress(SandboxFileError):
            await sb.write_file(path, b"written through a link")
    out = env.tmp / "out"
    await sb.download("d", out)
    _expect(
        not any(p.is_symlink() for p in out.rglob("*")), "a link the agent planted came out of the sandbox"
    )
    _expect(
        marker not in "".join(p.read_text(errors="replace") for p in out.rglob("*") if p.is_file()),
        "a host file came out",
    )
    # a link uploaded from the host is recreated inside, not followed on the host
    up = env.tmp / "up"
    up.mkdir()
    os.symlink(secret, up / "link")
    await sb.upload(up, "uplink")
    r = await sb.run("cat uplink/link 2>/dev/null; true")
    _expect(marker not in r.stdout, "an uploaded link exposed the host file it points at", r)
    _host_untouched(env, secret, target, marker)


async def _closed_sandbox_refuses(sb: AsyncSandboxLike, env: CheckEnv) -> None:
    await sb.run("true")
    await sb.close()
    await _raises("run after close", SandboxClosedError, sb.run("true"))
    await _raises("write_file after close", SandboxClosedError, sb.write_file("x", b"x"))
    await sb.close()  # closing twice is fine


CHECKS: tuple[Check, ...] = (
    Check(
        "writes-outside-workspace-fail",
        "writes to system dirs, /, /root, /proc/sys fail",
        _writes_outside_workspace_fail,
    ),
    Check("host-secrets-unreadable", "/etc/shadow and /root are unreadable", _host_secrets_unreadable),
    Check("host-processes-invisible", "the call sees only its own processes", _host_processes_invisible),
    Check("no-capabilities", "effective, permitted and bounding sets are empty", _no_capabilities),
    Check("namespace-creation-denied", "unshare of user or net namespaces fails", _namespace_creation_denied),
    Check("environment-cleared", "no host environment variable reaches the call", _environment_cleared),
    Check("workspace-persists", "files written in one call are there in the next", _workspace_persists),
    Check(
        "nothing-outlives-the-call",
        "setsid/nohup background processes die with the call",
        _nothing_outlives_the_call,
    ),
    Check("fork-bomb-stopped", "a fork bomb is blocked, or ends with stop_reason 'pids'", _fork_bomb_stopped),
    Check("wall-clock-enforced", "an endless loop ends with stop_reason 'timeout'", _wall_clock_enforced),
    Check("output-capped", "output beyond the cap is dropped and flagged", _output_capped),
    Check(
        "trace-context-kept",
        "results carry the call's trace context; a call without a tool_call_id gets one",
        _trace_context_kept,
    ),
    Check("run-result", "exit code, stdin, env, raw and decoded output, sandbox id", _run_result),
    Check("stream-order", "chunks in order per stream, then one ToolResult that matches them", _stream_order),
    Check("stream-live", "chunks arrive while the call runs, not when it ends", _stream_live),
    Check("stream-capped", "streamed output obeys the output cap, and equals the result's", _stream_capped),
    Check(
        "stream-abandoned-call-stops",
        "closing a stream early stops its call",
        _stream_abandoned_call_stops,
    ),
    Check("concurrent-calls", "calls to one sandbox run concurrently", _concurrent_calls),
    Check(
        "files-round-trip",
        "write_file/read_file/list_files: bytes, text, modes; the agent owns staged files",
        _files_round_trip,
    ),
    Check(
        "files-tree-transfer",
        "upload/download of trees and files; links and special files never come out",
        _files_tree_transfer,
    ),
    Check("files-errors", "missing paths and directories raise the typed file errors", _files_errors),
    Check(
        "files-dotdot-refused", "'..' in any file operation is refused; host untouched", _files_dotdot_refused
    ),
    Check(
        "files-absolute-refused",
        "absolute paths outside the workspace are refused; host untouched",
        _files_absolute_refused,
    ),
    Check(
        "files-symlink-escape",
        "symlinks the agent planted never reach a host file, in or out",
        _files_symlink_escape,
    ),
    Check(
        "closed-sandbox-refuses",
        "a closed sandbox refuses calls and file operations",
        _closed_sandbox_refuses,
    ),
)
