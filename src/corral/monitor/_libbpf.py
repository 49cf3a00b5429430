"""The exec tracer as a compiled BPF object, loaded in this process through libbpf.

bpftrace compiles its program with LLVM on every start (over a second); this
loads an object compiled once per node (``_bpfobject``) and attaches it in a
few milliseconds. libbpf (Debian's ``libbpf1``) does the loading, the CO-RE
relocations and the ring buffer; ctypes is all that stands between. The
records are those of the bpftrace program, as structs, read from one BPF ring
buffer. The programs, maps and links are file descriptors of this process:
they go when it does, so no tracer outlives the collector.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import threading
from collections.abc import Callable
from pathlib import Path

from corral.errors import CollectorError
from corral.monitor._execrecords import NUMBERS, WITH_STRING, ArgvAssembler, ParseError, Take
from corral.monitor._ringbuf import LibbpfRing, MappedRing, Ring, direct_reads

LIBRARY = "libbpf.so.1"
_HEAD = struct.Struct("<IIQ7Q")  # tag, cpu, seq, seven numbers: ``struct record`` up to ``len``
_LEN = struct.Struct("<I")
_POLL_MS = 100


def ring_bytes(cpus: int) -> int:
    """The ring buffer's size: 4 MiB a CPU, 16-64 MiB (a power of two). Bursts wait in it while the
    reader catches up: on a loaded 2-CPU machine a 20,000-exec burst lost records with 8 MiB and
    none with 16 MiB read by ``MappedRing``. The kernel keeps it in memory."""
    size = 16 << 20
    while size < min(64 << 20, 4 * cpus << 20):
        size <<= 1
    return size


class _Config(ctypes.Structure):  # ``struct config`` in exec_tracer.bpf.c
    _fields_ = (
        ("exclude_cgroup", ctypes.c_uint64),
        ("marker", ctypes.c_uint64),
        ("uid_lo", ctypes.c_uint32),
        ("uid_hi", ctypes.c_uint32),
        ("use_uid", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
    )


_lib: ctypes.CDLL | None = None


def library() -> ctypes.CDLL:
    """libbpf with the signatures used here (CollectorError when it is not installed)."""
    global _lib
    if _lib is not None:
        return _lib
    try:
        lib = ctypes.CDLL(LIBRARY, use_errno=True)
    except OSError as exc:
        raise CollectorError(
            f"{LIBRARY} not found: the exec tracer loads through it (apt install libbpf1)"
        ) from exc
    vp, i = ctypes.c_void_p, ctypes.c_int
    for name, res, args in (
        ("bpf_object__open_mem", vp, (vp, ctypes.c_size_t, vp)),
        ("bpf_object__load", i, (vp,)),
        ("bpf_object__close", None, (vp,)),
        ("bpf_object__find_map_fd_by_name", i, (vp, ctypes.c_char_p)),
        ("bpf_object__find_map_by_name", vp, (vp, ctypes.c_char_p)),
        ("bpf_map__set_max_entries", i, (vp, ctypes.c_uint32)),
        ("bpf_object__next_program", vp, (vp, vp)),
        ("bpf_program__name", ctypes.c_char_p, (vp,)),
        ("bpf_program__attach", vp, (vp,)),
        ("bpf_link__destroy", i, (vp,)),
        ("bpf_map_update_elem", i, (i, vp, vp, ctypes.c_uint64)),
        ("ring_buffer__new", vp, (i, vp, vp, vp)),
        ("ring_buffer__consume", i, (vp,)),
        ("ring_buffer__epoll_fd", i, (vp,)),
        ("ring_buffer__free", None, (vp,)),
    ):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    _lib = lib
    return lib


def _errno_text(code: int) -> str:
    code = abs(code)
    hint = " (loading BPF needs root: CAP_BPF and CAP_PERFMON)" if code in (errno.EPERM, errno.EACCES) else ""
    return f"{os.strerror(code)}{hint}"


def decode(raw: bytes) -> tuple[str, int, int, list[int], str]:
    """One ring-buffer record as its tag, CPU, sequence number, numbers and string ("" if none)."""
    if len(raw) < _HEAD.size:
        raise ParseError(f"short record of {len(raw)} bytes")
    tag_code, cpu, seq, *numbers = _HEAD.unpack_from(raw)
    tag = chr(tag_code) if tag_code < 128 else "?"
    count = NUMBERS.get(tag)
    if count is None:
        raise ParseError(f"unknown record tag {tag_code}")
    fields = list(numbers[:count])
    if tag == "R":  # the exec's return value, a negative errno
        fields[3] = struct.unpack("<q", struct.pack("<Q", numbers[3]))[0]
    string = ""
    if tag in WITH_STRING:
        if len(raw) < _HEAD.size + _LEN.size:
            raise ParseError(f"{tag!r} record of {len(raw)} bytes has no string")
        (length,) = _LEN.unpack_from(raw, _HEAD.size)
        start = _HEAD.size + _LEN.size
        text = raw[start : start + max(0, length - 1)]  # the length counts the NUL
        string = text.split(b"\0", 1)[0].decode(errors="surrogateescape")
    return tag, cpu, seq, fields, string


class LibbpfTracer:
    """The loaded, attached object; ``pump`` reads its records until ``stop``."""

    name = "libbpf"
    # One ring buffer for every CPU, read in the order records were reserved: a marker written on
    # any CPU comes after every record reserved before it, whichever CPU wrote that.
    ordered = True

    def __init__(
        self,
        obj_path: Path,
        *,
        exclude_cgroup: int,
        marker: int,
        uid_range: tuple[int, int] | None,
        ring_size: int | None = None,
        direct: bool | None = None,
    ) -> None:
        """``ring_size``: the ring buffer's bytes (``ring_bytes`` by default); ``direct``: read it
        mapped once (``MappedRing``, the default where ``direct_reads``) or through libbpf."""
        lib = library()
        self._ring_size = ring_size or ring_bytes(os.cpu_count() or 1)
        self._direct = direct_reads() if direct is None else direct
        self._lib = lib
        self._stopped = threading.Event()
        self._links: list[int] = []
        self._links_lock = threading.Lock()
        self._ring: Ring | None = None
        # One reader of the ring at a time: ``pump``'s thread, or a caller of ``read_now``.
        self._read_lock = threading.Lock()
        self._reader: tuple[ArgvAssembler, Take, Callable[[str], None]] | None = None
        data = obj_path.read_bytes()
        self._image = ctypes.create_string_buffer(data, len(data))  # libbpf reads it while it loads
        obj = lib.bpf_object__open_mem(self._image, len(data), None)
        if not obj:
            raise CollectorError(f"libbpf cannot open {obj_path}: {_errno_text(ctypes.get_errno())}")
        self._obj: int | None = obj
        try:
            self._load(obj_path, exclude_cgroup, marker, uid_range)
        except BaseException:
            self._free()
            raise

    def _load(
        self, obj_path: Path, exclude_cgroup: int, marker: int, uid_range: tuple[int, int] | None
    ) -> None:
        lib, obj = self._lib, self._obj
        ring = lib.bpf_object__find_map_by_name(obj, b"records")
        if not ring or lib.bpf_map__set_max_entries(ring, self._ring_size) != 0:
            raise CollectorError(f"{obj_path.name} has no ring buffer named records")
        rc = lib.bpf_object__load(obj)
        if rc != 0:
            raise CollectorError(f"the kernel refused the exec tracer {obj_path.name}: {_errno_text(rc)}")
        cfg = _Config(exclude_cgroup=exclude_cgroup, marker=marker)
        if uid_range is not None:
            cfg.uid_lo, cfg.uid_hi, cfg.use_uid = int(uid_range[0]), int(uid_range[1]), 1
        key = ctypes.c_uint32(0)
        fd = lib.bpf_object__find_map_fd_by_name(obj, b"config")
        if fd < 0 or lib.bpf_map_update_elem(fd, ctypes.byref(key), ctypes.byref(cfg), 0) != 0:
            raise CollectorError(f"cannot configure the exec tracer: {_errno_text(ctypes.get_errno())}")
        rb_fd = lib.bpf_object__find_map_fd_by_name(obj, b"records")
        try:
            if rb_fd < 0:
                raise OSError(-rb_fd, "no map named records")
            self._ring = MappedRing(rb_fd, self._ring_size) if self._direct else LibbpfRing(lib, rb_fd)
        except OSError as exc:
            raise CollectorError(f"cannot open the exec tracer's ring buffer: {exc}") from exc
        # Attached last, configured: no probe fires with a blank config.
        prog = lib.bpf_object__next_program(obj, None)
        while prog:
            link = lib.bpf_program__attach(prog)
            if not link:
                name = (lib.bpf_program__name(prog) or b"?").decode()
                why = _errno_text(ctypes.get_errno())
                raise CollectorError(f"cannot attach the exec tracer's {name}: {why}")
            self._links.append(link)
            prog = lib.bpf_object__next_program(obj, prog)

    def pump(self, take: Take, bad: Callable[[str], None], strlen: int) -> str | None:
        """Read records until ``stop`` (None) or a failure (its message); frees the object after."""
        with self._read_lock:
            self._reader = (ArgvAssembler(strlen, numbered_args=True), take, bad)
        try:
            while not self._stopped.is_set():
                assert self._ring is not None
                try:
                    self._ring.wait(_POLL_MS)
                    with self._read_lock:
                        self._deliver()
                except OSError as exc:
                    return f"reading the exec tracer's ring buffer failed: {exc}"
            return None
        finally:
            self._free()

    def read_now(self) -> bool:
        """Read what the ring holds now on the calling thread, unless ``pump``'s thread is reading
        it (False then, and that thread delivers it). A marker syscall's record is in the ring once
        the syscall has returned, so its caller can read it itself instead of waking the reader."""
        if not self._read_lock.acquire(blocking=False):
            return False
        try:
            if self._ring is None or self._reader is None:
                return False
            try:
                self._deliver()
            except OSError:
                return False  # the reader meets it too, and reports it
            return True
        finally:
            self._read_lock.release()

    def _deliver(self) -> None:
        """Hand every record the ring holds to ``take`` (``_read_lock`` held)."""
        assert self._ring is not None and self._reader is not None
        asm, take, bad = self._reader
        for raw in self._ring.read():
            try:
                asm.deliver(asm.accept(*decode(raw)), take)
            except ParseError as exc:
                bad(str(exc))

    def stop(self, *, wait: bool = True) -> None:
        """Detach the probes (microseconds) and have ``pump`` end within a poll interval; it frees
        the buffer and the object when it does."""
        self._stopped.set()
        self._detach()

    def _detach(self) -> None:
        with self._links_lock:
            links, self._links = self._links, []
        for link in links:
            self._lib.bpf_link__destroy(link)

    def _free(self) -> None:
        lib = self._lib
        self._detach()
        with self._read_lock:
            if self._ring is not None:
                self._ring.close()
                self._ring = None
        if self._obj is not None:
            lib.bpf_object__close(self._obj)
            self._obj = None
