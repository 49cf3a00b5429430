"""``corral events`` against real stores: filters, --tail, --limit, --follow, exports, and a read
that never creates or changes a file that is not an event store."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner, Result

from corral.cli import app
from corral.events import (
    Alert,
    DnsQuery,
    Event,
    EventStore,
    Health,
    Level,
    NetworkConnection,
    ProcessExit,
    ProcessStart,
    ToolCall,
    TraceContext,
)

CORRAL = str(Path(sys.executable).with_name("corral"))
CTX = TraceContext(run_id="r1", step=5, episode_id="e2", turn=1, tool_call_id="call-1")
T0 = 1_714_564_800_123_456_789

PAYLOADS = [
    ProcessStart(
        ProcessId=10, ParentProcessId=9, Image="/usr/bin/curl", CommandLine="curl x", argv=["curl", "x"]
    ),
    ProcessExit(ProcessId=10, Image="/usr/bin/curl", exit_code=7, cpu_time_s=0.01),
    NetworkConnection(Protocol="tcp", DestinationIp="192.0.2.10", DestinationPort=443, decision="denied"),
    DnsQuery(QueryName="pool.example", decision="denied"),
    Alert(rule_id="corral-1", title="Miner", level=Level.high, category="process", tags=["attack.t1496"]),
    ToolCall(command="curl x", start_ns=T0, end_ns=T0 + 10**9, exit_code=7, stdout="", stderr="refused\n"),
]


def events_cli(*args: str) -> Result:
    return CliRunner().invoke(app, ["events", *args])


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "e.db"
    with EventStore(path) as s:
        for i, p in enumerate(PAYLOADS):
            s.append(Event(time_ns=T0 + i, host="node1", sandbox_id="sb1", ctx=CTX, data=p))
        s.append(Event(time_ns=T0 + 100, sandbox_id="sb2", data=PAYLOADS[0]))
    return path


def _numbered(path: Path, n: int) -> Path:
    with EventStore(path) as s:
        for i in range(n):
            ctx = TraceContext(run_id="r", episode_id=f"e{i % 2}", tool_call_id=f"c{i}")
            s.append(Event(ctx=ctx, data=Health(component="t", status="ok", message=f"m{i}")))
    return path


def _seqs(stdout: str) -> list[int]:
    return [json.loads(line)["seq"] for line in stdout.splitlines()]


# -- reading and filtering -------------------------------------------------------------------


def test_json_lines_carry_the_envelope_and_the_payload(store: Path) -> None:
    r = events_cli("--json", "--store", str(store), "--episode", "e2")
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(lines) == len(PAYLOADS)
    for key in ("type", "time", "sandbox_id", "run_id", "episode_id", "step", "turn", "tool_call_id"):
        assert key in lines[0]
    assert lines[0]["Image"] == "/usr/bin/curl" and lines[0]["time"] == "2024-05-01T12:00:00.123456789Z"
    call = lines[-1]
    assert (call["type"], call["stdout"], call["stderr"], call["stdout_truncated"]) == (
        "tool_call",
        "",
        "refused\n",
        False,
    )
    r = events_cli("--json", "--store", str(store), "--type", "dns_query")
    assert [json.loads(x)["QueryName"] for x in r.stdout.splitlines()] == ["pool.example"]


def test_table(store: Path) -> None:
    r = events_cli("--store", str(store), "--sandbox", "sb2")
    assert r.exit_code == 0 and "process_start" in r.stdout and "curl" in r.stdout


def test_tail_is_the_newest_and_limit_the_oldest(tmp_path: Path) -> None:
    db = _numbered(tmp_path / "e.db", 20)
    assert _seqs(events_cli("--json", "--store", str(db), "--tail", "3").stdout) == [18, 19, 20]
    assert _seqs(events_cli("--json", "--store", str(db), "--limit", "3").stdout) == [1, 2, 3]
    r = events_cli("--json", "--store", str(db), "--tail", "2", "--episode", "e0")
    assert _seqs(r.stdout) == [17, 19]
    r = events_cli("--store", str(db), "--tail", "2")
    assert r.exit_code == 0 and "message=m18" in r.stdout and "message=m19" in r.stdout
    assert "message=m17" not in r.stdout


def test_no_matching_events_says_so(store: Path, tmp_path: Path) -> None:
    for args in (["--run", "nope"], ["--json", "--run", "nope"], ["--tail", "0"]):
        r = events_cli("--store", str(store), *args)
        assert r.exit_code == 0 and r.stdout == ""
        assert "no matching events" in r.stderr and "holds 7 events" in r.stderr
    with EventStore(tmp_path / "empty.db"):
        pass
    r = events_cli("--store", str(tmp_path / "empty.db"))
    assert r.exit_code == 0 and "holds no events yet" in r.stderr


def test_multi_line_and_hostile_commands_stay_on_one_line(tmp_path: Path) -> None:
    command = "cat <<EOF > x.py\nprint(1)\r\nEOF\n\x1b[2J\x1b]0;pwned\x07 "
    command += "[bold]not markup[/] [/x] \u202eevil\u2028!"
    with EventStore(tmp_path / "e.db") as s:
        s.append(Event(ctx=CTX, data=ToolCall(command=command, start_ns=T0)))
    r = events_cli("--store", str(tmp_path / "e.db"))
    assert r.exit_code == 0, r.output
    (row,) = [line for line in r.stdout.splitlines() if "tool_call" in line]
    assert "command=cat <<EOF > x.py ⏎ print(1) ⏎ EOF ⏎ \\x1b[2J\\x1b]0;pwned\\x07" in row
    assert "[bold]not markup[/] [/x] \\u202eevil\\u2028!" in row  # shown as text, never read as markup
    assert "\x1b" not in r.stdout and "\u202e" not in r.stdout


# -- a read never writes -----------------------------------------------------------------------


def test_missing_store_creates_nothing(tmp_path: Path) -> None:
    r = events_cli("--store", str(tmp_path / "a" / "b" / "none.db"))
    assert r.exit_code == 2 and f"no event store at {tmp_path}/a/b/none.db" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_missing_default_store_creates_no_home(tmp_path: Path) -> None:
    env = dict(os.environ, CORRAL_HOME=str(tmp_path / "home"))
    r = subprocess.run([CORRAL, "events"], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 2 and "no event store at" in r.stderr and "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty (0 bytes), not an event store"),
        (b"2024-05-01 sshd[1]: Accepted publickey\n" * 50, "is not an event store (not an SQLite database)"),
    ],
)
def test_a_file_that_is_not_a_store_is_an_error_and_stays_as_it_was(
    tmp_path: Path, content: bytes, message: str
) -> None:
    f = tmp_path / "auth.log"
    f.write_bytes(content)
    r = events_cli("--store", str(f))
    assert r.exit_code == 2 and message in r.stderr
    assert f.read_bytes() == content and [p.name for p in tmp_path.iterdir()] == ["auth.log"]


def test_another_sqlite_database_is_refused_untouched(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.commit()
    conn.close()
    before = db.read_bytes()
    r = events_cli("--store", str(db))
    assert r.exit_code == 2 and "not a Corral event store" in r.stderr
    assert db.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["app.db"]


def test_reading_a_store_does_not_change_it(store: Path) -> None:
    before = store.read_bytes()
    for args in ([], ["--json"], ["--tail", "2"], ["--type", "alert"]):
        assert events_cli("--store", str(store), *args).exit_code == 0
    assert store.read_bytes() == before
    # Like any SQLite reader of a WAL store, a read may leave the store's own -wal/-shm; nothing else.
    assert {p.name for p in store.parent.iterdir()} <= {"e.db", "e.db-wal", "e.db-shm"}


# -- options -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--type", "bogus"], "unknown event type bogus"),
        (["--since", "yesterday"], "bad time"),
        (["--since", "2024-13-01T00:00:00Z"], "bad time"),
        (["--export", "csv", "--out", "x"], "unknown export format"),
        (["--export", "jsonl"], "--export needs --out"),
        (["--out", "x.jsonl"], "--out needs --export"),
        (["--tail", "3", "--limit", "3"], "cannot be used together"),
        (["--tail", "-1"], "--tail must be 0 or more"),
        (["--follow", "--export", "jsonl", "--out", "x"], "--follow prints events as they arrive"),
        (["--follow", "--limit", "5"], "--follow prints events as they arrive"),
    ],
)
def test_malformed_options(store: Path, args: list[str], message: str) -> None:
    r = events_cli("--store", str(store), *args)
    assert r.exit_code == 2 and message in r.stderr


def test_export_never_overwrites_the_store(store: Path) -> None:
    before = store.read_bytes()
    r = events_cli("--store", str(store), "--export", "jsonl", "--out", str(store))
    assert r.exit_code == 2 and "is the event store itself" in r.stderr
    assert store.read_bytes() == before


def test_exports(store: Path, tmp_path: Path) -> None:
    for fmt in ("jsonl", "ocsf", "parquet"):
        out = tmp_path / f"out.{fmt}"
        r = events_cli("--store", str(store), "--export", fmt, "--out", str(out))
        assert r.exit_code == 0, r.output
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 7
    ocsf = [json.loads(x) for x in (tmp_path / "out.ocsf").read_text().splitlines()]
    assert {o["class_uid"] for o in ocsf} == {1007, 4001, 4003, 2004, 0}
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.num_rows == 7 and table.column("seq").to_pylist() == list(range(1, 8))
    assert json.loads(table.column("data")[0].as_py())["Image"] == "/usr/bin/curl"
    assert json.loads(table.column("data")[5].as_py())["stderr"] == "refused\n"


def test_every_option_has_help_and_booleans_are_flags() -> None:
    command = typer.main.get_command(app).commands["events"]  # type: ignore[attr-defined]
    options = [p for p in command.params if p.param_type_name == "option"]
    for option in options:
        assert option.help, f"{option.opts} has no help text"
        if option.is_flag:
            assert not option.secondary_opts, f"{option.opts}: a flag needs no --no- form"
    assert {o for p in options if p.is_flag for o in p.opts} == {"--json", "--follow", "-f"}
    # as the installed command prints it (tests/cli/test_cli_help.py checks every command's flags)
    env = {**os.environ, "COLUMNS": "120", "NO_COLOR": "1"}
    out = subprocess.run([CORRAL, "events", "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert "OLDEST" in out.stdout and "NEWEST" in out.stdout
    for line in out.stdout.splitlines():
        if "--json" in line or "--follow" in line:
            assert "<bool>" not in line, line  # a flag is not shown as taking a value


# -- following a live store --------------------------------------------------------------------


class _Lines:
    """Lines a child prints on one stream, collected by a thread so a test can wait with a deadline."""

    def __init__(self, stream: IO[str] | None) -> None:
        assert stream is not None
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait_for(self, n: int, timeout: float = 30) -> list[str]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.lines) >= n, timeout), self.lines
            return list(self.lines)

    def done(self) -> list[str]:
        self._thread.join(10)
        return self.lines


def _append(db: Path, start: int, n: int) -> None:
    with EventStore(db) as s:
        for i in range(start, start + n):
            s.append(
                Event(
                    ctx=TraceContext(run_id="r", episode_id=f"e{i % 2}"),
                    data=Health(component="t", status="ok", message=f"m{i}"),
                )
            )


def _stop(proc: subprocess.Popen[str], err: _Lines) -> None:
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 130
    assert not any("Traceback" in line for line in err.done()), err.lines


def test_follow_prints_the_newest_then_new_events_as_they_arrive(tmp_path: Path) -> None:
    db = _numbered(tmp_path / "e.db", 5)
    cmd = [CORRAL, "events", "--store", str(db), "--follow", "--json", "--tail", "2", "--episode", "e0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = _Lines(proc.stdout), _Lines(proc.stderr)
    try:
        assert [json.loads(x)["seq"] for x in out.wait_for(2)] == [3, 5]
        _append(db, 5, 4)  # seqs 6..9; episodes e1, e0, e1, e0
        got = out.wait_for(4)
        assert [json.loads(x)["seq"] for x in got] == [3, 5, 7, 9]
        _append(db, 9, 1)  # seq 10, e1: filtered out
        _append(db, 10, 1)  # seq 11, e0
        assert [json.loads(x)["seq"] for x in out.wait_for(5)] == [3, 5, 7, 9, 11]
    finally:
        _stop(proc, err)
    assert len(out.done()) == 5


def test_follow_table_on_an_empty_store_waits_and_keeps_one_header(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    with EventStore(db):
        pass
    proc = subprocess.Popen(
        [CORRAL, "events", "--store", str(db), "-f"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = _Lines(proc.stdout), _Lines(proc.stderr)
    try:
        assert "waiting for new ones" in err.wait_for(1)[0]  # it found nothing, and says so
        _append(db, 0, 1)
        out.wait_for(3)  # header, rule, first row
        _append(db, 1, 1)
        lines = out.wait_for(4)
    finally:
        _stop(proc, err)
    assert sum("summary" in line for line in lines) == 1
    assert "message=m0" in lines[2] and "message=m1" in lines[3]


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    db = _numbered(tmp_path / "e.db", 5_000)  # far more than a pipe buffer holds
    proc = subprocess.Popen(
        [CORRAL, "events", "--store", str(db), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # like `corral events --json | head -1`
    assert proc.wait(60) == 0
    assert b"Traceback" not in proc.stderr.read()
