"""Fixtures: an event store and a Guard over real sandboxes with the test rules; no sandbox may leak."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from integrations_support import make_guard

from corral.events import EventStore
from corral.integrations import Guard


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    s = EventStore(tmp_path / "events.db")
    yield s
    s.close()


@pytest.fixture
def guard(store: EventStore) -> Iterator[Guard]:
    g = make_guard(store)
    yield g
    assert g.open_episodes == 0, "a test left a sandbox open"
    g.close()
