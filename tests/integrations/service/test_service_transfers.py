"""Files and streams through a real ``corral serve``: bounded memory, hostile tar streams, caps, NDJSON."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serve_support import TOKEN, ServeProcess

from corral import Policy
from corral.errors import SandboxClosedError, SandboxFileTooLargeError
from corral.integrations.service import AsyncRemoteSandbox, RemoteSandbox

MiB = 1 << 20


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    policy = Policy.default().with_overrides(
        detection={"enabled": False},
        files={"file_max_bytes": 200 * MiB, "transfer_max_bytes": 400 * MiB},
        workspace={"size_max_bytes": 1024 * MiB},
    )
    proc = ServeProcess(tmp_path_factory.mktemp("serve-transfers"), policy)
    yield proc
    assert proc.stop() == 0


@pytest.fixture
def http(serve: ServeProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=serve.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as c:
        yield c


def _peak_rss(pid: int) -> int:
    """The process's high-water mark of resident memory, in bytes (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def test_large_files_stream_through_in_bounded_memory(serve: ServeProcess, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    block = os.urandom(MiB)
    with big.open("wb") as f:
        for i in range(160):
            f.write(block[i:] + block[:i])  # 160 MiB, no two blocks alike
    want = hashlib.sha256(big.read_bytes()).hexdigest()
    with RemoteSandbox(socket_path=serve.sock_path) as sb:
        sb.run("true")
        _reset_peak(serve.pid)
        base = _peak_rss(serve.pid)
        sb.upload(big, "in/")
        up_peak = _peak_rss(serve.pid) - base
        assert sb.run("sha256sum in/big.bin").stdout.split()[0] == want
        _reset_peak(serve.pid)
        base = _peak_rss(serve.pid)
        sb.download("in/big.bin", tmp_path / "back.bin")
        down_peak = _peak_rss(serve.pid) - base
    assert hashlib.sha256((tmp_path / "back.bin").read_bytes()).hexdigest() == want
    # 160 MiB moved each way; the service never held more than a few chunks of it
    assert up_peak < 32 * MiB, f"upload grew the service by {up_peak / MiB:.0f} MiB"
    assert down_peak < 32 * MiB, f"download grew the service by {down_peak / MiB:.0f} MiB"


def _tar(*members: tuple[str, bytes | None, str | None]) -> bytes:
    """A tar of (name, data, link target) members: data for files, a target for symlinks."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, link in members:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            else:
                assert data is not None
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_hostile_tar_streams_never_touch_the_host(http: httpx.Client, tmp_path: Path) -> None:
    sid = http.post("/v1/sandboxes", json={}).json()["id"]
    victim = tmp_path / "victim"
    victim.mkdir()
    try:
        hostile = [
            _tar(("../../../../../../" + str(victim / "dotdot").lstrip("/"), b"x", None)),
            _tar((str(victim / "absolute"), b"x", None)),
            _tar(("esc", None, str(victim)), ("esc/through-link", b"x", None)),
            _tar(("dev", None, "/dev/null"), ("dev", b"overwrite the link", None)),
        ]
        for body in hostile:
            r = http.put(f"/v1/sandboxes/{sid}/tree", params={"dest": "up", "kind": "dir"}, content=body)
            assert r.status_code == 400, r.text
            assert r.json()["error"] in ("SandboxPathError", "SandboxFileError"), r.text
        assert list(victim.iterdir()) == []
        # a plain tree goes in, and its link is recreated inside the sandbox, as the agent sees it
        ok = _tar(("pkg/a.txt", b"A", None), ("pkg/ln", None, "a.txt"))
        r = http.put(f"/v1/sandboxes/{sid}/tree", params={"dest": "up", "kind": "dir"}, content=ok)
        assert r.status_code == 204, r.text
        run = http.post(f"/v1/sandboxes/{sid}/run", json={"command": "cat up/pkg/ln; readlink up/pkg/ln"})
        assert run.json()["stdout"] == "Aa.txt\n"
        # out again: links are never sent, and the kind and name come with the stream
        with http.stream("GET", f"/v1/sandboxes/{sid}/tree", params={"path": "up"}) as resp:
            assert resp.headers["X-Corral-Kind"] == "dir"
            with tarfile.open(fileobj=io.BytesIO(resp.read()), mode="r:") as got:
                members = sorted((m.name, m.type) for m in got)
        assert members == [
            ("pkg", tarfile.DIRTYPE),
            ("pkg/a.txt", tarfile.REGTYPE),
        ]
    finally:
        http.delete(f"/v1/sandboxes/{sid}")


def test_caps_and_missing_paths_are_clear_errors(http: httpx.Client, serve: ServeProcess) -> None:
    sid = http.post("/v1/sandboxes", json={}).json()["id"]
    try:
        r = http.put(f"/v1/sandboxes/{sid}/file", params={"path": "huge"}, content=b"x" * (201 * MiB))
        assert r.status_code == 413 and "file_max_bytes" in r.json()["detail"]
        r = http.get(f"/v1/sandboxes/{sid}/file", params={"path": "nope"})
        assert (r.status_code, r.json()["error"]) == (404, "SandboxFileNotFoundError")
        r = http.get(f"/v1/sandboxes/{sid}/file", params={"path": "/etc/passwd"})
        assert (r.status_code, r.json()["error"]) == (400, "SandboxPathError")
        r = http.put(f"/v1/sandboxes/{sid}/file", params={"path": "ok.txt", "mode": 0o600}, content=b"fine")
        assert r.status_code == 204
        assert http.get(f"/v1/sandboxes/{sid}/file", params={"path": "ok.txt"}).content == b"fine"
        entries = http.get(f"/v1/sandboxes/{sid}/files", params={"path": "."}).json()
        assert [(e["path"], e["kind"], e["mode"] & 0o777) for e in entries] == [("ok.txt", "file", 0o600)]
    finally:
        http.delete(f"/v1/sandboxes/{sid}")
    r = httpx.put(f"{serve.url}/v1/sandboxes/{sid}/file", params={"path": "x"}, content=b"x")
    assert r.status_code == 401  # every new route needs the token over TCP
    with RemoteSandbox(socket_path=serve.sock_path) as sb, pytest.raises(SandboxFileTooLargeError):
        sb.write_file("huge", b"x" * (201 * MiB))


def test_stream_sends_ndjson_lines_as_the_call_runs(http: httpx.Client) -> None:
    sid = http.post("/v1/sandboxes", json={}).json()["id"]
    try:
        lines: list[tuple[float, dict[str, object]]] = []
        body = {"command": "echo one; sleep 1; echo two >&2"}
        with http.stream("POST", f"/v1/sandboxes/{sid}/stream", json=body) as resp:
            assert resp.headers["content-type"].startswith("application/x-ndjson")
            for line in resp.iter_lines():
                lines.append((time.monotonic(), json.loads(line)))
        kinds = [m["type"] for _, m in lines]
        assert kinds == ["chunk", "chunk", "result"]
        assert lines[1][0] - lines[0][0] > 0.5  # the first line came while the call slept
        assert [(m["stream"], m["data"]) for _, m in lines[:2]] == [
            ("stdout", "b25lCg=="),
            ("stderr", "dHdvCg=="),
        ]
        result = lines[-1][1]["result"]
        assert isinstance(result, dict) and result["exit_code"] == 0 and result["stdout"] == "one\n"
    finally:
        http.delete(f"/v1/sandboxes/{sid}")


def test_destroying_a_busy_sandbox_ends_its_calls_as_closed(serve: ServeProcess) -> None:
    import asyncio

    async def main() -> tuple[BaseException | None, list[object]]:
        async with (
            AsyncRemoteSandbox(socket_path=serve.sock_path) as sb,
            AsyncRemoteSandbox(socket_path=serve.sock_path, sandbox_id=sb.id + "-x") as other,
        ):
            call = asyncio.ensure_future(sb.run("sleep 30"))
            streamed: list[object] = []

            async def consume() -> None:
                async for item in sb.stream("echo started; sleep 30"):
                    streamed.append(item)

            stream = asyncio.ensure_future(consume())
            await asyncio.sleep(1.5)
            await other.client.request("DELETE", f"/v1/sandboxes/{sb.id}")  # as the reaper or an admin would
            done = await asyncio.gather(call, stream, return_exceptions=True)
            assert isinstance(done[1], SandboxClosedError), done[1]
            return done[0] if isinstance(done[0], BaseException) else None, streamed

    err, streamed = asyncio.run(asyncio.wait_for(main(), 60))
    assert isinstance(err, SandboxClosedError) and "destroyed while this call ran" in str(err)
    assert [getattr(i, "data", None) for i in streamed] == [b"started\n"]
