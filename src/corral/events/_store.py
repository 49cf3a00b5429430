"""The durable event store: SQLite in WAL mode, append-only, written by one thread.

Producers (collectors, the sandbox) call ``append``, which only puts the event
on a list and returns: a tool call never waits on disk. A writer thread takes
everything pending and commits it in one transaction. ``flush`` returns once
every event appended before it is committed; a committed WAL transaction
survives a kill -9 of this process (``sync="full"`` also survives power loss).

Backpressure is explicit and lossless: when more than ``max_pending`` events
wait, a producer blocks for at most ``block_s``, is counted, and its event is
kept anyway; the writer then records a ``Health(status="backpressure")`` event
carrying the counter.

A writer that fails (disk full, I/O error, a file made read-only) records why and
stops; from then on the store refuses work loudly rather than queue events that
will never be written. See ``EventStore`` for the health-check API.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal

from corral.errors import StoreError
from corral.events._model import Event, Health
from corral.events._reader import build_query, check_schema, connect_read_only, iter_events
from corral.events._schema import INSERT, SCHEMA, SCHEMA_VERSION, to_row

if TYPE_CHECKING:
    from corral.policy import Policy

_BUSY_TIMEOUT_MS = 30_000
_COMMIT_RETRIES = 5


def default_store_path(policy: Policy | None = None) -> Path:
    """``policy.store.path`` if set, else ``$CORRAL_HOME/events.db`` (default home ``~/.corral``)."""
    if policy is not None and policy.store.path:
        return Path(policy.store.path).expanduser()
    home = os.environ.get("CORRAL_HOME") or "~/.corral"
    return Path(home).expanduser() / "events.db"


@dataclass(frozen=True)
class StoreStats:
    enqueued: int  # events appended by this process
    committed: int  # of those, committed to disk
    pending: int
    backpressure: int  # appends that found the queue full


def _connect(path: Path, sync: str) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        # Before the switch to WAL, which rewrites the header: a foreign database stays untouched.
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables:
            check_schema(conn, path)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if sync == 'full' else 'NORMAL'}")
    except BaseException:
        conn.close()
        raise
    return conn


def _describe(exc: BaseException) -> str:
    """The cause of a writer failure in words, with SQLite's error name (``SQLITE_FULL``) if any."""
    name = getattr(exc, "sqlite_errorname", None)
    text = str(exc) or type(exc).__name__
    if isinstance(exc, sqlite3.Error):
        return f"{text} ({name})" if name else text
    return f"{type(exc).__name__}: {text}"


class EventStore:
    """Append-only event store in one SQLite file; safe to open from several processes.

    Health of the writer (all cheap and thread-safe; none touches the disk):

    - ``store.check()`` returns ``None`` while the store takes events and raises
      ``StoreError`` once it cannot: the writer failed (``__cause__`` is the original
      ``sqlite3.Error``/``OSError``, the message names the store, the cause such as
      ``database or disk is full (SQLITE_FULL)`` and how many events were not
      committed), or the store was closed. Call it before starting a tool call: a
      dead store must stop the call before its command runs.
    - ``store.failed`` is ``True`` once the writer failed (it never goes back to
      ``False``: open a new ``EventStore`` after fixing the cause); ``store.error``
      is that ``StoreError`` (``None`` while healthy); each raise is a new ``StoreError``
      with the same message and cause.
    - After a failure ``append``/``append_many`` raise that ``StoreError`` at once,
      without queueing; ``flush`` raises it, including when the writer fails while
      ``flush`` waits; ``close`` raises ``StoreError`` naming the events left
      uncommitted (they are never dropped silently).
    - The writer thread never dies with an uncaught exception: whatever it raises is
      recorded as above and the thread returns.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_pending: int = 200_000,
        block_s: float = 0.05,
        sync: Literal["normal", "full"] = "normal",
        host: str | None = None,
    ) -> None:
        self.path = Path(path).expanduser()
        self._max_pending = max_pending
        self._block_s = block_s
        self._sync = sync
        self._host = host
        self._conn = self._open(sync)
        self._cond = threading.Condition()
        self._pending: list[Event] = []
        self._enqueued = 0
        self._committed = 0
        self._backpressure = 0
        self._reported_backpressure = 0
        self._error: StoreError | None = None
        self._closing = False
        self._closed = False
        self._writer = threading.Thread(target=self._run, name=f"corral-store:{self.path.name}", daemon=True)
        self._writer.start()

    def _open(self, sync: str) -> sqlite3.Connection:
        # Two processes creating the same store race on the switch to WAL, which does not wait
        # on the busy handler: retry for a while before giving up.
        deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = _connect(self.path, sync)
                try:
                    conn.executescript(SCHEMA)
                    version = (str(SCHEMA_VERSION),)
                    conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", version)
                except BaseException:
                    conn.close()
                    raise
                return conn
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise StoreError(f"cannot open event store {self.path}: {exc}") from exc
                time.sleep(0.05)
            except (sqlite3.Error, OSError) as exc:
                raise StoreError(f"cannot open event store {self.path}: {exc}") from exc

    # -- health ------------------------------------------------------------------

    def check(self) -> None:
        """``None`` while the store takes events; the writer's ``StoreError`` (or "closed") otherwise."""
        err = self._error  # one attribute read: no lock needed
        if err is not None:
            # A fresh exception each time: re-raising one shared object from many threads would
            # grow and mix up its traceback.
            raise StoreError(str(err)) from err.__cause__
        if self._closing or self._closed:
            raise StoreError(f"event store {self.path} is closed")
        if not self._writer.is_alive():
            raise StoreError(f"event store {self.path}: the writer thread is not running")

    @property
    def failed(self) -> bool:
        """``True`` once the writer failed; the store then refuses every append."""
        return self._error is not None

    @property
    def error(self) -> StoreError | None:
        """Why the writer failed (``__cause__`` holds the original exception), or ``None``."""
        return self._error

    # -- writing -----------------------------------------------------------------

    def append(self, event: Event) -> None:
        """Queue one event for the writer; returns at once unless the queue is over its bound."""
        self.append_many((event,))

    def append_many(self, events: Iterable[Event]) -> None:
        batch = list(events)
        if not batch:
            return
        with self._cond:
            self.check()
            if len(self._pending) >= self._max_pending:
                self._backpressure += 1
                self._cond.notify_all()
                self._cond.wait_for(
                    lambda: len(self._pending) < self._max_pending or self._error is not None, self._block_s
                )
                self.check()  # the writer may have failed while this producer waited
            was_empty = not self._pending
            self._pending.extend(batch)
            self._enqueued += len(batch)
            if was_empty:
                self._cond.notify_all()

    def flush(self, timeout: float | None = 30.0) -> None:
        """Return once every event appended before this call is committed; StoreError otherwise."""
        with self._cond:
            target = self._enqueued
            self._cond.notify_all()
            done = self._cond.wait_for(lambda: self._committed >= target or self._error is not None, timeout)
            if self._error is not None:
                self.check()  # raises the writer's failure
            if not done:
                raise StoreError(
                    f"event store {self.path}: flush timed out after {timeout}s "
                    f"({target - self._committed} events not yet committed)"
                )

    @property
    def stats(self) -> StoreStats:
        with self._cond:
            return StoreStats(self._enqueued, self._committed, len(self._pending), self._backpressure)

    def _run(self) -> None:
        try:
            self._write_loop()
        except BaseException as exc:  # the thread records every failure; it never dies uncaught
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        with self._cond:
            left = len(self._pending)
            err = StoreError(
                f"event store {self.path}: writer failed, {left} events not committed: {_describe(exc)}"
            )
            err.__cause__ = exc
            self._error = err
            self._cond.notify_all()

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait(0.2)
                if not self._pending:
                    return
                batch, self._pending = self._pending, []
                backpressure = self._backpressure
                self._cond.notify_all()  # wake producers blocked on a full queue
            try:
                rows = [to_row(e) for e in batch]
                if backpressure != self._reported_backpressure:
                    rows.append(to_row(self._backpressure_event(backpressure)))
                self._commit(rows)
            except BaseException:
                with self._cond:
                    self._pending[:0] = batch  # kept, never dropped: close() reports them
                raise
            self._reported_backpressure = backpressure
            with self._cond:
                self._committed += len(batch)
                self._cond.notify_all()

    def _backpressure_event(self, count: int) -> Event:
        msg = f"event queue over {self._max_pending} pending; producers waited, nothing was dropped"
        return Event(
            host=self._host,
            data=Health(component="event_store", status="backpressure", message=msg, count=count),
        )

    def _commit(self, rows: list[tuple[object, ...]]) -> None:
        for attempt in range(_COMMIT_RETRIES):
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    self._conn.executemany(INSERT, rows)
                    self._conn.execute("COMMIT")
                except BaseException:
                    self._rollback()
                    raise
                return
            except sqlite3.OperationalError as exc:
                # Another process held the lock past busy_timeout: retry, then give up loudly.
                if ("locked" not in str(exc) and "busy" not in str(exc)) or attempt == _COMMIT_RETRIES - 1:
                    raise
                time.sleep(0.1 * (attempt + 1))

    def _rollback(self) -> None:
        # SQLite may already have rolled back (disk full does): a failing ROLLBACK must not hide
        # the error that caused it.
        if self._conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")

    # -- reading -----------------------------------------------------------------

    def query(
        self,
        *,
        run_id: str | None = None,
        episode_id: str | None = None,
        sandbox_id: str | None = None,
        tool_call_id: str | None = None,
        type: str | Sequence[str] | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        after_seq: int | None = None,
        limit: int | None = None,
        tail: int | None = None,
    ) -> Iterator[Event]:
        """Committed events matching every filter, in ``seq`` order (seen by any process).

        ``limit`` keeps the oldest N matches, ``tail`` the newest N. Reads open the file
        read-only, so they work even after the writer failed.
        """
        sql, params = build_query(
            run_id=run_id,
            episode_id=episode_id,
            sandbox_id=sandbox_id,
            tool_call_id=tool_call_id,
            type=type,
            since_ns=since_ns,
            until_ns=until_ns,
            after_seq=after_seq,
            limit=limit,
            tail=tail,
        )
        return self._iter(sql, params)

    def _iter(self, sql: str, params: list[object]) -> Iterator[Event]:
        conn = connect_read_only(self.path)
        try:
            yield from iter_events(conn, sql, params, self.path)
        finally:
            conn.close()

    def count(self) -> int:
        """Committed events in the store (all processes)."""
        conn = connect_read_only(self.path)
        try:
            return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read event store {self.path}: {exc}") from exc
        finally:
            conn.close()

    # -- lifecycle ---------------------------------------------------------------

    def close(self, timeout: float | None = 30.0) -> None:
        """Commit what is pending, stop the writer and close the file; StoreError if events are left."""
        if self._closed:
            return
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._writer.join(timeout)
        self._closed = True
        left = len(self._pending)
        if not self._writer.is_alive():
            self._conn.close()
        if self._error is not None or left:
            cause = _describe(self._error.__cause__) if self._error and self._error.__cause__ else "timed out"
            raise StoreError(
                f"event store {self.path}: {left} events not committed ({cause})"
            ) from self._error

    def __enter__(self) -> EventStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
