"""A store whose writer fails says so at once: on a real full tmpfs, and on a value SQLite cannot
hold. The writer thread never dies with an uncaught exception."""

from __future__ import annotations

import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.errors import StoreError
from corral.events import Event, EventStore, PolicyDecision, ProcessStart, StoreReader, TraceContext


def _big(i: int) -> Event:
    ctx = TraceContext(run_id="r", episode_id="e", tool_call_id=f"c{i}")
    return Event(ctx=ctx, data=ProcessStart(ProcessId=i, Image="/bin/sh", CommandLine=f"{i} " + "x" * 4000))


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB tmpfs, unmounted afterwards."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1M,mode=0700", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def thread_errors(monkeypatch: pytest.MonkeyPatch) -> list[threading.ExceptHookArgs]:
    """Every exception that escapes a thread during the test."""
    seen: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", seen.append)
    return seen


def _fill_until_failure(s: EventStore) -> int:
    """Append and flush batches until the disk is full; returns how many flushes succeeded."""
    flushed = 0
    for i in range(10_000):
        s.append_many(_big(i * 20 + j) for j in range(20))
        try:
            s.flush(timeout=30)
        except StoreError:
            return flushed
        flushed += 20
    raise AssertionError("the 1 MiB filesystem never filled up")


def test_full_disk_is_detected_before_the_next_append(
    small_fs: Path, thread_errors: list[threading.ExceptHookArgs]
) -> None:
    s = EventStore(small_fs / "e.db")
    s.check()  # healthy: returns None
    assert not s.failed and s.error is None
    committed = _fill_until_failure(s)
    assert committed > 0

    # The failure is visible without touching the disk, with its cause.
    assert s.failed
    err = s.error
    assert isinstance(err, StoreError) and isinstance(err.__cause__, sqlite3.OperationalError)
    assert "database or disk is full" in str(err) and "SQLITE_FULL" in str(err) and str(small_fs) in str(err)
    with pytest.raises(StoreError, match="disk is full") as info:
        s.check()
    assert str(info.value) == str(err) and info.value.__cause__ is err.__cause__

    # Appends are refused at once and nothing is queued; flush keeps raising.
    before = s.stats.enqueued
    t = time.monotonic()
    with pytest.raises(StoreError, match="disk is full"):
        s.append(_big(-1))
    with pytest.raises(StoreError, match="disk is full"):
        s.append_many([_big(-2), _big(-3)])
    assert time.monotonic() - t < 1.0
    assert s.stats.enqueued == before
    with pytest.raises(StoreError, match="disk is full"):
        s.flush(timeout=5)

    # The writer stopped cleanly: no thread died with an uncaught exception.
    s._writer.join(5)
    assert not s._writer.is_alive()
    assert thread_errors == []

    # What was committed before the failure is intact and readable, even on the full disk.
    with StoreReader(small_fs / "e.db") as r:
        ids = [e.data.ProcessId for e in r.query() if isinstance(e.data, ProcessStart)]
    assert ids == list(range(committed))

    # close() names the events that were never written instead of dropping them silently.
    with pytest.raises(StoreError, match=r"\d+ events not committed \(database or disk is full"):
        s.close()


def test_reopening_after_space_is_freed_keeps_old_events(small_fs: Path) -> None:
    filler = small_fs / "filler"
    filler.write_bytes(b"\0" * 600_000)
    s = EventStore(small_fs / "e.db")
    committed = _fill_until_failure(s)
    with pytest.raises(StoreError):
        s.close()
    filler.unlink()
    with EventStore(small_fs / "e.db") as again:
        again.check()
        again.append(_big(10**6))
        again.flush()
        assert again.count() == committed + 1


def test_a_value_sqlite_cannot_hold_fails_loudly_not_the_thread(
    tmp_path: Path, thread_errors: list[threading.ExceptHookArgs]
) -> None:
    s = EventStore(tmp_path / "e.db")
    s.append(Event(time_ns=2**64, data=PolicyDecision(action="x", reason="y")))  # not an SQLite INTEGER
    with pytest.raises(StoreError, match="OverflowError"):
        s.flush(timeout=10)
    with pytest.raises(StoreError, match="OverflowError"):
        s.check()
    with pytest.raises(StoreError, match="1 events not committed"):
        s.close()
    assert thread_errors == []


def test_closed_store_fails_the_check(tmp_path: Path) -> None:
    s = EventStore(tmp_path / "e.db")
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.check()
    with pytest.raises(StoreError, match="closed"):
        s.append(_big(0))
    assert not s.failed


def test_a_check_from_many_threads_sees_the_failure(small_fs: Path) -> None:
    s = EventStore(small_fs / "e.db")
    seen: list[bool] = []
    stop = threading.Event()

    def watcher() -> None:
        while not stop.is_set():
            try:
                s.check()
            except StoreError:
                seen.append(True)
                return

    threads = [threading.Thread(target=watcher) for _ in range(4)]
    for t in threads:
        t.start()
    _fill_until_failure(s)
    for t in threads:
        t.join(5)
    stop.set()
    assert seen == [True] * 4
    with pytest.raises(StoreError):
        s.close()
