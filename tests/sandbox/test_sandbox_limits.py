"""Resource limits: each runaway is stopped with the right reason, and output is capped without deadlock."""

from __future__ import annotations

from corral import Policy, Sandbox


def test_fork_bomb_is_stopped_by_pids(sb: Sandbox) -> None:
    r = sb.run("bomb() { bomb | bomb & }; bomb; sleep 30", timeout=15)
    assert r.stop_reason == "pids"
    assert r.duration_s < 10
    assert [(a.rule_id, a.category) for a in r.alerts] == [("corral.limit.pids", "resource_abuse")]


def test_memory_bomb_is_stopped_by_memory(sb: Sandbox) -> None:
    r = sb.run(["python3", "-c", "a = []\nwhile True: a.append(bytearray(8 << 20))"], timeout=15)
    assert r.stop_reason == "memory"
    assert r.exit_code == 137
    assert [a.rule_id for a in r.alerts] == ["corral.limit.memory"]
    assert r.memory_peak_bytes is not None and r.memory_peak_bytes <= 128 * 1024 * 1024 + (1 << 20)


def test_infinite_loop_is_stopped_by_wall_clock(sb: Sandbox) -> None:
    r = sb.run("while :; do :; done", timeout=1.0)
    assert r.stop_reason == "timeout"
    assert 1.0 <= r.duration_s < 3.0


def test_cpu_quota_limits_cpu_time(policy: Policy) -> None:
    p = policy.with_overrides(resources={"cpu_quota_cores": 0.2})
    with Sandbox(p) as sb:
        r = sb.run("while :; do :; done", timeout=1.5)
    assert r.stop_reason == "timeout"
    assert r.cpu_time_s is not None and r.cpu_time_s < 0.6


def test_output_is_capped_without_deadlock(policy: Policy) -> None:
    p = policy.with_overrides(resources={"output_max_bytes": 64 * 1024})
    with Sandbox(p) as sb:
        r = sb.run("head -c 50000000 /dev/zero | tr '\\0' a; head -c 5000000 /dev/zero >&2; echo end >&2")
    assert r.exit_code == 0 and r.stop_reason is None
    assert len(r.stdout) == 64 * 1024 and r.stdout_truncated
    assert len(r.stderr) == 64 * 1024 and r.stderr_truncated


def test_workspace_size_is_capped(sb: Sandbox) -> None:
    r = sb.run("head -c 100000000 /dev/zero > big; echo rc=$?; ls -la big")
    assert "rc=1" in r.stdout  # 64 MiB workspace in the fixture policy
    assert r.stop_reason is None


def test_stdin_is_delivered(sb: Sandbox) -> None:
    data = b"x" * 300_000
    r = sb.run("wc -c", stdin=data)
    assert r.stdout.strip() == "300000"
