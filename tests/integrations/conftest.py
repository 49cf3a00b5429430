"""Fixtures: an event store and a Guard over real sandboxes with the test rules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from integrations_support import make_policy

from corral.events import EventStore
from corral.integrations import Guard


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    s = EventStore(tmp_path / "events.db")
    yield s
    s.close()


@pytest.fixture
def guard(store: EventStore) -> Iterator[Guard]:
    g = Guard(make_policy(), run_id="run-test", store=store)
    yield g
    g.close()
