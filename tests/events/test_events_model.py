"""Payload models: a tool call's captured output is capped, flagged and carried into every export."""

from __future__ import annotations

import pytest

from corral.events import OUTPUT_CAP_BYTES, Event, ToolCall, cap_output


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, (None, False)),
        ("short", ("short", False)),
        ("x" * OUTPUT_CAP_BYTES, ("x" * OUTPUT_CAP_BYTES, False)),
        ("x" * (OUTPUT_CAP_BYTES + 1), ("x" * OUTPUT_CAP_BYTES, True)),
        (b"ok\xff", ("ok\ufffd", False)),
        # a 3-byte character straddling the cap is dropped whole, never split
        ("x" * (OUTPUT_CAP_BYTES - 1) + "€", ("x" * (OUTPUT_CAP_BYTES - 1), True)),
    ],
)
def test_cap_output(text: str | bytes | None, expected: tuple[str | None, bool]) -> None:
    assert cap_output(text) == expected


def test_tool_call_caps_each_stream_and_flags_it() -> None:
    big = "é" * OUTPUT_CAP_BYTES  # 2 bytes each: twice the cap
    call = ToolCall(command="make", start_ns=1, stdout=big, stderr="warning\n")
    assert call.stdout is not None and len(call.stdout.encode()) == OUTPUT_CAP_BYTES
    assert call.stdout_truncated and not call.stderr_truncated and call.stderr == "warning\n"
    assert ToolCall(command="true", start_ns=1).stdout is None
    flat = Event(data=call).flat()
    assert flat["stdout_truncated"] is True and flat["stderr"] == "warning\n"
