"""Moving files between the trainer and a sandbox: paths checked against the policy, sizes capped.

Inside the sandbox every path is opened by a file session (as the sandbox's uid,
in its own view), so nothing the agent planted can reach a host file. On the
host, files from a sandbox are created under the destination without following
any symlink, and symlinks or special files from the sandbox are never recreated
on the host: names and links are the agent's to choose.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import posixpath
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

from corral.errors import SandboxFileTooLargeError, SandboxIsADirectoryError, SandboxPathError
from corral.events import FileTransfer
from corral.harness._interface import FileEntry
from corral.policy import FilesSection
from corral.sandbox import FileSession

_CHUNK = 1 << 20
_KERNEL = ("/proc", "/sys", "/dev")

Record = Callable[[FileTransfer], None]


def sandbox_path(path: str, *, workspace: str, files: FilesSection, write: bool) -> str:
    """The absolute in-sandbox path for ``path``, or SandboxPathError if the policy does not allow it."""
    if not isinstance(path, str) or not path or "\x00" in path:
        raise SandboxPathError(f"{path!r}: not a usable path")
    if any(part == ".." for part in path.split("/")):
        raise SandboxPathError(f"{path}: '..' is not allowed in sandbox paths")
    full = posixpath.normpath(path if path.startswith("/") else posixpath.join(workspace, path))
    allowed = [workspace, *(files.write_paths if write else (*files.read_paths, *files.write_paths))]
    if any(full == k or full.startswith(k + "/") for k in _KERNEL):
        raise SandboxPathError(f"{path}: file transfers never touch /proc, /sys or /dev")
    if not any(full == a or full.startswith(a.rstrip("/") + "/") for a in allowed):
        where = "the workspace" + (" or files.write_paths" if write else " or files.read_paths")
        raise SandboxPathError(f"{path}: outside {where}")
    return full


def _copy(src: int, dst: int, limit: int, what: str) -> tuple[int, str]:
    """Copy ``src`` to ``dst`` (blocking; run in a thread); returns (bytes, sha256)."""
    h = hashlib.sha256()
    total = 0
    while True:
        chunk = os.read(src, _CHUNK)
        if not chunk:
            return total, h.hexdigest()
        total += len(chunk)
        if total > limit:
            raise SandboxFileTooLargeError(f"{what}: more than {limit} bytes (files caps in the policy)")
        h.update(chunk)
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst, view) :]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class Transfers:
    """File operations of one sandbox (a session is opened per operation)."""

    def __init__(
        self,
        open_session: Callable[[], Awaitable[FileSession]],
        *,
        workspace: str,
        files: FilesSection,
        record: Record,
    ) -> None:
        self._open = open_session
        self.workspace = workspace
        self.files = files
        self._record = record

    async def _session(self) -> FileSession:
        return await self._open()

    def _path(self, path: str, *, write: bool) -> str:
        return sandbox_path(path, workspace=self.workspace, files=self.files, write=write)

    async def write_file(self, path: str, data: bytes | str, *, mode: int = 0o644) -> None:
        raw = data.encode() if isinstance(data, str) else bytes(data)
        if len(raw) > self.files.file_max_bytes:
            raise SandboxFileTooLargeError(f"{path}: {len(raw)} bytes is over files.file_max_bytes")
        full = self._path(path, write=True)
        sess = await self._session()
        try:
            fd, _ = await sess.open_file(full, "w", parents=True, perm=mode & 0o7777)
            try:
                await asyncio.to_thread(_write_all, fd, raw)
            finally:
                os.close(fd)
        finally:
            sess.close()
        self._record(
            FileTransfer(
                direction="in",
                TargetFilename=full,
                operation="write_file",
                bytes=len(raw),
                sha256=hashlib.sha256(raw).hexdigest(),
            )
        )

    async def read_file(self, path: str) -> bytes:
        full = self._path(path, write=False)
        sess = await self._session()
        try:
            fd, size = await sess.open_file(full, "r")
        finally:
            sess.close()
        try:
            if size > self.files.file_max_bytes:
                raise SandboxFileTooLargeError(f"{path}: {size} bytes is over files.file_max_bytes")
            data = await asyncio.to_thread(_read_capped, fd, self.files.file_max_bytes, path)
        finally:
            os.close(fd)
        self._record(
            FileTransfer(
                direction="out",
                TargetFilename=full,
                operation="read_file",
                bytes=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
            )
        )
        return data

    async def list_files(self, path: str = ".", *, recursive: bool = False) -> list[FileEntry]:
        full = self._path(path, write=False)
        sess = await self._session()
        try:
            info = await sess.stat(full)
            if info["kind"] != "dir":
                return [
                    FileEntry(
                        path=posixpath.basename(full), kind=info["kind"], size=info["size"], mode=info["mode"]
                    )
                ]
            entries = await sess.list(full, recursive=recursive, limit=self.files.entries_max)
        finally:
            sess.close()
        return [FileEntry(**e) for e in entries]

    async def upload(self, src: str | Path, dest: str) -> None:
        """Copy a host file or directory tree into the sandbox (symlinks are recreated, not followed)."""
        src = Path(src)
        st = os.lstat(src)
        base = self._path(dest, write=True)
        if stat.S_ISREG(st.st_mode) and dest.endswith("/"):
            base = posixpath.join(base, src.name)
        sess = await self._session()
        moved = files = 0
        try:
            if stat.S_ISREG(st.st_mode):
                moved = await self._put(sess, src, base, st.st_mode, 0)
                files = 1
            elif stat.S_ISDIR(st.st_mode):
                await sess.mkdir(base, parents=True)
                count = 0
                for dirpath, dirnames, filenames in os.walk(src):
                    rel = os.path.relpath(dirpath, src)
                    inside = base if rel == "." else posixpath.join(base, *Path(rel).parts)
                    for name in sorted(dirnames):
                        p = os.path.join(dirpath, name)
                        if os.path.islink(p):
                            await sess.symlink(posixpath.join(inside, name), os.readlink(p))
                        else:
                            await sess.mkdir(posixpath.join(inside, name), parents=False)
                        count += 1
                    for name in sorted(filenames):
                        p = os.path.join(dirpath, name)
                        fst = os.lstat(p)
                        target = posixpath.join(inside, name)
                        if stat.S_ISLNK(fst.st_mode):
                            await sess.symlink(target, os.readlink(p))
                        elif stat.S_ISREG(fst.st_mode):
                            moved += await self._put(sess, Path(p), target, fst.st_mode, moved)
                            files += 1
                        count += 1
                        if count > self.files.entries_max:
                            raise SandboxFileTooLargeError(f"{src}: more than files.entries_max entries")
                    dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
            else:
                raise SandboxPathError(f"{src}: only regular files and directories can be uploaded")
        finally:
            sess.close()
        self._record(
            FileTransfer(direction="in", TargetFilename=base, operation="upload", files=files, bytes=moved)
        )

    async def _put(self, sess: FileSession, src: Path, target: str, mode: int, moved: int) -> int:
        size = os.lstat(src).st_size
        if size > self.files.file_max_bytes:
            raise SandboxFileTooLargeError(f"{src}: {size} bytes is over files.file_max_bytes")
        if moved + size > self.files.transfer_max_bytes:
            raise SandboxFileTooLargeError(f"{src}: the upload is over files.transfer_max_bytes")
        fd, _ = await sess.open_file(target, "w", parents=True, perm=mode & 0o777)
        try:
            hfd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                n, _ = await asyncio.to_thread(_copy, hfd, fd, self.files.file_max_bytes, str(src))
            finally:
                os.close(hfd)
        finally:
            os.close(fd)
        return n

    async def download(self, src: str, dest: str | Path) -> None:
        """Copy a sandbox file or directory tree to the host; symlinks and special files are skipped."""
        full = self._path(src, write=False)
        dest = Path(dest)
        sess = await self._session()
        moved = files = skipped = 0
        try:
            info = await sess.stat(full)
            if info["kind"] == "file":
                target = dest / posixpath.basename(full) if dest.is_dir() else dest
                with _HostDir(target.parent) as d:
                    moved = await self._get(sess, full, d, target.name, 0)
                files = 1
            elif info["kind"] == "dir":
                entries = await sess.list(full, recursive=True, limit=self.files.entries_max)
                with _HostDir(dest) as root:
                    for e in entries:
                        parts = e["path"].split("/")
                        if e["kind"] == "dir":
                            root.mkdirs(parts)
                        elif e["kind"] == "file":
                            sub = root.sub(parts[:-1])
                            try:
                                moved += await self._get(
                                    sess, posixpath.join(full, e["path"]), sub, parts[-1], moved
                                )
                            finally:
                                if sub is not root:
                                    sub.close()
                            files += 1
                        else:
                            skipped += 1
            else:
                raise SandboxIsADirectoryError(21, f"{src} is a {info['kind']}, not a file or directory", src)
        finally:
            sess.close()
        self._record(
            FileTransfer(
                direction="out",
                TargetFilename=full,
                operation="download",
                files=files,
                bytes=moved,
                skipped=skipped,
            )
        )

    async def _get(self, sess: FileSession, inside: str, d: _HostDir, name: str, moved: int) -> int:
        fd, size = await sess.open_file(inside, "r")
        try:
            if size > self.files.file_max_bytes:
                raise SandboxFileTooLargeError(f"{inside}: {size} bytes is over files.file_max_bytes")
            if moved + size > self.files.transfer_max_bytes:
                raise SandboxFileTooLargeError(f"{inside}: the download is over files.transfer_max_bytes")
            out = d.create(name)
            try:
                n, _ = await asyncio.to_thread(_copy, fd, out, self.files.file_max_bytes, inside)
            finally:
                os.close(out)
        finally:
            os.close(fd)
        return n


def _read_capped(fd: int, cap: int, what: str) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = os.read(fd, _CHUNK)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > cap:
            raise SandboxFileTooLargeError(f"{what}: more than {cap} bytes (files.file_max_bytes)")
        chunks.append(chunk)


class _HostDir:
    """A host directory opened without following symlinks, for creating what a sandbox hands out."""

    def __init__(self, path: Path | None = None, fd: int | None = None) -> None:
        if fd is None:
            assert path is not None
            path.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.fd = fd

    def __enter__(self) -> _HostDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    @staticmethod
    def _name(name: str) -> str:
        if name in ("", ".", "..") or "/" in name or "\x00" in name:
            raise SandboxPathError(f"{name!r}: not a usable file name")
        return name

    def sub(self, parts: list[str]) -> _HostDir:
        if not parts:
            return self
        fd = os.dup(self.fd)
        for part in parts:
            try:
                nxt = os.open(
                    self._name(part), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd
                )
            finally:
                os.close(fd)
            fd = nxt
        return _HostDir(fd=fd)

    def mkdirs(self, parts: list[str]) -> None:
        fd = os.dup(self.fd)
        try:
            for part in parts:
                name = self._name(part)
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o755, dir_fd=fd)
                nxt = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                os.close(fd)
                fd = nxt
        finally:
            os.close(fd)

    def create(self, name: str, mode: int = 0o644) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        return os.open(self._name(name), flags, mode, dir_fd=self.fd)
