"""StoreReader: read-only access that checks the file first, follows new events without gaps or
repeats, and reads past rows it cannot understand or a damaged file without crashing."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from corral.errors import StoreError
from corral.events import Event, EventStore, Health, ProcessStart, StoreReader, TraceContext


def _store(path: Path, n: int) -> Path:
    with EventStore(path) as s:
        for i in range(n):
            ctx = TraceContext(run_id="r", episode_id=f"e{i % 2}")
            s.append(Event(ctx=ctx, data=ProcessStart(ProcessId=i, Image="/bin/ls", CommandLine=f"ls {i}")))
    return path


def test_reader_reads_what_the_writer_committed(tmp_path: Path) -> None:
    db = _store(tmp_path / "e.db", 10)
    with StoreReader(db) as r:
        assert r.count() == 10 and r.last_seq() == 10
        assert [e.seq for e in r.query(tail=2)] == [9, 10]
        assert [e.seq for e in r.query(after_seq=3, upto_seq=5)] == [4, 5]
        assert [e.seq for e in r.query(episode_id="e1", limit=2)] == [2, 4]


def test_follow_yields_every_new_matching_event_once(tmp_path: Path) -> None:
    db = _store(tmp_path / "e.db", 3)
    stop = threading.Event()
    seen: list[int] = []

    def write() -> None:
        with EventStore(db) as s:
            for i in range(3, 2503):
                ctx = TraceContext(run_id="r", episode_id=f"e{i % 2}")
                s.append(Event(ctx=ctx, data=ProcessStart(ProcessId=i, Image="/x", CommandLine="x")))
                if i % 250 == 0:
                    s.flush()

    writer = threading.Thread(target=write)
    with StoreReader(db) as r:
        start = r.last_seq()
        writer.start()
        for batch in r.follow(after_seq=start, poll_s=0.02, stop=stop, episode_id="e0"):
            seen.extend(e.seq for e in batch if e.seq is not None)
            if len(seen) >= 1250:
                stop.set()
    writer.join()
    assert seen == list(range(5, 2504, 2))  # seqs of episode e0 after seq 3: none missed, none twice


def test_a_row_that_cannot_be_read_is_reported_in_place(tmp_path: Path) -> None:
    db = _store(tmp_path / "e.db", 2)
    conn = sqlite3.connect(db)
    newer = '{"kind": "quantum"}'  # a payload type from a newer Corral
    conn.execute("INSERT INTO events (time_ns, type, run_id, data) VALUES (5, 'quantum', 'r', ?)", (newer,))
    conn.execute("INSERT INTO events (time_ns, type, data) VALUES ('not a time', 'alert', 'not json')")
    conn.commit()
    conn.close()
    with EventStore(db) as s:
        s.append(Event(data=Health(component="x", status="ok")))
    with StoreReader(db) as r:
        got = list(r.query())
    assert [e.seq for e in got] == [1, 2, 3, 4, 5] and got[4].type == "health"
    for bad in got[2:4]:
        assert isinstance(bad.data, Health) and bad.data.status == "degraded"
        assert f"event seq {bad.seq}" in bad.data.message and "could not be read" in bad.data.message
    assert got[2].ctx.run_id == "r" and got[2].time_ns == 5  # the envelope is kept where it is sound


def test_a_damaged_file_gives_store_errors_or_events_never_a_crash(tmp_path: Path) -> None:
    good = _store(tmp_path / "good.db", 300).read_bytes()
    step = max(1, len(good) // 40)
    for offset in range(0, len(good), step):
        damaged = bytearray(good)
        damaged[offset : offset + 64] = bytes((b * 7 + 13) % 256 for b in damaged[offset : offset + 64])
        path = tmp_path / f"d{offset}.db"
        path.write_bytes(bytes(damaged))
        try:
            with StoreReader(path) as r:
                list(r.query())
                r.count()
        except StoreError:
            pass
        assert path.read_bytes() == bytes(damaged)  # reading never repairs or rewrites


def test_the_reader_refuses_what_is_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no event store at"):
        StoreReader(tmp_path / "none.db")
    with pytest.raises(StoreError, match="is not a file"):
        StoreReader(tmp_path)
    assert list(tmp_path.iterdir()) == []
