"""The cache across processes: concurrent pulls do the work once, a pull killed with SIGKILL is
repaired by the next one, and a lease held by a live sandbox's process stops ``rm``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from corral.errors import ImageError
from corral.images import ImageCache
from images_support import BuiltImage, Registry, layer_digests


def _python(code: str, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
        **kw,  # type: ignore[arg-type]
    )


def _wait_for(pred: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.001)


def _puller(root: Path, ref: str, insecure: str = "", go: Path | None = None, method: str = "resolve") -> str:
    return f"""
        import json, os, sys, time
        from corral.images import ImageCache
        go = {str(go) if go else ""!r}
        if go:
            open(go + ".ready." + str(os.getpid()), "w").close()
            while not os.path.exists(go):
                time.sleep(0.001)
        cache = ImageCache({str(root)!r}, insecure_registries=[{insecure!r}] if {insecure!r} else [])
        ref = {ref!r}
        image = cache.resolve(ref, allowed=[ref]) if {method!r} == "resolve" else cache.pull(ref)
        print(json.dumps({{"digest": image.digest, "rootfs": str(image.rootfs)}}))
    """


def test_concurrent_pulls_of_one_image_fetch_and_unpack_once(
    tmp_path: Path, big_image: BuiltImage, registry: Registry
) -> None:
    tag_ref = registry.push(big_image.ref, "corral-test/big:concurrent")
    digest = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}", tag_ref],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    digest_ref = f"docker://{registry.host}/corral-test/big@{digest}"
    layers = layer_digests(big_image.layout, "big")
    gets_before = {layer: registry.blob_gets(layer) for layer in layers}
    root = tmp_path / "cache"
    go = tmp_path / "go"
    # Six processes released together: by tag and by digest, through resolve and through pull.
    plan = [
        (tag_ref, "resolve"),
        (tag_ref, "resolve"),
        (tag_ref, "pull"),
        (digest_ref, "resolve"),
        (digest_ref, "pull"),
        (digest_ref, "resolve"),
    ]
    procs = [_python(_puller(root, ref, registry.host, go, method)) for ref, method in plan]
    _wait_for(lambda: len(list(tmp_path.glob("go.ready.*"))) == len(procs), 60, "the pullers to start")
    go.touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    assert len({(r["digest"], r["rootfs"]) for r in results}) == 1
    for layer in layers:  # each layer crossed the network once, for all six
        assert registry.blob_gets(layer) - gets_before[layer] == 1, layer
    cached = ImageCache(root).ls()
    assert len(cached) == 1 and len(cached[0].refs) == 2
    assert os.listdir(root / "tmp") == []


def _stage_reached(root: Path, stage: str) -> bool:
    tmp = root / "tmp"
    if not tmp.is_dir():
        return False
    pattern = "*/layout/blobs/sha256/*" if stage == "copy" else "*/entry/rootfs/data/*"
    return any(True for _ in tmp.glob(pattern))


@pytest.mark.parametrize("stage", ["copy", "unpack"])
def test_pull_killed_with_sigkill_is_repaired_by_the_next_pull(
    tmp_path: Path, big_image: BuiltImage, stage: str
) -> None:
    root = tmp_path / "cache"
    proc = _python(_puller(root, big_image.ref, method="pull"), start_new_session=True)
    _wait_for(lambda: _stage_reached(root, stage) or proc.poll() is not None, 120, f"the {stage} stage")
    assert proc.poll() is None, "the pull finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGKILL)  # the puller and its skopeo/umoci, as an OOM kill or node drain would
    proc.wait()
    _wait_for(lambda: not _live_members(proc.pid), 30, "skopeo/umoci to die")
    # Killed part-way: nothing published, nothing referenced, its work left behind.
    assert os.listdir(root / "images") == [] and os.listdir(root / "refs") == []
    assert os.listdir(root / "tmp") != []

    image = ImageCache(root).pull(big_image.ref)
    for name in ("blob000.bin", "blob047.bin"):
        assert (image.rootfs / "data" / name).read_bytes() == (big_image.rootfs / "data" / name).read_bytes()
    assert os.listdir(root / "tmp") == []  # the dead pull's leftovers were swept
    assert [im.digest for im in ImageCache(root).ls()] == [image.digest]


def _live_members(pgid: int) -> list[int]:
    """Processes of a process group with a thread that has not exited. A killed Go program's leader
    thread shows "Z" while its other threads still tear down and its files are still open."""
    live = []
    for task_stat in Path("/proc").glob("[0-9]*/task/[0-9]*/stat"):
        try:
            fields = task_stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            live.append(int(task_stat.parents[2].name))
    return live


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


def test_puller_killed_alone_keeps_its_orphaned_work_marked_live_until_the_orphan_exits(
    tmp_path: Path, big_image: BuiltImage
) -> None:
    """kill -9 of only the Python process: umoci goes on writing into the work directory. The
    directory's lock travelled to umoci, so no sweep deletes it under umoci's feet, and no later
    pull waits for it; once umoci exits the next sweep removes it."""
    root = tmp_path / "cache"
    proc = _python(_puller(root, big_image.ref, method="pull"), start_new_session=True)
    _wait_for(lambda: _stage_reached(root, "unpack") or proc.poll() is not None, 120, "the unpack stage")
    orphans = _children(proc.pid)
    assert orphans, "umoci should be running"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    image = ImageCache(root).pull(big_image.ref)  # does not wait for the orphan, nor trip over it
    assert (image.rootfs / "data" / "blob010.bin").read_bytes() == (
        big_image.rootfs / "data" / "blob010.bin"
    ).read_bytes()
    for pid in orphans:
        _wait_for(lambda pid=pid: not _alive(pid), 120, "the orphan to exit")
    ImageCache(root).pull(big_image.ref)  # its sweep now finds the orphan's work dead
    assert os.listdir(root / "tmp") == []
    assert [im.digest for im in ImageCache(root).ls()] == [image.digest]


def _alive(pid: int) -> bool:
    for task_stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            if task_stat.read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                return True
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
    return False


def test_lease_in_another_process_stops_rm_until_that_process_dies(
    tmp_path: Path, busybox_image: BuiltImage
) -> None:
    root = tmp_path / "cache"
    cache = ImageCache(root)
    image = cache.resolve(busybox_image.ref, allowed=[busybox_image.ref])
    holder = _python(
        f"""
        import sys
        from corral.images import ImageCache
        cache = ImageCache({str(root)!r})
        lease = cache.lease(cache.resolve({busybox_image.ref!r}, allowed=[{busybox_image.ref!r}]))
        print("held", flush=True)
        sys.stdin.read()
        """,
        stdin=subprocess.PIPE,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    try:
        assert [im.in_use for im in cache.ls()] == [True]
        with pytest.raises(ImageError, match="in use by a live sandbox; close it first"):
            cache.rm(busybox_image.ref)
        with pytest.raises(ImageError, match="in use by a live sandbox"):
            cache.rm(image.digest)  # type: ignore[arg-type]
        assert (image.rootfs / "bin" / "busybox").exists() and cache.resolve(
            busybox_image.ref, allowed=[busybox_image.ref]
        )
        with cache.lease(image):  # leases are shared: another sandbox may hold it too
            pass
    finally:
        holder.kill()  # SIGKILL: the kernel drops the lease with the process
        holder.wait()
    assert [im.in_use for im in cache.ls()] == [False]
    assert cache.rm(busybox_image.ref) == [image.digest]
    assert not image.rootfs.exists() and cache.ls() == [] and os.listdir(root / "tmp") == []
    with pytest.raises(ImageError, match="removed from the image cache; resolve it again"):
        cache.lease(image)


def test_rm_keeps_an_image_other_references_need(
    tmp_path: Path, busybox_image: BuiltImage, registry: Registry
) -> None:
    ref = registry.push(busybox_image.ref, "corral-test/busybox:rm")
    cache = ImageCache(tmp_path / "cache", insecure_registries=[registry.host])
    by_tag = cache.pull(ref)
    pinned = f"docker://{registry.host}/corral-test/busybox@{by_tag.source_digest}"
    cache.pull(pinned)
    assert cache.rm(ref) == []  # the digest reference still needs it
    assert by_tag.rootfs.exists() and [im.refs for im in cache.ls()] == [(pinned,)]
    with pytest.raises(ImageError, match="not in the image cache"):
        cache.rm(ref)
    assert cache.rm(pinned) == [by_tag.digest] and not by_tag.rootfs.exists()
    # By digest: the image and every reference to it.
    cache.pull(ref)
    cache.pull(pinned)
    assert cache.rm(by_tag.digest) == [by_tag.digest]  # type: ignore[arg-type]
    assert cache.ls() == [] and os.listdir(tmp_path / "cache" / "refs") == []
    with pytest.raises(ImageError, match="dir: images are used in place"):
        cache.rm("dir:/srv/rootfs")
