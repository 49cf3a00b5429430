"""``Watcher``: follow infrastructure logs and RL traces live, and yield attributions as they are made.

Use it from a trainer or a demo (``corral watch`` is a thin shell over it)::

    responder = Responder(policy)
    with Watcher(["/var/log/fw/flow.log"], store="run.db", responder=responder) as w:
        for item in w.items():            # blocks; ends after w.close() (from any thread)
            print(item.attribution.episode_id, item.verdict)
            if responder.halted:
                break

or ``async for item in w.aitems()`` under asyncio, or, without a thread, call
``w.step()`` in your own loop. Logs are followed like ``tail -F`` (rotation and
truncation safe; a gzip'd file is read once); by default from their end
(``from_start=True`` reads what is already there), while traces and the store
are always read from their start, since every call of the run may matter.
Lines can also be pushed (``push``), as ``corral serve``'s ``POST /v1/logs``
does for forwarders that cannot write files. Every violation attributed to an
episode is handed to the responder, whose verdict comes with the item: a burst
for one episode quarantines it, a burst across a run halts the run (thresholds
in the policy's ``response.attributed``). ``Watcher`` is thread-safe: ``items``,
``push``, ``stats`` and ``close`` may be called from any thread.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import pyarrow as pa

from corral.correlate._attribute import LINGER_S
from corral.correlate._correlate import stats_out
from corral.correlate._evidence import endpoint
from corral.correlate._incidents import row_severity
from corral.correlate._live import LiveCorrelator, Made, Row
from corral.correlate._record import RECORD_SCHEMA
from corral.correlate._registry import LogReader, make_reader
from corral.correlate._result import Attribution, FileStatsOut
from corral.correlate._sources import LogSource, PushedSource, StoreSource, TraceFileSource
from corral.errors import CorralError, InputError
from corral.events import TraceContext
from corral.respond import AttributedVerdict, Responder

_END = object()


class WatchItem:
    """One attribution as it is made, what the responder did about it, and how long it took.

    ``verdict`` is None when the record is not a violation, or no responder was
    given, or the evidence names no run; ``latency_s`` runs from the record being
    read to this item being made. ``attribution`` is built on first access.
    """

    __slots__ = ("_att", "_live", "_row", "latency_s", "verdict")

    def __init__(
        self, live: LiveCorrelator, row: Row, verdict: AttributedVerdict | None, latency_s: float
    ) -> None:
        self._live, self._row = live, row
        self._att: Attribution | None = None
        self.verdict = verdict
        self.latency_s = latency_s

    @property
    def attribution(self) -> Attribution:
        if self._att is None:
            self._att = self._live.attribution(self._row)
        return self._att

    def __repr__(self) -> str:
        r = self._row
        return f"WatchItem({r['file']}:{r['line']} -> {r['tool_call_id'] or r['episode_id']}, {r['method']})"


@dataclass(frozen=True)
class WatchStats:
    records: int
    attributed: int
    unattributed: int
    pending: int
    calls: int
    malformed_lines: int
    quarantined: int
    halted: bool
    max_latency_s: float
    rotations: int
    truncations: int
    files: list[FileStatsOut] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Watcher:
    """Follows logs and traces as they grow; yields ``WatchItem`` (or ``Attribution``) as they are made."""

    def __init__(
        self,
        logs: Iterable[Path | str] = (),
        *,
        traces: Iterable[Path | str] = (),
        store: Path | str | None = None,
        skew_s: float = 2.0,
        from_start: bool = False,
        formats: Mapping[str, LogReader] | LogReader | str | None = None,
        responder: Responder | None = None,
        poll_s: float = 0.2,
        settle_s: float = 5.0,
        hold_s: float = 300.0,
        linger_s: float = LINGER_S,
        max_pending: int = 1_000_000,
        on_item: Callable[[WatchItem], None] | None = None,
    ) -> None:
        if skew_s < 0:
            raise InputError(f"clock skew must be >= 0, got {skew_s}")
        self.poll_s = poll_s
        self.responder = responder
        self._on_item = on_item
        self._live = LiveCorrelator(
            skew_s, linger_s=linger_s, settle_s=settle_s, hold_s=hold_s, max_pending=max_pending
        )
        self._logs = [LogSource(Path(p), _reader_for(Path(p), formats), from_start=from_start) for p in logs]
        self._traces = [TraceFileSource(Path(p)) for p in traces]
        self._store = StoreSource(Path(store)) if store is not None else None
        self._pushed: dict[tuple[str, str], PushedSource] = {}
        self._inbox: deque[tuple[str, str, list[str]]] = deque()
        self._lock = threading.Lock()  # guards the sources and the engine: one step at a time
        self._queue: queue.Queue[object] = queue.Queue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._closed = False
        self._max_latency = 0.0
        self._quarantined: set[tuple[str | None, str | None]] = set()
        self.errors: list[str] = [s.error for s in self._logs if s.error]

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Watcher:
        """Follow in a background thread; items arrive through ``items()``/``aitems()``/``on_item``."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="corral-watch", daemon=True)
            self._thread.start()
        return self

    def close(self, timeout: float = 30.0) -> None:
        """Stop following; what still waits is attributed with what is known, then iteration ends."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        with self._lock:
            try:
                self._publish(self._live.flush())
            finally:
                for log in self._logs:
                    log.close()
                for tr in self._traces:
                    tr.close()
                if self._store is not None:
                    self._store.close()
        self._queue.put(_END)

    def __enter__(self) -> Watcher:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- consuming ------------------------------------------------------------------------

    def items(self, timeout: float | None = None) -> Iterator[WatchItem]:
        """Items as they are made; ends after ``close()`` (or after ``timeout`` s without one)."""
        while True:
            try:
                got = self._queue.get(timeout=timeout)
            except queue.Empty:
                return
            if got is _END:
                self._queue.put(_END)  # for any other consumer
                if self._failure is not None:
                    raise self._failure
                return
            assert isinstance(got, list)
            yield from got

    def __iter__(self) -> Iterator[Attribution]:
        return (item.attribution for item in self.items())

    async def aitems(self) -> AsyncIterator[WatchItem]:
        """``items()`` for asyncio: waits in a worker thread, never blocking the event loop."""
        while True:
            got = await asyncio.to_thread(self._get, 0.5)
            if got is _END:
                self._queue.put(_END)
                if self._failure is not None:
                    raise self._failure
                return
            if isinstance(got, list):
                for item in got:
                    yield item

    def _get(self, timeout: float) -> object:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    # -- feeding --------------------------------------------------------------------------

    def push(self, lines: Iterable[str], format: str, source: str | None = None) -> None:
        """Lines of a log in ``format`` from outside (a forwarder); read at the next step."""
        make_reader(format)  # an unknown format fails here, in the caller's thread
        batch = [ln for ln in lines]
        with self._lock:
            self._inbox.append((source or f"pushed:{format}", format, batch))
        self._wake.set()

    # -- one round ------------------------------------------------------------------------

    def step(self) -> list[WatchItem]:
        """Read what is new everywhere and attribute it; the items made (also queued and passed on)."""
        with self._lock:
            now = time.monotonic()
            for t in self._traces:
                self._live.add_calls(t.poll())
            if self._store is not None:
                self._live.add_traces(self._store.poll())
            tables = [s.poll() for s in self._logs]
            while self._inbox:
                name, fmt, lines = self._inbox.popleft()
                src = self._pushed.get((name, fmt))
                if src is None:
                    try:
                        src = self._pushed[(name, fmt)] = PushedSource(name, fmt)
                    except CorralError as exc:
                        self.errors.append(str(exc))
                        continue
                tables.append(src.feed(lines))
            new = pa.concat_tables([t for t in tables if t.num_rows] or [RECORD_SCHEMA.empty_table()])
            return self._publish(self._live.step(new, now))

    def _publish(self, made: list[Made]) -> list[WatchItem]:
        items = []
        for row, seen in made:
            verdict = self._respond(row)
            latency = max(0.0, time.monotonic() - seen)
            item = WatchItem(self._live, row, verdict, latency)
            items.append(item)
            self._max_latency = max(self._max_latency, latency)
            if self._on_item is not None:
                self._on_item(item)
        if items:
            self._queue.put(items)  # one hand-over per step, not per item
        return items

    def _respond(self, r: Row) -> AttributedVerdict | None:
        violation = r["kind"] == "alert" or r["action"] in ("deny", "alert")
        if self.responder is None or not violation or r["run_id"] is None:
            return None
        ctx = TraceContext(
            run_id=r["run_id"],
            episode_id=r["episode_id"],
            step=r["step"] if r["step"] is not None and r["step"] >= 0 else None,
            turn=r["turn"] if r["turn"] is not None and r["turn"] >= 0 else None,
            tool_call_id=r["tool_call_id"],
        )
        what = r["signature"] or r["action"] or r["kind"]
        remote_ip, remote_port = (
            (r["dst_ip"], r["dst_port"]) if r["local_side"] == 0 else (r["src_ip"], r["src_port"])
        )
        # How sure the episode is: the calls of one episode the evidence cannot tell apart share it.
        conf, n = float(r["confidence"]), int(r["candidate_count"])
        sure = min(1.0, conf * n) if r["episode_count"] == 1 else conf
        verdict = self.responder.on_attributed(
            ctx,
            level=row_severity(r),
            time_s=r["start"],
            confidence=sure,
            title=f"{what}: {endpoint(remote_ip, remote_port)} ({r['format']})",
            detail={"log": f"{r['file']}:{r['line']}", "method": r["method"], "remote": remote_ip},
        )
        if verdict.quarantined:
            self._quarantined.add((r["run_id"], r["episode_id"]))
        return verdict

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self.step()
                except CorralError as exc:  # a source failed (a store that cannot be read): keep going
                    msg = str(exc)
                    if not self.errors or self.errors[-1] != msg:
                        self.errors.append(msg)
                self._wake.wait(self.poll_s)
                self._wake.clear()
        except BaseException as exc:
            self._failure = exc
            self._queue.put(_END)

    # -- state ----------------------------------------------------------------------------

    def stats(self) -> WatchStats:
        with self._lock:
            files = [s.stats for s in self._logs] + [p.stats for p in self._pushed.values()]
            traces = [t.stats for t in self._traces] + ([self._store.stats] if self._store else [])
            c = self._live.counters
            return WatchStats(
                records=c.records,
                attributed=c.attributed,
                unattributed=c.unattributed,
                pending=self._live.pending,
                calls=len(self._live.call_ids),
                malformed_lines=sum(s.malformed for s in [*files, *traces]),
                quarantined=len(self._quarantined),
                halted=self.responder.halted if self.responder is not None else False,
                max_latency_s=self._max_latency,
                rotations=sum(s.follower.counters.rotations for s in self._logs),
                truncations=sum(s.follower.counters.truncations for s in self._logs),
                files=[stats_out(s) for s in [*files, *traces]],
                errors=list(self.errors),
            )


def _reader_for(path: Path, formats: Mapping[str, LogReader] | LogReader | str | None) -> LogReader | None:
    if formats is None:
        return None
    if isinstance(formats, str):
        return make_reader(formats)
    if isinstance(formats, LogReader):
        return formats
    return formats.get(str(path))
