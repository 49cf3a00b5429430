"""The compiled exec tracer: its cache on the node, its records, and the fallback to bpftrace."""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

from corral.errors import CollectorError
from corral.events import Event, Health
from corral.monitor import ExecCollector, _bpfobject
from corral.monitor._bpftrace import new_marker, own_cgroup_id
from corral.monitor._execrecords import ArgvAssembler, ExecEnter, ExecFailed, Lost, Marker
from corral.monitor._libbpf import LibbpfTracer, decode


def _record(tag: str, cpu: int, seq: int, numbers: list[int], text: bytes | None = None) -> bytes:
    raw = struct.pack("<IIQ7Q", ord(tag), cpu, seq, *(numbers + [0] * (7 - len(numbers))))
    if text is not None:
        raw += struct.pack("<I", len(text) + 1) + text + b"\0" * (200 - len(text))
    return raw


def test_records_decode_like_bpftrace_lines() -> None:
    asm = ArgvAssembler(200, numbered_args=True)
    assert asm.accept(*decode(_record("E", 0, 1, [10, 7, 99], b"/bin/echo"))) is None
    assert asm.accept(*decode(_record("A", 0, 2, [7], b"echo"))) is None
    assert asm.accept(*decode(_record("A", 0, 3, [7], "h\xe9".encode()))) is None
    done = asm.accept(*decode(_record("F", 0, 4, [7, 2, 0])))
    assert done == ExecEnter(10, 7, 99, "/bin/echo", ["echo", "hé"], False)
    # argument records are numbered too, so a lost one shows as a gap
    assert asm.accept(*decode(_record("A", 0, 6, [7], b"x"))) == Lost(1)
    ret = struct.unpack("<Q", struct.pack("<q", -13))[0]
    assert asm.accept(*decode(_record("R", 1, 0, [11, 7, 99, ret]))) == ExecFailed(11, 7, 99, 13)


def test_bad_records_are_parse_errors() -> None:
    from corral.monitor._execrecords import ParseError

    with pytest.raises(ParseError, match="short record"):
        decode(b"\x01\x02")
    with pytest.raises(ParseError, match="unknown record tag"):
        decode(_record("Z", 0, 0, []))
    with pytest.raises(ParseError, match="no string"):
        decode(_record("E", 0, 0, [1, 2, 3]))


def test_the_object_is_built_once_and_a_damaged_one_is_rebuilt(tmp_path: Path) -> None:
    first = _bpfobject.build(200, 64, tmp_path)
    again = _bpfobject.build(200, 64, tmp_path)
    assert again == first and first.stat().st_mtime_ns == again.stat().st_mtime_ns
    assert _bpfobject.build(100, 64, tmp_path) != first  # other limits, another object
    data = first.read_bytes()
    first.write_bytes(data[:-100])  # cut short, as by a full disk
    assert _bpfobject.cached(200, 64, tmp_path) is None
    rebuilt = _bpfobject.build(200, 64, tmp_path)
    assert rebuilt.read_bytes() == data  # builds are reproducible: the same bytes again
    assert not list(tmp_path.glob(".build-*"))


def test_without_a_compiler_or_an_object_libbpf_fails_and_auto_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path))  # an empty cache
    real_which = _bpfobject.shutil.which
    monkeypatch.setattr(
        _bpfobject.shutil, "which", lambda name: None if name == "clang" else real_which(name)
    )
    with pytest.raises(CollectorError, match="clang not found"):
        ExecCollector(lambda e: None, tracer="libbpf").start()
    events: list[Event] = []
    monkeypatch.undo()
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path))
    monkeypatch.setattr(_bpfobject, "can_build", lambda: "clang not found (apt install clang)")
    with ExecCollector(events.append) as c:
        assert c.tracer == "bpftrace"
        subprocess.run(["true"], check=True)
        c.settle()
    ok = [e.data.message for e in events if isinstance(e.data, Health) and e.data.status == "ok"]
    assert ok and "bpftrace; libbpf unavailable" in ok[0] and "clang not found" in ok[0]


def test_an_object_the_kernel_refuses_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path))
    path = _bpfobject.build(200, 64)
    # An intact file (its digest matches) that is not a BPF object the kernel takes.
    junk = b"\x7fELF" + b"\0" * 64
    path.write_bytes(junk)
    path.with_suffix(".sha256").write_text(hashlib.sha256(junk).hexdigest())
    with ExecCollector(lambda e: None, tracer="libbpf") as c:
        assert c.tracer == "libbpf"
    assert path.read_bytes()[:4] == b"\x7fELF" and path.read_bytes() != junk


def test_a_cache_others_can_write_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel runs the object as root: an object another user could have put there (a swapped
    object could hide their execs) is never loaded; "auto" then runs bpftrace and says why."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(CollectorError, match="writable by other users"):
        _bpfobject.build(200, 64, shared / "bpf")
    monkeypatch.setenv("CORRAL_BPF_CACHE", str(shared / "bpf"))
    events: list[Event] = []
    with ExecCollector(events.append) as c:
        assert c.tracer == "bpftrace"
    assert not (shared / "bpf").exists()
    ok = [e.data.message for e in events if isinstance(e.data, Health) and e.data.status == "ok"]
    assert "not safe to load from" in ok[0]
    private = tmp_path / "private"
    assert _bpfobject.build(200, 64, private).parent == private
    assert private.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("callers", [False, True], ids=["reader-thread", "and-read_now"])
@pytest.mark.parametrize("direct", [True, False], ids=["mapped-once", "libbpf-consumer"])
def test_both_ring_readers_keep_every_record_across_many_wraps(direct: bool, callers: bool) -> None:
    """A 1 MiB ring wraps about seven times under 100,000 marker records: none is lost, torn or
    doubled, including those that straddle the ring's end (read as two pieces when mapped once).
    With ``read_now`` called from another thread all the while (a call settling on its loop), the
    two readers take turns and the records still come out once each, in the order written."""
    marker = new_marker()
    tracer = LibbpfTracer(
        _bpfobject.build(200, 64),
        exclude_cgroup=own_cgroup_id(),
        marker=marker,
        uid_range=(1, 2),  # no exec of this test's is traced: markers only
        ring_size=1 << 20,
        direct=direct,
    )
    got: list[Marker] = []
    bad: list[object] = []

    def take(rec: object) -> None:
        (got if isinstance(rec, Marker) else bad).append(rec)  # type: ignore[arg-type]

    reader = threading.Thread(target=tracer.pump, args=(take, bad.append, 200))
    reader.start()
    done = threading.Event()
    read_here: list[bool] = []

    def call_reads() -> None:
        while not done.is_set():
            read_here.append(tracer.read_now())

    other = threading.Thread(target=call_reads)
    if callers:
        other.start()
    n, chunk = 100_000, 5_000
    try:
        for first in range(1, n + 1, chunk):
            for token in range(first, first + chunk):
                with contextlib.suppress(OSError):  # EINVAL by design
                    os.getpriority(marker, token)
            deadline = time.monotonic() + 30
            while len(got) < first + chunk - 1 and time.monotonic() < deadline:
                time.sleep(0.002)
    finally:
        done.set()
        if callers:
            other.join(10)
        tracer.stop()
        reader.join(10)
    assert bad == []
    assert [m.token for m in got] == list(range(1, n + 1))
    assert not callers or any(read_here)


def test_an_exec_that_lost_an_argument_record_says_its_argv_is_cut() -> None:
    asm = ArgvAssembler(200, numbered_args=True)
    asm.accept(*decode(_record("E", 0, 1, [10, 7, 99], b"/bin/echo")))
    asm.accept(*decode(_record("A", 0, 2, [7], b"echo")))
    assert asm.accept(*decode(_record("A", 0, 4, [7], b"c"))) == Lost(1)  # "b", seq 3, never came
    done = asm.accept(*decode(_record("F", 0, 5, [7, 3, 0])))  # the probe read three
    assert isinstance(done, ExecEnter) and done.argv == ["echo", "c"] and done.truncated
