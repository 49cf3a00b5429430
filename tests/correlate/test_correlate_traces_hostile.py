"""Hostile trace files: every bad line (or span, or trajectory) is counted, the good ones are kept.

The corpus holds inputs that crashed the trace readers before they were
hardened (the exception each raised is noted); the property test puts one
hostile value into a valid generic trace record between two valid ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.correlate import load_traces
from corral.errors import CorralError

T = 1795000000
GOOD = {
    "run_id": "r",
    "step": 1,
    "episode_id": "e",
    "turn": 0,
    "tool_call_id": "c",
    "sandbox_id": "sb",
    "host": "192.0.2.10",
    "sandbox_ip": "192.0.2.101",
    "start": T,
    "end": T + 5,
    "command": "ls",
}


def _line(**over: Any) -> str:
    return json.dumps({**GOOD, **over})


def _roll(calls: Any) -> str:
    traj = {
        "trajectory_id": "t1",
        "env_info": {"sandbox_id": "sb"},
        "timing_info": {"start": T, "end": T + 9},
    }
    msgs = [{"role": "assistant", "tool_calls": calls}]
    return json.dumps({"trajectory_data": json.dumps(traj), "messages": json.dumps(msgs)})


_SPAN = {
    "spanId": "s1",
    "startTimeUnixNano": str(T * 10**9),
    "attributes": [{"key": "corral.tool_call_id", "value": {"stringValue": "x1"}}],
}

# Before hardening: huge start and deep nesting raised OverflowError and RecursionError; ROLL and OTLP
# shapes of the wrong type raised AttributeError; a NaN time, an end before the start and a time 10^22
# years away were kept as calls.
CORPUS: list[tuple[str, str, str, int, int]] = [
    # name, file name, content, calls kept, malformed
    (
        "generic-huge-start",
        "t.jsonl",
        "\n".join([_line(tool_call_id="a"), _line(start=10**400), _line()]),
        2,
        1,
    ),  # OverflowError
    (
        "generic-nan-start",
        "t.jsonl",
        "\n".join([_line(tool_call_id="a"), _line(start=float("nan")), _line()]),
        2,
        1,
    ),  # NaN call kept
    (
        "generic-end-before-start",
        "t.jsonl",
        "\n".join([_line(tool_call_id="a"), _line(end=T - 100), _line()]),
        2,
        1,
    ),
    (
        "generic-deep",
        "t.jsonl",
        "\n".join([_line(tool_call_id="a"), '{"x": ' + "[" * 100_000 + "]" * 100_000 + "}", _line()]),
        2,
        1,
    ),
    (
        "roll-tool-calls-not-a-list",
        "rollout_dump_data.step_1.jsonl",
        "\n".join([_roll("oops"), _roll([{"id": "k", "function": {"arguments": "{}"}}])]),
        1,
        1,
    ),  # AttributeError
    ("roll-call-not-an-object", "rollout_dump_data.step_1.jsonl", _roll([1, 2]), 0, 1),  # AttributeError
    (
        "otlp-spans-not-objects",
        "spans.json",
        json.dumps({"resourceSpans": [1, {"scopeSpans": [{"spans": ["x", _SPAN]}]}]}),
        1,
        0,
    ),  # AttributeError
    (
        "otlp-huge-time",
        "spans.json",
        json.dumps(
            {
                "resourceSpans": [
                    {"scopeSpans": [{"spans": [{**_SPAN, "startTimeUnixNano": "9" * 40}, _SPAN]}]}
                ]
            }
        ),
        1,
        1,
    ),
]


@pytest.mark.parametrize(("name", "fname", "content", "kept", "bad"), CORPUS, ids=[c[0] for c in CORPUS])
def test_trace_corpus(tmp_path: Path, name: str, fname: str, content: str, kept: int, bad: int) -> None:
    p = tmp_path / fname
    p.write_text(content + "\n")
    ts = load_traces([p])
    assert (len(ts.calls), ts.stats[0].malformed) == (kept, bad), ts.stats[0].samples


_HOSTILE = st.one_of(
    st.integers(min_value=-(10**45), max_value=10**45),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


@settings(
    max_examples=60,
    deadline=5000,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(field=st.sampled_from(sorted(GOOD)), value=_HOSTILE)
def test_generic_trace_survives_one_hostile_value(tmp_path_factory: Any, field: str, value: Any) -> None:
    p = tmp_path_factory.mktemp("tr") / "t.jsonl"
    p.write_text(
        "\n".join([_line(tool_call_id="first"), _line(**{field: value}), _line(tool_call_id="last")]) + "\n"
    )
    try:
        ts = load_traces([p])
    except CorralError:
        pytest.fail("a trace with good lines must load")
    ids = [c.tool_call_id for c in ts.calls]
    assert ids[0] == "first" and ids[-1] == "last"
    assert len(ids) + ts.stats[0].malformed == 3
    for c in ts.calls:
        assert 0 <= c.start <= c.end < 1e12
