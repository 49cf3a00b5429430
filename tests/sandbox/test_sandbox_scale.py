"""Live sandboxes leave the host's mount table alone, so a call's cost cannot grow with their number."""

from __future__ import annotations

from pathlib import Path

from corral import Harness, Policy
from corral.sandbox import DEFAULT_STATE_ROOT


def _host_mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f]


def _cgroups(ids: set[str]) -> list[str]:
    roots = [Path("/sys/fs/cgroup") / c / "corral" for c in ("memory", "pids", "cpu", "unified")]
    return [str(r / i) for r in roots for i in ids if (r / i).exists()]


def test_hundreds_of_live_sandboxes_add_no_host_mount_and_leave_nothing(
    policy: Policy, tmp_path: Path
) -> None:
    template = tmp_path / "repo"
    template.mkdir()
    (template / "f").write_text("x\n")
    harness = Harness(policy, store=None)
    before = _host_mounts()
    live = []
    try:
        for i in range(300):
            live.append(harness.sandbox(workspace=template if i % 3 == 0 else None))
        assert (
            _host_mounts() == before
        )  # workspaces, templates and /dev live only in each sandbox's namespace
        for sb in live[::50]:
            assert sb.run("cat /proc/self/mountinfo | wc -l").exit_code == 0
        ids = {sb.id for sb in live}
        uids = {sb.uid for sb in live}
        assert len(uids) == len(live)  # one host uid per live sandbox
    finally:
        for sb in live:
            sb.close()
        harness.close()
    assert _host_mounts() == before
    assert _cgroups(ids) == []
    assert [p.name for p in (DEFAULT_STATE_ROOT / "sandboxes").glob("*") if p.name in ids] == []
    leases = DEFAULT_STATE_ROOT / "uids"
    assert [u for u in uids if (leases / f"{u}.lock").exists()] == []  # released leases leave no lock file
