"""Reading a BPF ring buffer: mapped once and read here, or through libbpf's consumer.

libbpf maps the ring's data twice, back to back, so that a record crossing the
end reads as one piece; the kernel fills every page of both mappings at mmap
time, and the process's RSS counts the ring twice. ``MappedRing`` maps it once
and joins a wrapped record itself, and reads records without a callback into
Python per record. It relies on x86-64's ordered loads (the kernel publishes a
record by clearing its busy bit after writing it); elsewhere ``LibbpfRing``
uses libbpf's consumer, which has the barriers.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import platform
import select
from typing import Protocol

BUSY = 1 << 31
DISCARD = 1 << 30
HEADER = 8
_PAGE = mmap.PAGESIZE
_SAMPLE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)


class Ring(Protocol):
    def wait(self, timeout_ms: int) -> None:
        """Return once a record may be there to read, or after ``timeout_ms``; OSError on failure."""
        ...

    def read(self) -> list[bytes]:
        """The records committed so far, without waiting (one reader at a time); OSError on failure."""
        ...

    def close(self) -> None: ...


class MappedRing:
    """The ring mapped once: the consumer page read-write, the producer page and data read-only."""

    def __init__(self, map_fd: int, size: int) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = (
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_long,
        )
        libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
        self._libc = libc
        self._size, self._mask = size, size - 1
        prot_rw = mmap.PROT_READ | mmap.PROT_WRITE
        self._consumer = self._map(map_fd, _PAGE, prot_rw, 0)
        try:
            self._producer = self._map(map_fd, _PAGE + size, mmap.PROT_READ, _PAGE)
        except OSError:
            libc.munmap(self._consumer, _PAGE)
            raise
        self._data = self._producer + _PAGE
        # Aligned 8-byte loads and stores through ctypes: one instruction each, never torn.
        self._cons = ctypes.c_uint64.from_address(self._consumer)
        self._prod = ctypes.c_uint64.from_address(self._producer)
        self._epoll = select.epoll()
        self._epoll.register(map_fd, select.EPOLLIN)

    def _map(self, fd: int, length: int, prot: int, offset: int) -> int:
        addr = self._libc.mmap(None, length, prot, mmap.MAP_SHARED, fd, offset)
        if addr in (None, ctypes.c_void_p(-1).value):
            code = ctypes.get_errno()
            raise OSError(code, f"mmap of the ring buffer: {os.strerror(code)}")
        return int(addr)

    def wait(self, timeout_ms: int) -> None:
        if self._prod.value == self._cons.value:
            self._epoll.poll(timeout_ms / 1000)  # retried on EINTR (PEP 475)

    def read(self) -> list[bytes]:
        out: list[bytes] = []
        cons = self._cons.value
        data, mask, size = self._data, self._mask, self._size
        while True:
            prod = self._prod.value
            if cons >= prod:
                break
            while cons < prod:
                at = cons & mask
                length = ctypes.c_uint32.from_address(data + at).value
                if length & BUSY:  # reserved, not yet committed: everything after it waits too
                    self._cons.value = cons
                    return out
                n = length & ~(BUSY | DISCARD)
                if not length & DISCARD:
                    start = (at + HEADER) & mask
                    if start + n <= size:
                        out.append(ctypes.string_at(data + start, n))
                    else:  # wraps round the end of the ring
                        first = size - start
                        out.append(ctypes.string_at(data + start, first) + ctypes.string_at(data, n - first))
                cons += (n + HEADER + 7) & ~7
            self._cons.value = cons  # the kernel may reuse the space from here
        return out

    def close(self) -> None:
        self._epoll.close()
        self._libc.munmap(self._consumer, _PAGE)
        self._libc.munmap(self._producer, _PAGE + self._size)


class LibbpfRing:
    """libbpf's consumer (``ring_buffer__poll``), its records copied out by a callback."""

    def __init__(self, lib: ctypes.CDLL, map_fd: int) -> None:
        self._lib = lib
        self._batch: list[bytes] = []
        self._callback = _SAMPLE_FN(self._sample)  # kept alive as long as the ring
        rb = lib.ring_buffer__new(map_fd, self._callback, None, None)
        if not rb:
            code = ctypes.get_errno()
            raise OSError(code, f"ring_buffer__new: {os.strerror(code)}")
        self._rb: int | None = rb
        self._epoll = select.epoll()
        self._epoll.register(lib.ring_buffer__epoll_fd(rb), select.EPOLLIN)

    def _sample(self, _ctx: int | None, data: int, size: int) -> int:
        self._batch.append(ctypes.string_at(data, size))
        return 0

    def wait(self, timeout_ms: int) -> None:
        self._epoll.poll(timeout_ms / 1000)

    def read(self) -> list[bytes]:
        n = self._lib.ring_buffer__consume(self._rb)
        if n < 0 and -n != errno.EINTR:
            raise OSError(-n, f"ring_buffer__consume: {os.strerror(-n)}")
        batch, self._batch = self._batch, []
        return batch

    def close(self) -> None:
        self._epoll.close()
        if self._rb is not None:
            self._lib.ring_buffer__free(self._rb)
            self._rb = None


def direct_reads() -> bool:
    """Whether ``MappedRing`` may read here (loads are ordered on x86-64 only)."""
    return platform.machine() in ("x86_64", "AMD64")
