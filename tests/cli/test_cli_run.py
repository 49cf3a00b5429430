"""The ``corral run`` / ``corral policy`` commands, run as a user would, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CORRAL = str(Path(sys.executable).with_name("corral"))
# No node agent: these calls build their sandbox in the CLI process (the agent path is tested with
# a real `corral serve` in tests/integrations/service/test_service_cli_run.py).
NO_AGENT = {"CORRAL_SOCKET": "/nonexistent/corral.sock"}


def corral(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CORRAL, *args], capture_output=True, text=True, timeout=60, env={**(env or os.environ), **NO_AGENT}
    )


def test_run_exits_with_the_command_code_and_prints_json() -> None:
    r = corral("run", "--json", "--run-id", "r7", "--", "sh", "-c", "echo out; echo err >&2; exit 5")
    assert r.returncode == 5
    d = json.loads(r.stdout)
    assert d["exit_code"] == 5 and d["stdout"] == "out\n" and d["stderr"] == "err\n"
    assert d["run_id"] == "r7" and d["tool_call_id"].startswith("tc-") and d["sandbox_id"].startswith("sb-")
    for key in ("duration_s", "blocked", "stop_reason", "alerts"):
        assert key in d


def test_run_then_events_finds_the_call(tmp_path: Path) -> None:
    store = tmp_path / "ev.db"
    r = corral("run", "--store", str(store), "--run-id", "r-ev", "--", "true")
    assert r.returncode == 0, r.stderr
    r = corral("events", "--store", str(store), "--json", "--run", "r-ev", "--type", "tool_call")
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 1 and rows[0]["command"] == "true" and rows[0]["run_id"] == "r-ev"


def test_run_with_invalid_policy_stops_before_any_sandbox(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("resources:\n  memory_max_bytes: -5\n")
    state = tmp_path / "state"
    r = corral("run", "--policy", str(f), "--", "true", env=dict(os.environ, CORRAL_STATE_DIR=str(state)))
    assert r.returncode == 2
    assert f"{f}:2: resources.memory_max_bytes" in r.stderr
    assert not state.exists()  # nothing was created: no uid lease, no sandbox state


def test_policy_check_and_schema(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("name: strict\nresources:\n  pids_max: 32\n")
    r = corral("policy", "check", str(good))
    assert r.returncode == 0 and "ok" in r.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nresourcez: {}\n")
    r = corral("policy", "check", str(bad))
    assert r.returncode == 2 and f"{bad}:2: resourcez: unknown key" in r.stderr
    r = corral("policy", "schema")
    assert r.returncode == 0 and json.loads(r.stdout)["title"] == "Policy"


def test_without_root_is_a_clear_error() -> None:
    # The venv's interpreter lives under /root here, so drop privileges in a forked child instead.
    from corral.errors import SandboxUnavailableError
    from corral.sandbox._preflight import check_machine

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)
        try:
            check_machine()
            msg = "no error"
        except SandboxUnavailableError as exc:
            msg = str(exc)
        os.write(w, msg.encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        msg = f.read()
    os.waitpid(pid, 0)
    assert "needs root" in msg
