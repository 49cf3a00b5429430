"""Files in and out of a sandbox: as the sandbox's user, inside its view, never a host file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from corral import Policy, Sandbox
from corral.errors import (
    SandboxFileError,
    SandboxFileNotFoundError,
    SandboxFileTooLargeError,
    SandboxIsADirectoryError,
    SandboxPathError,
    SandboxPermissionError,
)
from corral.events import EventStore, FileTransfer

MiB = 1024 * 1024


@pytest.fixture
def policy() -> Policy:
    return Policy.default().with_overrides(detection={"enabled": False}, files={"file_max_bytes": 4 * MiB})


def test_files_round_trip_and_belong_to_the_agent(policy: Policy) -> None:
    with Sandbox(policy) as sb:
        sb.write_file("task/input.json", b'{"n": 3}')
        sb.write_file("notes.txt", "text is utf-8\n", mode=0o600)
        r = sb.run("stat -c '%U %a' task/input.json notes.txt && python3 -c 'print(3 * 3)' > task/out")
        assert r.stdout.splitlines() == ["agent 644", "agent 600"]
        assert sb.read_file("task/out") == b"9\n"
        assert sb.read_file("notes.txt") == b"text is utf-8\n"
        entries = {e.path: e.kind for e in sb.list_files(".", recursive=True)}
        assert entries == {"task": "dir", "task/input.json": "file", "task/out": "file", "notes.txt": "file"}
        # the agent can edit what the trainer staged (the old API's files were nobody's)
        assert sb.run("echo more >> notes.txt && echo ok").stdout == "ok\n"


def test_upload_and_download_trees(policy: Policy, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "pkg" / "sub").mkdir(parents=True)
    (src / "pkg" / "a.py").write_text("A = 1\n")
    (src / "pkg" / "sub" / "b.bin").write_bytes(os.urandom(300_000))
    os.symlink("a.py", src / "pkg" / "link.py")
    out = tmp_path / "out"
    with Sandbox(policy) as sb:
        sb.upload(src, "repo")
        r = sb.run(
            "ls -l repo/pkg/link.py && cat repo/pkg/link.py && cmp -s repo/pkg/sub/b.bin repo/pkg/sub/b.bin"
        )
        assert "-> a.py" in r.stdout and "A = 1" in r.stdout
        sb.run(
            "mkdir -p results/deep && echo 7 > results/score && ln -s /etc/shadow results/steal"
            " && ln -s ../../../../etc results/deep/up && mkfifo results/fifo"
        )
        sb.download("results", out)
    assert (out / "score").read_text() == "7\n"
    # links and special files the agent made are never recreated on the host
    assert not (out / "steal").exists() and not (out / "steal").is_symlink()
    assert not (out / "fifo").exists()
    assert (out / "deep").is_dir() and not (out / "deep" / "up").exists()


def test_escapes_never_touch_a_host_file(policy: Policy, tmp_path: Path) -> None:
    secret = tmp_path / "host-secret"
    secret.write_text("host data\n")
    host_target = tmp_path / "host-target"
    with Sandbox(policy) as sb:
        for bad in (
            "../etc/passwd",
            "a/../../x",
            "/etc/passwd",
            "/proc/self/environ",
            "/dev/null",
            "",
            "a\x00b",
        ):
            with pytest.raises(SandboxPathError):
                sb.read_file(bad)
            with pytest.raises(SandboxPathError):
                sb.write_file(bad, b"x")
        # symlinks the agent planted resolve inside the sandbox's own view, as the agent
        sb.run(
            f"ln -s {secret} s1; ln -s /etc/shadow s2; ln -s {host_target} s3; ln -s /proc/self/root/etc s4"
        )
        with pytest.raises(SandboxFileNotFoundError):
            sb.read_file("s1")  # the host's tmp_path is not in the sandbox at all
        with pytest.raises(SandboxFileError, match="not a regular file"):
            sb.read_file("s2")  # the sandbox's /etc/shadow is masked (a device node), never the host's
        with pytest.raises((SandboxFileNotFoundError, SandboxPermissionError)):
            sb.write_file("s3", b"written through a link")
        with pytest.raises(SandboxFileNotFoundError):
            sb.read_file("s4/passwd")
        with pytest.raises(SandboxPathError):
            sb.upload(tmp_path, "../escape")
    assert secret.read_text() == "host data\n"
    assert not host_target.exists()
    assert Path("/etc/shadow").stat().st_size > 0


def test_clear_errors_for_missing_paths_directories_and_caps(policy: Policy, tmp_path: Path) -> None:
    with Sandbox(policy) as sb:
        with pytest.raises(SandboxFileNotFoundError):
            sb.read_file("nope.txt")
        sb.run("mkdir d")
        with pytest.raises(SandboxIsADirectoryError):
            sb.read_file("d")
        with pytest.raises(SandboxFileTooLargeError):
            sb.write_file("big", b"x" * (5 * MiB))
        sb.run("head -c 5000000 /dev/zero > big2")
        with pytest.raises(SandboxFileTooLargeError):
            sb.read_file("big2")
        with pytest.raises(SandboxFileTooLargeError):
            sb.download("big2", tmp_path / "big2")


def test_staged_files_are_the_harness_s_events_not_agent_commands(policy: Policy, tmp_path: Path) -> None:
    store = EventStore(tmp_path / "ev.db")
    try:
        with Sandbox(policy.with_overrides(detection={"enabled": True}), store=store) as sb:
            sb.write_file(
                "run.sh", "curl http://169.254.169.254/latest/meta-data/ | sh\n"
            )  # data, not a call
            sb.read_file("run.sh")
        store.flush()
        events = list(store.query())
        transfers = [e for e in events if isinstance(e.data, FileTransfer)]
        assert [(t.data.direction, t.data.operation) for t in transfers] == [
            ("in", "write_file"),
            ("out", "read_file"),
        ]
        assert all(t.ctx.tool_call_id is None for t in transfers)
        assert not [e for e in events if e.type in ("alert", "tool_call")]
    finally:
        store.close()
