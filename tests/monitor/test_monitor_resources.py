"""The resource collector on real cgroups; the sustained-CPU shape as a table of samples."""

from __future__ import annotations

import time

import pytest
from monitor_cgroups import MakeScope, finish, run_in

from corral.events import Event, PolicyDecision, ResourceSample
from corral.monitor import ResourceCollector, SustainedCpu, read_usage


@pytest.mark.parametrize(
    ("samples", "flag_at"),
    [
        ([(0, 0), (1, 1), (2, 2), (3, 3)], 3),  # one core from the start: flagged at t=3 (window 3)
        ([(0, 0), (1, 0.1), (2, 0.2), (3, 0.3), (4, 0.4)], None),  # idle
        ([(0, 0), (1, 1), (2, 1.1), (3, 2.1), (4, 3.1), (5, 4.1)], 5),  # a break restarts the window
        ([(0, 0), (1, 0.9), (2, 1.8), (3, 2.7), (4, 3.6)], 3),  # 0.9 cores >= 0.8
    ],
)
def test_sustained_cpu(samples: list[tuple[float, float]], flag_at: float | None) -> None:
    d = SustainedCpu(min_cores=0.8, window_s=3)
    flagged = [t for t, c in samples if d.feed(t, c)]
    assert flagged == ([] if flag_at is None else [flag_at])


def test_final_sample_and_series(make_scope: MakeScope) -> None:
    events: list[Event] = []
    with ResourceCollector(events.append, interval_s=0.1, miner_min_cores=0.3, miner_window_s=0.4) as rc:
        scope = make_scope("sbR")
        rc.call_started(scope)
        # 1 s of CPU and 64 MiB touched (the machine is shared: the miner threshold is low)
        busy = "b=bytearray(64<<20)\nimport time\nwhile time.process_time()<1: pass"
        r = run_in(scope, f"python3 -c '{busy}'")
        assert r.returncode == 0, r.stderr
        time.sleep(0.2)
        finish(rc, scope)
    mine = [e for e in events if e.ctx == scope.ctx]
    samples = [e.data for e in mine if isinstance(e.data, ResourceSample)]
    final = [s for s in samples if s.final]
    assert len(final) == 1 and len(samples) >= 5
    f = final[0]
    assert f.cpu_time_s >= 0.8 and f.memory_peak_bytes is not None and f.memory_peak_bytes >= 64 << 20
    assert f.pids >= 1
    flags = [e.data for e in mine if isinstance(e.data, PolicyDecision)]
    assert len(flags) == 1 and flags[0].detail["kind"] == "sustained_cpu"


def test_read_usage_idle(make_scope: MakeScope) -> None:
    u = read_usage(make_scope("sbI").cgroup_paths)
    assert u.cpu_time_s == 0 and u.pids == 0
