"""The demo's event store: it marks the environment's own grader runs as trusted on their way in.

The grader runs in the episode's sandbox (it has to run the agent's solution), so the
harness records it as a tool call like any other. The loop names each grader call's id
in advance (``expect_trusted``); its ``tool_call`` event is stored with ``trusted=True``,
and reports show it apart from the agent's calls.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path

from corral.events import Event, EventStore, ToolCall


class RunStore(EventStore):
    """An ``EventStore`` that stores the tool calls named by ``expect_trusted`` as trusted."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self._trusted: set[str] = set()
        self._trusted_lock = threading.Lock()

    def expect_trusted(self, tool_call_id: str) -> None:
        with self._trusted_lock:
            self._trusted.add(tool_call_id)

    def append_many(self, events: Iterable[Event]) -> None:
        super().append_many([self._mark(e) for e in events])

    def _mark(self, e: Event) -> Event:
        d = e.data
        if not isinstance(d, ToolCall) or d.trusted or e.ctx.tool_call_id is None:
            return e
        with self._trusted_lock:
            if e.ctx.tool_call_id not in self._trusted:
                return e
        return e.model_copy(update={"data": d.model_copy(update={"trusted": True})})
