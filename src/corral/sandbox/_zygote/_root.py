"""A sandbox's future root, and mount points made under it without ever following a symlink.

Mount points are resolved one component at a time with O_NOFOLLOW under the new root, so a
symlink inside an image can never redirect a mount outside the sandbox's view.
"""

from __future__ import annotations

import contextlib
import os

from . import _sys

_O_PATH_DIR = os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC


def ms_flags(names: list[str]) -> int:
    out = 0
    for n in names:
        out |= _sys.MS_BITS[n]
    return out


def attr_flags(names: list[str]) -> int:
    out = 0
    for n in names:
        out |= _sys.MOUNT_ATTR_BITS[n]
    return out


class Root:
    """The sandbox's future root, with mount points made safely beneath it."""

    def __init__(self, path: str, *, replace: bool) -> None:
        self.path = path
        self.replace = replace  # an image's own entries may be replaced (the change stays in its overlay)
        self.fd = os.open(path, _O_PATH_DIR)

    def _walk(self, rel: str, *, create_last: str | None) -> int:
        """An O_PATH fd of ``rel`` under the root, never following a symlink on the way."""
        parts = [p for p in rel.split("/") if p and p != "."]
        if any(p == ".." for p in parts):
            raise OSError(22, f"'..' in sandbox path {rel!r}")
        cur = os.dup(self.fd)
        try:
            for i, name in enumerate(parts):
                last = i == len(parts) - 1
                kind = create_last if last else "dir"
                nxt = self._step(cur, name, kind, rel)
                os.close(cur)
                cur = nxt
            return cur
        except BaseException:
            os.close(cur)
            raise

    def _step(self, dirfd: int, name: str, kind: str | None, rel: str) -> int:
        try:
            st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        want_dir = kind in ("dir", None)
        if st is not None:
            is_dir = (st.st_mode & 0o170000) == 0o040000
            is_reg = (st.st_mode & 0o170000) == 0o100000
            if (want_dir and is_dir) or (kind == "file" and is_reg):
                return os.open(
                    name,
                    (_O_PATH_DIR if want_dir else os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC),
                    dir_fd=dirfd,
                )
            if kind is None or not self.replace:
                raise OSError(
                    20, f"{rel}: {name!r} is not a {'directory' if want_dir else 'file'} in the sandbox root"
                )
            if is_dir:
                raise OSError(21, f"{rel}: {name!r} is a directory, a file is needed there")
            os.unlink(name, dir_fd=dirfd)  # a symlink or file of the image, replaced in its overlay only
        elif kind is None:
            raise FileNotFoundError(2, f"{rel} does not exist in the sandbox root")
        if want_dir:
            os.mkdir(name, 0o755, dir_fd=dirfd)
            return os.open(name, _O_PATH_DIR, dir_fd=dirfd)
        fd = os.open(
            name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dirfd
        )
        os.close(fd)
        return os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)

    def target(self, rel: str, kind: str) -> tuple[int, str]:
        """(fd, "/proc/self/fd/N"): a mount point under the root, created as a ``kind`` if missing."""
        fd = self._walk(rel, create_last=kind)
        return fd, f"/proc/self/fd/{fd}"

    def exists(self, rel: str) -> str | None:
        """ "dir", "file" or None; symlinks count as absent (masks skip them)."""
        parent, _, name = rel.rstrip("/").rpartition("/")
        try:
            fd = self._walk(parent, create_last=None) if parent.strip("/") else os.dup(self.fd)
        except OSError:
            return None
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except OSError:
            return None
        finally:
            os.close(fd)
        kind = st.st_mode & 0o170000
        return "dir" if kind == 0o040000 else "file" if kind == 0o100000 else None

    def symlink(self, rel: str, target: str) -> None:
        parent, _, name = rel.rstrip("/").rpartition("/")
        fd = self._walk(parent, create_last="dir") if parent.strip("/") else os.dup(self.fd)
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=fd)
            os.symlink(target, name, dir_fd=fd)
        finally:
            os.close(fd)


def bind_clone(src: str, tgt: str, attrs: int, *, recursive: bool, userns_fd: int = -1) -> None:
    """Bind ``src`` (a host path) on ``tgt`` as a detached clone, so read-only applies to every submount."""
    flags = _sys.OPEN_TREE_CLONE | _sys.OPEN_TREE_CLOEXEC | (_sys.AT_RECURSIVE if recursive else 0)
    fd = _sys.open_tree(src, flags)
    try:
        if userns_fd >= 0:
            _sys.mount_setattr(fd, _sys.MOUNT_ATTR_IDMAP, recursive=False, userns_fd=userns_fd)
        if attrs:
            _sys.mount_setattr(fd, attrs, recursive=recursive)
        _sys.move_mount_fd(fd, tgt)
    finally:
        os.close(fd)
