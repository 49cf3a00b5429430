"""The demo's store marks the grader's runs as trusted, and trace lines carry every call's outcome."""

from __future__ import annotations

import json
from pathlib import Path

from corral.correlate import load_traces
from corral.demo._store import RunStore
from corral.events import Event, EventStore, ToolCall, TraceContext, trace_lines, write_trace_jsonl


def _call(tcid: str, command: str, **kw: object) -> Event:
    ctx = TraceContext(run_id="r1", step=0, episode_id="ep-0001", turn=1, tool_call_id=tcid)
    return Event(sandbox_id="sb-1", ctx=ctx, data=ToolCall(command=command, start_ns=1, end_ns=2, **kw))  # type: ignore[arg-type]


def test_grader_calls_are_stored_trusted_and_others_untouched(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "events.db")
    store.expect_trusted("tc-grader-1")
    store.append(_call("tc-agent-1", "pytest -q", exit_code=0))
    store.append(_call("tc-grader-1", "python3 - <<'EOF'", exit_code=1))
    store.close()
    with EventStore(tmp_path / "events.db") as s:
        got = {e.ctx.tool_call_id: e.data for e in s.query(type="tool_call")}
        lines = [json.loads(ln) for ln in trace_lines(s, run_id="r1")]
        with (tmp_path / "trace.jsonl").open("w") as f:
            assert write_trace_jsonl(trace_lines(s), f) == 2
    assert isinstance(got["tc-grader-1"], ToolCall) and got["tc-grader-1"].trusted
    assert isinstance(got["tc-agent-1"], ToolCall) and not got["tc-agent-1"].trusted
    assert [(ln["tool_call_id"], ln["trusted"], ln["exit_code"], ln["blocked"]) for ln in lines] == [
        ("tc-agent-1", False, 0, False),
        ("tc-grader-1", True, 1, False),
    ]
    # Both the store and the trace file say which call is the grader's.
    for source in (tmp_path / "events.db", tmp_path / "trace.jsonl"):
        traces = load_traces([source])
        assert {k: v.trusted for k, v in traces.info.items()} == {"tc-agent-1": False, "tc-grader-1": True}
