"""Live correlation: the Watcher follows logs and the run's store as they grow, and drives the responder.

The run's tool calls go into a real event store, as the harness writes them
(one ``tool_call`` event when a call ends); the "firewall" is the test appending
lines to a log file, rotating it and truncating it as logrotate would.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.correlate import Watcher, WatchItem
from corral.errors import InputError
from corral.events import Event, EventStore, ToolCall, TraceContext
from corral.policy import Policy
from corral.respond import Responder

NODE, BAD = "192.0.2.10", "203.0.113.66"
CORRAL = str(Path(sys.executable).parent / "corral")
HEADER = (
    "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action "
    "log-status"
)


def _sb(i: int) -> str:
    return f"192.0.2.{100 + i}"


def _call(
    store: EventStore, ep: int, turn: int, start: float, end: float, command: str = "pip install x"
) -> None:
    ctx = TraceContext(run_id="r1", step=0, episode_id=f"e{ep}", turn=turn, tool_call_id=f"e{ep}-t{turn}")
    store.append(
        Event(
            time_ns=int(end * 1e9),
            host=NODE,
            sandbox_id=f"sb-e{ep}",
            ctx=ctx,
            data=ToolCall(
                command=command,
                start_ns=int(start * 1e9),
                end_ns=int(end * 1e9),
                exit_code=0,
                sandbox_ip=_sb(ep),
                host_ip=NODE,
            ),
        )
    )
    store.flush()


def _flow(ep: int, t: float, port: int = 3333, action: str = "REJECT", sport: int = 40000) -> str:
    return f"2 123456789012 eni-1 {_sb(ep)} {BAD} {sport} {port} 6 3 180 {int(t)} {int(t) + 1} {action} OK\n"


def _append(path: Path, *lines: str) -> None:
    with path.open("a") as f:
        f.writelines(lines)


def _take(items: Iterator[WatchItem], n: int, timeout: float = 15.0) -> list[WatchItem]:
    out: list[WatchItem] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        try:
            out.append(next(items))
        except StopIteration:
            break
    return out


@pytest.fixture
def run(tmp_path: Path) -> Iterator[tuple[EventStore, Path, float]]:
    store = EventStore(tmp_path / "run.db")
    log = tmp_path / "fw.log"
    log.write_text(HEADER + "\n")
    yield store, log, time.time()
    store.close()


def test_lines_appended_are_attributed_as_they_come(run: tuple[EventStore, Path, float]) -> None:
    store, log, now = run
    _call(store, 1, 0, now - 30, now - 20)
    _call(store, 2, 0, now - 30, now + 100, command=f"./miner --pool {BAD}:3333")
    _append(log, _flow(1, now - 200))  # before the watch: not read (new lines only)
    with Watcher([log], store=store.path, poll_s=0.05) as w:
        items = w.items(timeout=15)
        _append(log, _flow(2, now - 5), _flow(1, now - 25))
        got = _take(items, 2)
        assert {(i.attribution.tool_call_id, i.attribution.log_line) for i in got} == {
            ("e2-t0", 3),
            ("e1-t0", 4),
        }
        # A call Corral records later (calls are recorded when they end) still finds its earlier record.
        _append(log, _flow(3, now + 1))
        time.sleep(0.3)
        _call(store, 3, 0, now - 2, now + 3)
        [late] = _take(items, 1)
        assert (late.attribution.tool_call_id, late.attribution.log_line) == ("e3-t0", 5)
        assert w.stats().records == 3 and w.stats().calls == 3
    assert all(i.latency_s < 10 for i in [*got, late])


def test_a_coarse_record_still_open_waits_for_the_later_call_that_dialled(
    run: tuple[EventStore, Path, float],
) -> None:
    """A flow log aggregates a minute: its record covers two calls of one sandbox. The first call is
    known when the line is read; the one that dialled ends (and is recorded) after. The record is
    not given to the first call just because that one is inside its window."""
    store, log, now = run
    _call(store, 1, 0, now - 2, now - 1, command="cat TASK.md && ls -la")
    line = (
        f"2 123456789012 eni-1 {_sb(1)} {BAD} 40000 3333 6 3 180 {int(now) - 3} {int(now) + 60} REJECT OK\n"
    )
    with Watcher([log], store=store.path, poll_s=0.05, settle_s=1.0) as w:
        items = w.items(timeout=15)
        _append(log, line)
        time.sleep(0.3)  # read, attributed provisionally to the only call known
        _call(store, 1, 1, now - 0.5, now, command=f"./miner --pool {BAD}:3333")
        [got] = _take(items, 1)
    assert (got.attribution.tool_call_id, got.attribution.log_line) == ("e1-t1", 2)


def test_rotation_truncation_and_gzip(run: tuple[EventStore, Path, float], tmp_path: Path) -> None:
    store, log, now = run
    _call(store, 1, 0, now - 600, now + 600)
    old = tmp_path / "fw.log.1.gz"
    with gzip.open(old, "wt") as f:  # yesterday's rotated log: read once, whole
        f.write(HEADER + "\n" + _flow(1, now - 10, sport=1))
    with Watcher([log, old], store=store.path, poll_s=0.05) as w:
        items = w.items(timeout=15)
        [first] = _take(items, 1)
        assert first.attribution.log_file == str(old) and first.attribution.log_line == 2
        _append(log, _flow(1, now, sport=2))
        assert _take(items, 1)[0].attribution.log_line == 2
        # logrotate: rename, then a new file at the path; the old file's last line is still read.
        _append(log, _flow(1, now, sport=3))
        log.rename(tmp_path / "fw.log.1")
        log.write_text(HEADER + "\n" + _flow(1, now, sport=4))
        got = _take(items, 2)
        assert [(i.attribution.src_port, i.attribution.log_line) for i in got] == [(3, 3), (4, 2)]
        # copytruncate: the file is emptied in place and written again from its start.
        with log.open("r+") as f:
            f.truncate(0)
        time.sleep(0.3)
        _append(log, HEADER + "\n", _flow(1, now, sport=5))
        [again] = _take(items, 1)
        assert (again.attribution.src_port, again.attribution.log_line) == (5, 2)
        st = w.stats()
        assert (st.rotations, st.truncations) == (1, 1)
    assert w.stats().records == 5  # the gzip'd file was not read twice


def test_burst_quarantines_episode_and_halts_a_fake_run(run: tuple[EventStore, Path, float]) -> None:
    store, log, _now = run
    base = Policy.default().model_dump()
    base["response"]["attributed"].update(episode_threshold=3, run_threshold=6)
    events: list[Event] = []
    responder = Responder(Policy.model_validate(base), event_sinks=[events.append])
    halted_at: list[int] = []
    stop = threading.Event()

    def fake_run() -> None:
        # A training loop that asks the responder before each call, as Guard and the demo do.
        for k in range(400):
            if stop.is_set():
                return
            if responder.halted:
                halted_at.append(k)
                return
            ep = 1 + k % 3
            if not responder.is_quarantined("r1", f"e{ep}"):
                _call(store, ep, k, time.time() - 1, time.time() + 30, command=f"worker --pool {BAD}:3333")
            time.sleep(0.02)

    loop = threading.Thread(target=fake_run)
    with Watcher([log], store=store.path, responder=responder, poll_s=0.05) as w:
        loop.start()
        time.sleep(0.5)
        items = w.items(timeout=15)
        _append(log, *(_flow(1, time.time(), sport=50000 + i) for i in range(3)))  # episode 1's burst
        got = _take(items, 3)
        assert [i.verdict.quarantine for i in got if i.verdict] == [False, False, True]
        assert responder.is_quarantined("r1", "e1") and not responder.halted
        _append(log, *(_flow(2 + i % 2, time.time(), sport=51000 + i) for i in range(3)))  # the run's burst
        got += _take(items, 3)
        loop.join(timeout=20)
        stop.set()
        assert responder.halted and halted_at, "the run went on after the breaker tripped"
        assert w.stats().quarantined == 1 and w.stats().halted
    stop.set()
    loop.join(timeout=20)
    actions = [e.data.action for e in events if e.data.kind == "policy_decision"]
    assert actions == ["quarantine", "halt"]


def test_pushed_lines_and_unknown_format(run: tuple[EventStore, Path, float]) -> None:
    store, _log, now = run
    _call(store, 1, 0, now - 10, now + 10)
    with Watcher([], store=store.path, poll_s=0.05) as w:
        w.push([HEADER, _flow(1, now).strip()], format="aws-vpc-flow", source="forwarder-1")
        [item] = _take(w.items(timeout=15), 1)
        assert (item.attribution.log_file, item.attribution.log_line, item.attribution.tool_call_id) == (
            "forwarder-1",
            2,
            "e1-t0",
        )
        with pytest.raises(Exception, match="unknown log format"):
            w.push(["x"], format="splunk")


def test_a_log_given_as_trace_is_refused(tmp_path: Path) -> None:
    log = tmp_path / "fw.log"
    log.write_text(HEADER + "\n" + _flow(1, 1795000000))
    with pytest.raises(InputError, match="not a trace"):
        Watcher([log], traces=[log])


def test_watch_cli_end_to_end(run: tuple[EventStore, Path, float], tmp_path: Path) -> None:
    store, log, now = run
    _call(store, 4, 0, now - 10, now + 60, command=f"nohup ./miner -o {BAD}:3333 &")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [CORRAL, "watch", "--log", str(log), "--store", str(store.path), "--json", "--skew", "2s"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stderr is not None and proc.stdout is not None
        banner = proc.stderr.readline()
        assert "following 1 log" in banner, banner
        _append(log, _flow(4, now), _flow(4, now + 1, sport=40001))
        lines = [json.loads(proc.stdout.readline()) for _ in range(2)]
        assert [(a["tool_call_id"], a["log_line"], a["method"]) for a in lines] == [
            ("e4-t0", 2, "sandbox_ip_time"),
            ("e4-t0", 3, "sandbox_ip_time"),
        ]
        keys = {"log_file", "log_line", "run_id", "episode_id", "step", "turn", "tool_call_id", "confidence"}
        assert keys <= lines[0].keys() and lines[0]["evidence"]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "2 records, 2 attributed" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--log", "x.log"], "--trace FILE or --store DB"),
        (["--log", "x.log", "--store", "/nonexistent/run.db"], "no such event store"),
        (["--log", "x.log", "--trace", "t.jsonl", "--skew", "soon"], "not a duration"),
    ],
)
def test_watch_cli_errors(args: list[str], message: str, tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_text("")
    proc = subprocess.run([CORRAL, "watch", *args], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
