"""Directory trees as tar streams, both ways, in bounded memory.

Upload and download over the node service (and the Ray pool) move a file or a
tree as an uncompressed PAX tar. A thread writes the tar from a host path while
the coroutine that sends it holds at most ``DEPTH`` chunks; on the far side a
thread unpacks it while the coroutine that receives it does the same. Every
entry is created relative to an open directory without following symlinks, so
no name or link in the stream can put a file outside the destination, and the
caps are checked before the bytes are written.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
import queue
import stat
import tarfile
import threading
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.errors import (
    CorralError,
    InputError,
    SandboxFileError,
    SandboxFileTooLargeError,
    SandboxPathError,
)

CHUNK = 256 * 1024
DEPTH = 8  # chunks in flight between a transfer's thread and its coroutine


@dataclass(frozen=True)
class TarLimits:
    """Caps for unpacking (the sandbox's ``files`` policy on the service; none on the client)."""

    file_max_bytes: int | None = None
    transfer_max_bytes: int | None = None
    entries_max: int | None = None
    symlinks: bool = True  # uploads recreate links inside the sandbox; downloads never carry them


@dataclass(frozen=True)
class Unpacked:
    files: int
    bytes: int


class _Cancelled(Exception):
    pass


# -- host path -> tar chunks -------------------------------------------------------------------


class _ToLoop:
    """A file object that a thread writes and a coroutine reads in chunks; the writer waits for room."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.items: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        self.room = threading.Semaphore(DEPTH)
        self._buf = bytearray()
        self.cancelled = False

    def write(self, data: bytes) -> int:
        self._buf += data
        if len(self._buf) >= CHUNK:
            self._push(bytes(self._buf))
            self._buf.clear()
        return len(data)

    def _push(self, item: bytes | BaseException | None) -> None:
        while not self.room.acquire(timeout=0.2):
            if self.cancelled:
                raise _Cancelled
        if self.cancelled:
            raise _Cancelled
        self._loop.call_soon_threadsafe(self.items.put_nowait, item)

    def finish(self, exc: BaseException | None = None) -> None:
        with contextlib.suppress(_Cancelled, RuntimeError):  # RuntimeError: the loop is gone
            if exc is None and self._buf:
                self._push(bytes(self._buf))
            self._push(exc)


def _add_tree(tar: tarfile.TarFile, root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in sorted(dirnames) + sorted(filenames):
            p = os.path.join(dirpath, name)
            mode = os.lstat(p).st_mode
            if stat.S_ISDIR(mode) or stat.S_ISREG(mode) or stat.S_ISLNK(mode):  # fifos, devices: skipped
                arc = name if rel == "." else posixpath.join(*Path(rel).parts, name)
                tar.add(p, arcname=arc, recursive=False)
        dirnames[:] = sorted(d for d in dirnames if not os.path.islink(os.path.join(dirpath, d)))


def _produce(pipe: _ToLoop, root: Path, name: str | None) -> None:
    try:
        mode = os.lstat(root).st_mode
        with tarfile.open(fileobj=pipe, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            if stat.S_ISREG(mode):
                tar.add(root, arcname=name or root.name, recursive=False)
            elif stat.S_ISDIR(mode):
                _add_tree(tar, root)
            else:
                raise SandboxPathError(f"{root}: only regular files and directories can be transferred")
    except _Cancelled:
        return
    except BaseException as exc:
        pipe.finish(exc)
        return
    pipe.finish()


async def tar_chunks(root: Path, *, name: str | None = None) -> AsyncIterator[bytes]:
    """``root`` (a file: one member called ``name``; a directory: its contents) as tar chunks."""
    pipe = _ToLoop(asyncio.get_running_loop())
    thread = threading.Thread(target=_produce, args=(pipe, root, name), name="corral-tar", daemon=True)
    thread.start()
    try:
        while True:
            item = await pipe.items.get()
            pipe.room.release()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        pipe.cancelled = True  # the thread stops at its next write


def kind_of(path: Path) -> str:
    """``file`` or ``dir`` for what ``tar_chunks`` can send; a clear error for anything else."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        raise InputError(f"{path}: no such file or directory") from None
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    raise SandboxPathError(f"{path}: only regular files and directories can be uploaded")


# -- tar chunks -> host directory --------------------------------------------------------------

_ABORT = object()


class _FromLoop:
    """A file object that a thread reads while a coroutine sends it chunks; the sender waits for room."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._q: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.room = asyncio.Semaphore(DEPTH)
        self._buf = memoryview(b"")
        self._eof = False

    async def send(self, chunk: bytes) -> None:
        await self.room.acquire()
        self._q.put(chunk)

    def end(self) -> None:
        self._q.put(None)

    def abort(self) -> None:
        self._q.put(_ABORT)

    def read(self, n: int = -1) -> bytes:
        while not self._buf and not self._eof:
            item = self._q.get()
            if item is _ABORT:
                raise _Cancelled
            if item is None:
                self._eof = True
                break
            self._loop.call_soon_threadsafe(self.room.release)
            assert isinstance(item, bytes)
            self._buf = memoryview(item)
        if n < 0 or n >= len(self._buf):
            out, self._buf = bytes(self._buf), memoryview(b"")
        else:
            out, self._buf = bytes(self._buf[:n]), self._buf[n:]
        return out


def _parts(name: str) -> list[str]:
    if not name or "\x00" in name or name.startswith("/"):
        raise SandboxPathError(f"{name!r}: not a usable path in a transfer")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise SandboxPathError(f"{name}: '..' is not allowed in a transfer")
    return parts


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_dir(parent: int, parts: list[str], *, create: bool) -> int:
    """An fd for ``parent/parts``, never following a symlink (created as directories if asked)."""
    fd = os.dup(parent)
    try:
        for part in parts:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
            nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_caps(m: tarfile.TarInfo, limits: TarLimits, total: int) -> int:
    """The running byte total after ``m``, or SandboxFileTooLargeError if a cap is passed."""
    if limits.file_max_bytes is not None and m.size > limits.file_max_bytes:
        raise SandboxFileTooLargeError(f"{m.name}: {m.size} bytes is over files.file_max_bytes")
    total += m.size
    if limits.transfer_max_bytes is not None and total > limits.transfer_max_bytes:
        raise SandboxFileTooLargeError(f"{m.name}: the transfer is over files.transfer_max_bytes")
    return total


def _unpack(tar: tarfile.TarFile, root: int, limits: TarLimits, single: str | None) -> Unpacked:
    files = total = 0
    for entries, m in enumerate(tar, 1):
        if limits.entries_max is not None and entries > limits.entries_max:
            raise SandboxFileTooLargeError(f"more than {limits.entries_max} entries (files.entries_max)")
        parts = _parts(m.name)
        if single is not None and (not m.isfile() or files):
            raise InputError("a file transfer must hold exactly one regular file")
        if m.isdir():
            if parts:
                os.close(_open_dir(root, parts, create=True))
        elif m.isfile() and parts:
            total = _check_caps(m, limits, total)
            _write_member(tar, m, root, parts[:-1], single or parts[-1])
            files += 1
        elif m.issym() and limits.symlinks and parts:
            d = _open_dir(root, parts[:-1], create=True)
            try:
                os.symlink(m.linkname, parts[-1], dir_fd=d)
            finally:
                os.close(d)
        else:
            what = "files, directories and symlinks" if limits.symlinks else "files and directories"
            raise SandboxPathError(f"{m.name}: only {what} may be transferred")
    if single is not None and not files:
        raise InputError("a file transfer must hold exactly one regular file")
    return Unpacked(files, total)


def _extract(reader: _FromLoop, dest: Path, limits: TarLimits, single: str | None) -> Unpacked:
    dest.mkdir(parents=True, exist_ok=True)
    root = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
            return _unpack(tar, root, limits, single)
    except tarfile.TarError as exc:
        raise InputError(f"not a usable tar stream: {exc}") from exc
    except OSError as exc:
        if isinstance(exc, CorralError):
            raise
        raise SandboxFileError(f"unpacking the transfer: {exc}") from exc
    finally:
        os.close(root)


def _write_member(tar: tarfile.TarFile, m: tarfile.TarInfo, root: int, parents: list[str], name: str) -> None:
    src = tar.extractfile(m)
    assert src is not None
    d = _open_dir(root, parents, create=True)
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(name, flags, 0o600, dir_fd=d)
    finally:
        os.close(d)
    try:
        os.fchmod(fd, m.mode & 0o777)
        while chunk := src.read(CHUNK):
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


async def untar_into(
    chunks: AsyncIterable[bytes], dest: Path, *, limits: TarLimits, single: str | None = None
) -> Unpacked:
    """Unpack a tar stream into the directory ``dest`` (``single``: one file, written under that name)."""
    loop = asyncio.get_running_loop()
    reader = _FromLoop(loop)
    done: asyncio.Future[Unpacked] = loop.create_future()

    def work() -> None:
        try:
            out = _extract(reader, dest, limits, single)
        except _Cancelled:
            return
        except BaseException as exc:
            loop.call_soon_threadsafe(_settle, done, None, exc)
            return
        loop.call_soon_threadsafe(_settle, done, out, None)

    threading.Thread(target=work, name="corral-untar", daemon=True).start()
    try:
        async for chunk in chunks:
            if done.done():
                break  # the unpacker stopped (an error): what is left is not read
            if chunk:
                send: asyncio.Future[None] = asyncio.ensure_future(reader.send(bytes(chunk)))
                pending: list[asyncio.Future[Any]] = [send, done]
                await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if not send.done():
                    send.cancel()
        reader.end()
        return await done
    except BaseException:
        reader.abort()
        if done.done() and not done.cancelled():
            done.exception()  # retrieved: the error that matters is the one being raised
        raise


def _settle(fut: asyncio.Future[Unpacked], value: Unpacked | None, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        assert value is not None
        fut.set_result(value)


async def receive_download(chunks: AsyncIterable[bytes], kind: str, name: str, dest: Path) -> Unpacked:
    """A download's tar stream placed as ``download`` places it: a file at ``dest`` (or inside it, if it
    is a directory), a tree's contents into ``dest``. Links and special files are refused."""
    limits = TarLimits(symlinks=False)
    if kind == "file":
        into, single = (dest, name) if dest.is_dir() else (dest.parent, dest.name)
        return await untar_into(chunks, into, limits=limits, single=single)
    if kind == "dir":
        return await untar_into(chunks, dest, limits=limits)
    raise InputError(f"a download of unknown kind {kind!r}")
