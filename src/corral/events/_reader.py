"""Reading the event store without ever writing: queries, the newest N, and following new events.

Every read opens SQLite with ``mode=ro`` after checking that the file really is an event store,
so pointing a read at the wrong file (an empty file, a log, someone else's database) is an error
that changes nothing. Like any SQLite reader of a WAL database, a read may create the store's own
``-wal``/``-shm`` companions when they are missing; it creates no other file.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

from pydantic import ValidationError

from corral.errors import InputError, StoreError
from corral.events._model import EVENT_TYPES, Event, Health
from corral.events._schema import COLUMNS, SCHEMA_VERSION, Row, from_row

_SQLITE_MAGIC = b"SQLite format 3\x00"
_BUSY_TIMEOUT_S = 30.0
_FOLLOW_PAGE = 1000


def check_store_file(path: Path) -> None:
    """StoreError unless ``path`` is an existing SQLite file (its schema is checked on open)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise StoreError(f"no event store at {path}") from None
    except OSError as exc:
        raise StoreError(f"cannot read event store {path}: {exc.strerror or exc}") from exc
    if not path.is_file():
        raise StoreError(f"{path} is not a file, so not an event store")
    if st.st_size == 0:
        raise StoreError(f"{path} is empty (0 bytes), not an event store")
    try:
        with path.open("rb") as f:
            magic = f.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise StoreError(f"cannot read event store {path}: {exc.strerror or exc}") from exc
    if magic != _SQLITE_MAGIC:
        raise StoreError(f"{path} is not an event store (not an SQLite database)")


def check_schema(conn: sqlite3.Connection, path: Path) -> None:
    """StoreError unless the open database holds Corral's tables at a schema this code reads."""
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        conn.execute("SELECT seq FROM events LIMIT 0")
    except sqlite3.DatabaseError as exc:
        if "no such table" in str(exc):
            raise StoreError(f"{path} is an SQLite database but not a Corral event store") from exc
        raise StoreError(f"cannot read event store {path}: {exc}") from exc
    if row is None:
        raise StoreError(f"{path} is an SQLite database but not a Corral event store (no schema version)")
    try:
        version = int(row[0])
    except ValueError:
        raise StoreError(f"{path}: bad schema version {row[0]!r}") from None
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} was written by a newer Corral (schema {version}, this one reads {SCHEMA_VERSION})"
        )


def connect_read_only(path: Path) -> sqlite3.Connection:
    """A ``mode=ro`` connection to an existing event store (checked first); StoreError otherwise."""
    check_store_file(path)
    uri = path.resolve().as_uri() + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open event store {path}: {exc}") from exc
    try:
        check_schema(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def iter_events(conn: sqlite3.Connection, sql: str, params: Sequence[object], path: Path) -> Iterator[Event]:
    try:
        cur = conn.execute(sql, params)
        while rows := cur.fetchmany(1000):
            for row in rows:
                try:
                    yield from_row(row)
                except (ValidationError, ValueError, TypeError) as exc:
                    yield _unreadable(row, exc)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read event store {path}: {exc}") from exc


def _unreadable(row: Row, exc: Exception) -> Event:
    """A row this code cannot read (a newer payload type, damage) stands as a degraded Health event.

    It keeps the row's seq and, where they are sound, its envelope, so one bad row is reported in
    place and never stops a read of everything after it.
    """
    seq = row[0] if isinstance(row[0], int) else None
    kind = row[2] if isinstance(row[2], str) else "?"
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    data = Health(
        component="event_store",
        status="degraded",
        message=f"event seq {seq} of type {kind!r} could not be read: {reason}"[:500],
        count=1,
    )
    try:
        return from_row((*row[:10], None), data=data)
    except (ValidationError, ValueError, TypeError):
        return Event(seq=seq, time_ns=0, data=data)


class StoreReader:
    """Read-only access to an event store that must already exist; never writes to it.

    ``corral events`` and anything else that only reads use this rather than ``EventStore``,
    which creates the file and starts a writer.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self._conn = connect_read_only(self.path)

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
        upto_seq: int | None = None,
        limit: int | None = None,
        tail: int | None = None,
    ) -> Iterator[Event]:
        """Matching events in ``seq`` order: all, the oldest ``limit``, or the newest ``tail``.

        ``after_seq``/``upto_seq`` bound the seqs (exclusive/inclusive), e.g. to read what was
        committed up to a ``last_seq()`` and then ``follow`` from there without a gap or a repeat.
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
            upto_seq=upto_seq,
            limit=limit,
            tail=tail,
        )
        return iter_events(self._conn, sql, params, self.path)

    def last_seq(self) -> int:
        """The highest committed ``seq`` (0 for an empty store)."""
        try:
            return int(self._conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read event store {self.path}: {exc}") from exc

    def count(self) -> int:
        try:
            return int(self._conn.execute("SELECT count(*) FROM events").fetchone()[0])
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read event store {self.path}: {exc}") from exc

    def follow(
        self,
        *,
        after_seq: int = 0,
        poll_s: float = 0.25,
        stop: threading.Event | None = None,
        run_id: str | None = None,
        episode_id: str | None = None,
        sandbox_id: str | None = None,
        tool_call_id: str | None = None,
        type: str | Sequence[str] | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
    ) -> Iterator[list[Event]]:
        """Batches of matching events committed after ``after_seq``, as they arrive, until ``stop``.

        Yields an empty batch after each poll that found nothing, so a caller can flush or check
        a deadline. Seqs are assigned under the write lock, so once seq S is visible every event
        before it is too: reading up to the highest seq seen never skips a late commit.
        """

        def page(after: int, upto: int) -> tuple[str, list[object]]:
            return build_query(
                run_id=run_id,
                episode_id=episode_id,
                sandbox_id=sandbox_id,
                tool_call_id=tool_call_id,
                type=type,
                since_ns=since_ns,
                until_ns=until_ns,
                after_seq=after,
                upto_seq=upto,
                limit=_FOLLOW_PAGE,
            )

        page(0, 0)  # bad filters fail here, before the first poll
        last = after_seq
        while stop is None or not stop.is_set():
            top = self.last_seq()
            batch: list[Event] = []
            if top > last:
                sql, params = page(last, top)
                batch = list(iter_events(self._conn, sql, params, self.path))
                full = len(batch) == _FOLLOW_PAGE and batch[-1].seq is not None
                last = batch[-1].seq if full and batch[-1].seq is not None else top
            yield batch
            if last >= top:
                if stop is not None:
                    stop.wait(poll_s)
                else:
                    time.sleep(poll_s)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> StoreReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def build_query(
    *,
    run_id: str | None = None,
    episode_id: str | None = None,
    sandbox_id: str | None = None,
    tool_call_id: str | None = None,
    type: str | Sequence[str] | None = None,
    since_ns: int | None = None,
    until_ns: int | None = None,
    after_seq: int | None = None,
    upto_seq: int | None = None,
    limit: int | None = None,
    tail: int | None = None,
) -> tuple[str, list[object]]:
    """The SQL for a query; validates the filters (InputError on unknown types or bad bounds).

    ``limit`` keeps the oldest N matches, ``tail`` the newest N; both come back in ``seq`` order.
    """
    where: list[str] = []
    params: list[object] = []
    for col, val in (
        ("run_id", run_id),
        ("episode_id", episode_id),
        ("sandbox_id", sandbox_id),
        ("tool_call_id", tool_call_id),
    ):
        if val is not None:
            where.append(f"{col} = ?")
            params.append(val)
    if type is not None:
        types = [type] if isinstance(type, str) else list(type)
        bad = [t for t in types if t not in EVENT_TYPES]
        if bad or not types:
            raise InputError(
                f"unknown event type {', '.join(bad) or '(none)'}: expected one of {', '.join(EVENT_TYPES)}"
            )
        where.append(f"type IN ({', '.join('?' * len(types))})")
        params.extend(types)
    if since_ns is not None:
        where.append("time_ns >= ?")
        params.append(since_ns)
    if until_ns is not None:
        where.append("time_ns < ?")
        params.append(until_ns)
    if since_ns is not None and until_ns is not None and until_ns < since_ns:
        raise InputError("the time range is empty: --until is before --since")
    if after_seq is not None:
        where.append("seq > ?")
        params.append(after_seq)
    if upto_seq is not None:
        where.append("seq <= ?")
        params.append(upto_seq)
    for name, n in (("limit", limit), ("tail", tail)):
        if n is not None and n < 0:
            raise InputError(f"bad {name} {n}: must be >= 0")
        if n is not None and n >= 2**63:
            raise InputError(f"bad {name} {n}: too large")
    if limit is not None and tail is not None:
        raise InputError("limit (the oldest N) and tail (the newest N) cannot be used together")
    sql = f"SELECT {COLUMNS} FROM events"
    if where:
        sql += " WHERE " + " AND ".join(where)
    if tail is not None:
        sql = f"SELECT * FROM ({sql} ORDER BY seq DESC LIMIT ?) ORDER BY seq"
        params.append(tail)
        return sql, params
    sql += " ORDER BY seq"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return sql, params
