"""A dead event store stops the next call before it runs: nothing an agent does goes unrecorded."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral import Policy, Sandbox, TraceContext
from corral.errors import StoreError
from corral.events import EventStore
from corral.sandbox import ToolResult


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB tmpfs, unmounted afterwards."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2M,mode=0700", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_under_the_store_refuses_the_next_call(
    small_fs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    escaped: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", escaped.append)
    store = EventStore(small_fs / "events.db")
    policy = Policy.default().with_overrides(detection={"enabled": False})
    with Sandbox(policy, store=store) as sb:
        assert sb.run("true").exit_code == 0
        with open(small_fs / "filler", "wb") as f:  # the disk fills up (another tenant, a log storm)
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        # The call that meets the full disk has run; recording it fails and that is raised, not hidden.
        with pytest.raises(StoreError):
            sb.run("echo first > first.txt", TraceContext(run_id="r-full"))
        # Every later call is refused before anything runs.
        with pytest.raises(StoreError) as err:
            sb.run("echo never > never.txt", TraceContext(run_id="r-full"))
        refused = err.value.result
        assert isinstance(refused, ToolResult)
        assert refused.blocked and refused.stop_reason == "store_failure" and refused.exit_code is None
        assert "never.txt" not in [e.path for e in sb.list_files(".")]
    assert escaped == []  # no thread of the harness, the store or a collector died
    os.unlink(small_fs / "filler")
