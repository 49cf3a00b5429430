"""The event store: ordering, filters, append-only, backpressure, multi-process, kill -9 durability."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from corral.errors import InputError, StoreError
from corral.events import (
    Event,
    EventStore,
    Health,
    PolicyDecision,
    ProcessStart,
    ToolCall,
    TraceContext,
    default_store_path,
    trace_records,
)
from corral.policy import Policy


def _ev(i: int, run: str = "r1", sandbox: str = "sb1", t: int | None = None) -> Event:
    ctx = TraceContext(run_id=run, step=i % 7, episode_id=f"e{i % 3}", turn=1, tool_call_id=f"c{i}")
    data = ProcessStart(ProcessId=i, Image="/bin/ls", CommandLine=f"ls {i}", argv=["ls", str(i)])
    return Event(sandbox_id=sandbox, ctx=ctx, data=data, time_ns=t or 1_700_000_000_000_000_000 + i)


def test_round_trip_and_filters(tmp_path: Path) -> None:
    with EventStore(tmp_path / "e.db") as s:
        s.append_many(_ev(i) for i in range(30))
        s.append(_ev(99, run="r2", sandbox="sb2"))
        s.flush()
        all_ = list(s.query())
        assert [e.seq for e in all_] == list(range(1, 32))
        assert all_[0].model_dump(exclude={"seq"}) == _ev(0).model_dump(exclude={"seq"})
        assert [e.ctx.run_id for e in s.query(run_id="r2")] == ["r2"]
        assert len(list(s.query(episode_id="e1"))) == 10
        assert len(list(s.query(sandbox_id="sb1", type=["process_start", "alert"]))) == 30
        assert list(s.query(type="alert")) == []
        t0 = 1_700_000_000_000_000_000
        assert len(list(s.query(since_ns=t0 + 10, until_ns=t0 + 20))) == 10
        assert len(list(s.query(limit=5, after_seq=28))) == 3


@pytest.mark.parametrize(
    "kwargs",
    [{"type": "nope"}, {"type": []}, {"limit": -1}, {"since_ns": 10, "until_ns": 5}],
)
def test_malformed_queries(tmp_path: Path, kwargs: dict[str, object]) -> None:
    with EventStore(tmp_path / "e.db") as s, pytest.raises(InputError):
        s.query(**kwargs)  # type: ignore[arg-type]


def test_append_only(tmp_path: Path) -> None:
    with EventStore(tmp_path / "e.db") as s:
        s.append(_ev(1))
        s.flush()
    conn = sqlite3.connect(tmp_path / "e.db")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM events")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE events SET type = 'alert'")


def test_backpressure_is_reported_not_dropped(tmp_path: Path) -> None:
    with EventStore(tmp_path / "e.db", max_pending=10, block_s=0.001) as s:
        for i in range(5000):
            s.append(_ev(i))
        s.flush()
        assert s.stats.backpressure > 0
        health = [e.data for e in s.query(type="health")]
        assert health and all(isinstance(h, Health) and h.status == "backpressure" for h in health)
        assert len(list(s.query(type="process_start"))) == 5000


def test_default_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path))
    assert default_store_path() == tmp_path / "events.db"
    p = Policy.from_yaml(f"store: {{path: {tmp_path}/x.db}}")
    assert default_store_path(p) == tmp_path / "x.db"


def test_trace_records(tmp_path: Path) -> None:
    ctx = TraceContext(run_id="r", step=1, episode_id="e", turn=0, tool_call_id="c1")
    call = ToolCall(command="ls", start_ns=2_000_000_000, end_ns=3_500_000_000, sandbox_ip="10.0.0.2")
    with EventStore(tmp_path / "e.db") as s:
        s.append(Event(sandbox_id="sb", ctx=ctx, host="node1", data=call))
        s.append(_ev(1))
        s.flush()
        (rec,) = list(trace_records(s))
    assert (rec.tool_call_id, rec.start, rec.end, rec.command, rec.host) == ("c1", 2.0, 3.5, "ls", "node1")


_WRITER = textwrap.dedent(
    """
    import sys
    from corral.events import Event, EventStore, ProcessStart
    s = EventStore(sys.argv[1])
    i = 0
    while True:
        for _ in range(500):
            s.append(Event(data=ProcessStart(ProcessId=i, Image="/x", CommandLine=str(i))))
            i += 1
        s.flush()
        print(i, flush=True)  # everything below i is reported as recorded
    """
)


def test_kill_9_keeps_flushed_events_and_reopen_appends(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    p = subprocess.Popen([sys.executable, "-c", _WRITER, str(db)], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    flushed = 0
    for line in p.stdout:
        flushed = int(line)
        if flushed >= 20_000:
            break
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    with EventStore(db) as s:
        got = [e.data.ProcessId for e in s.query() if isinstance(e.data, ProcessStart)]
        assert got[:flushed] == list(range(flushed))  # every flushed event, intact and in order
        n = len(got)
        s.append(_ev(1))
        s.flush()
        assert s.count() == n + 1
        assert list(s.query())[-1].seq == n + 1


def test_two_processes_share_a_store(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    code = (
        "import sys\nfrom corral.events import Event, EventStore, Health\n"
        "with EventStore(sys.argv[1]) as s:\n"
        "    s.append_many(Event(data=Health(component=sys.argv[2], status='ok')) for _ in range(2000))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(db), f"w{i}"]) for i in range(2)]
    assert [p.wait(60) for p in procs] == [0, 0]
    with EventStore(db) as s:
        seqs = [e.seq for e in s.query()]
        assert seqs == list(range(1, 4001))


def test_tail_is_the_newest_in_order(tmp_path: Path) -> None:
    with EventStore(tmp_path / "e.db") as s:
        s.append_many(_ev(i) for i in range(20))
        s.flush()
        assert [e.seq for e in s.query(tail=3)] == [18, 19, 20]
        assert [e.seq for e in s.query(limit=3)] == [1, 2, 3]
        assert [e.data.ProcessId for e in s.query(episode_id="e1", tail=2)] == [16, 19]  # type: ignore[union-attr]
        assert list(s.query(tail=0)) == []
        with pytest.raises(InputError, match="cannot be used together"):
            s.query(tail=1, limit=1)


def test_values_json_cannot_hold_are_kept_as_text(tmp_path: Path) -> None:
    # argv bytes that are not UTF-8 arrive as lone surrogates (surrogateescape); they must not
    # stop the writer, and the stored text shows the original byte.
    argv_event = Event(data=ProcessStart(ProcessId=1, Image="/bin/echo", CommandLine="echo a\udcff b"))
    odd = PolicyDecision(
        action="x", reason="y", detail={"raw": b"\xff\x00", "obj": object(), "nan": float("nan")}
    )
    with EventStore(tmp_path / "e.db") as s:
        s.append(argv_event)
        s.append(Event(data=odd))
        s.flush()
        s.check()
        first, second = list(s.query())
    assert isinstance(first.data, ProcessStart) and first.data.CommandLine == "echo a\\xff b"
    assert isinstance(second.data, PolicyDecision)
    assert second.data.detail["raw"] == "\\xff\x00" and second.data.detail["nan"] is None
    assert second.data.detail["obj"].startswith("<object object at")


def test_a_database_that_is_not_an_event_store_is_never_written(tmp_path: Path) -> None:
    other = tmp_path / "app.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.commit()
    conn.close()
    before = other.read_bytes()
    with pytest.raises(StoreError, match="not a Corral event store"):
        EventStore(other)
    assert other.read_bytes() == before
    junk = tmp_path / "notes.txt"
    junk.write_text("hello\n" * 100)
    with pytest.raises(StoreError, match="not a database"):
        EventStore(junk)
    assert junk.read_text() == "hello\n" * 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db", "notes.txt"]  # no -wal, no -shm
