"""The conformance suite every Sandbox backend runs (local, node service client, Ray pool).

Black-box checks through ``run`` alone, so any object with the Sandbox interface
can be checked. A backend that cannot meet a check lists it, by name and with a
reason, in ``known_gaps``: the gap is reported, never hidden.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from corral.events import TraceContext
from corral.harness._interface import SandboxLike
from corral.sandbox import ToolResult


class ConformanceFailure(AssertionError):
    pass


def _expect(cond: bool, msg: str, r: ToolResult | None = None) -> None:
    if not cond:
        detail = f" (exit {r.exit_code}, stdout {r.stdout[-300:]!r}, stderr {r.stderr[-300:]!r})" if r else ""
        raise ConformanceFailure(msg + detail)


def _writes_outside_workspace_fail(sb: SandboxLike) -> None:
    m = uuid.uuid4().hex
    r = sb.run(
        f"for d in / /usr /etc /var /root /proc/sys/kernel; do echo x > $d/c-{m} && echo WROTE $d; done; true"
    )
    _expect("WROTE" not in r.stdout, "a write outside the workspace succeeded", r)


def _host_secrets_unreadable(sb: SandboxLike) -> None:
    r = sb.run("cat /etc/shadow /etc/gshadow /root/.bash_history 2>/dev/null; ls /root 2>/dev/null; true")
    _expect(r.stdout == "", "host secrets were readable", r)


def _host_processes_invisible(sb: SandboxLike) -> None:
    r = sb.run("ls /proc | grep -c '^[0-9]'")
    _expect(r.exit_code == 0 and int(r.stdout.strip() or 99) <= 8, "host processes are visible", r)


def _no_capabilities(sb: SandboxLike) -> None:
    r = sb.run("grep -E '^Cap(Eff|Prm|Bnd):' /proc/self/status")
    _expect(r.stdout.count("0000000000000000") == 3, "the call holds capabilities", r)


def _namespace_creation_denied(sb: SandboxLike) -> None:
    r = sb.run(
        "unshare -U true 2>/dev/null && echo ESCAPED; unshare -n true 2>/dev/null && echo ESCAPED; true"
    )
    _expect("ESCAPED" not in r.stdout, "the call could create namespaces", r)


def _environment_cleared(sb: SandboxLike) -> None:
    r = sb.run("env")
    names = {line.split("=", 1)[0] for line in r.stdout.splitlines() if "=" in line}
    leaked = {n for n in names if any(s in n for s in ("SECRET", "TOKEN", "AWS_", "SSH_AUTH", "CORRAL_HOME"))}
    _expect(not leaked, f"host environment leaked: {sorted(leaked)}", r)


def _workspace_persists(sb: SandboxLike) -> None:
    m = uuid.uuid4().hex
    sb.run(f"echo {m} > persist-{m}")
    r = sb.run(f"cat persist-{m}")
    _expect(r.stdout.strip() == m, "the workspace did not persist between calls", r)


def _nothing_outlives_the_call(sb: SandboxLike) -> None:
    m = uuid.uuid4().hex
    sb.run(f"(setsid nohup sh -c 'sleep 1; echo alive > survivor-{m}' >/dev/null 2>&1 &) ; true")
    r = sb.run(f"sleep 1.6; cat survivor-{m} 2>/dev/null; true")
    _expect("alive" not in r.stdout, "a background process outlived its call", r)


def _fork_bomb_stopped(sb: SandboxLike) -> None:
    r = sb.run("b() { b | b & }; b; sleep 20", timeout=15)
    # Blocked before it ran (detection) or stopped by the pids limit: either way the host is safe.
    _expect(
        r.blocked or r.stop_reason == "pids", f"fork bomb: stop_reason {r.stop_reason!r}, wanted 'pids'", r
    )


def _wall_clock_enforced(sb: SandboxLike) -> None:
    r = sb.run("while :; do :; done", timeout=1)
    _expect(r.stop_reason == "timeout" and r.duration_s < 5, "an endless loop was not stopped by time", r)


def _output_capped(sb: SandboxLike) -> None:
    r = sb.run("head -c 20000000 /dev/zero | tr '\\0' a")
    _expect(r.stdout_truncated and len(r.stdout) < 20_000_000, "output was not capped", r)


def _trace_context_kept(sb: SandboxLike) -> None:
    ctx = TraceContext(
        run_id="conf", step=3, episode_id="e-conf", turn=1, tool_call_id=f"tc-{uuid.uuid4().hex[:8]}"
    )
    r = sb.run("true", ctx)
    _expect(r.ctx == ctx, f"trace context changed: {r.ctx} != {ctx}", r)


@dataclass(frozen=True)
class Check:
    name: str
    description: str
    fn: Callable[[SandboxLike], None]


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
    Check("trace-context-kept", "the result carries the call's trace context", _trace_context_kept),
)


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    known_gap: str | None  # the backend's stated reason, when it declared this gap
    error: str | None


def run_conformance(
    factory: Callable[[], SandboxLike], *, known_gaps: Mapping[str, str] | None = None
) -> list[CheckResult]:
    """Run every check in a fresh sandbox from ``factory``; declared gaps are run and reported too."""
    gaps = dict(known_gaps or {})
    unknown = set(gaps) - {c.name for c in CHECKS}
    if unknown:
        raise ValueError(f"known_gaps names checks that do not exist: {sorted(unknown)}")
    results: list[CheckResult] = []
    for check in CHECKS:
        sb = factory()
        try:
            check.fn(sb)
            results.append(CheckResult(check.name, True, gaps.get(check.name), None))
        except ConformanceFailure as exc:
            results.append(CheckResult(check.name, False, gaps.get(check.name), str(exc)))
        finally:
            sb.close()
    return results
