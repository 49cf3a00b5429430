"""The mount plan's operations (see ``corral.sandbox._plan``), executed under the new root before
pivot_root, and the mounts each call (or an episode's init) makes in its own view."""

from __future__ import annotations

import errno
import os
import stat
from typing import Any

from . import _sys
from ._root import Root, attr_flags, bind_clone, ms_flags
from ._sys import MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC, MS_REMOUNT
from ._userns import IdMaps

_DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
_DEV_LINKS = {
    "fd": "/proc/self/fd",
    "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1",
    "stderr": "/proc/self/fd/2",
    "ptmx": "pts/ptmx",
}
PROC_READ_ONLY = ("sys", "sysrq-trigger", "irq", "bus")


class Builder:
    """Executes plan operations (see ``corral.sandbox._plan``) under ``root``, before pivot_root."""

    def __init__(self, root: Root, aux: str) -> None:
        self.root = root
        self.aux = aux  # a private scratch mount point for overlay layers and generated files
        self.idmaps = IdMaps()
        self._aux_n = 0
        self._files_dir: str | None = None

    def _aux_dir(self, name: str) -> str:
        self._aux_n += 1
        d = os.path.join(self.aux, f"{self._aux_n}-{name}")
        os.mkdir(d, 0o700)
        return d

    def run(self, op: dict[str, Any]) -> None:
        getattr(self, "op_" + op["op"])(op)

    def op_bind(self, op: dict[str, Any]) -> None:
        kind = "dir" if os.path.isdir(op["src"]) else "file"
        fd, tgt = self.root.target(op["dst"], kind)
        try:
            userns = self.idmaps.fd(op["idmap"]) if op.get("idmap") else -1
            bind_clone(
                op["src"],
                tgt,
                attr_flags(op.get("flags", [])),
                recursive=op.get("recursive", True),
                userns_fd=userns,
            )
        finally:
            os.close(fd)

    def op_symlink(self, op: dict[str, Any]) -> None:
        self.root.symlink(op["dst"], op["target"])

    def op_mkdir(self, op: dict[str, Any]) -> None:
        fd, _ = self.root.target(op["dst"], "dir")
        os.close(fd)

    def op_tmpfs(self, op: dict[str, Any]) -> None:
        fd, tgt = self.root.target(op["dst"], "dir")
        try:
            data = f"size={op['size']},mode={op.get('mode', 0o755):o}"
            if "uid" in op:
                data += f",uid={op['uid']},gid={op['gid']}"
            _sys.mount("tmpfs", tgt, "tmpfs", ms_flags(op.get("flags", [])), data)
        finally:
            os.close(fd)

    def op_overlay(self, op: dict[str, Any]) -> None:
        """A copy-on-write view of a host directory: the host copy is the read-only lower layer."""
        fd, tgt = self.root.target(op["dst"], "dir")
        try:
            upper = self._layer_tmpfs(op)
            lower = self._lower(op)
            _sys.mount(
                "overlay",
                tgt,
                "overlay",
                ms_flags(op.get("flags", [])),
                f"lowerdir={lower},upperdir={upper}/upper,workdir={upper}/work,index=off",
            )
        finally:
            os.close(fd)

    def _layer_tmpfs(self, op: dict[str, Any]) -> str:
        d = self._aux_dir("upper")
        data = f"size={op['size']},mode=0755"
        _sys.mount("tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV, data)
        for sub in ("upper", "work"):
            os.mkdir(os.path.join(d, sub), 0o755)
        if "uid" in op:  # the top of an overlay shows its upper directory's owner and mode
            os.chown(os.path.join(d, "upper"), op["uid"], op["gid"])
        if "mode" in op:
            os.chmod(os.path.join(d, "upper"), op["mode"])
        return d

    def _lower(self, op: dict[str, Any]) -> str:
        lowers = []
        for src in op["lower"]:
            if op.get("idmap"):
                d = self._aux_dir("lower")
                bind_clone(src, d, 0, recursive=False, userns_fd=self.idmaps.fd(op["idmap"]))
                lowers.append(d)
            else:
                lowers.append(src)
        return ":".join(lowers)

    def op_file(self, op: dict[str, Any]) -> None:
        """A generated read-only file (passwd, group, resolv.conf, hosts) bound at ``dst``."""
        if self._files_dir is None:
            self._files_dir = self._aux_dir("files")
            _sys.mount(
                "tmpfs", self._files_dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=1m,mode=0755"
            )
        src = os.path.join(self._files_dir, str(self._aux_n) + "-" + os.path.basename(op["dst"]))
        self._aux_n += 1
        with open(src, "w") as f:
            f.write(op["content"])
        os.chmod(src, op.get("mode", 0o644))
        fd, tgt = self.root.target(op["dst"], "file")
        try:
            bind_clone(
                src,
                tgt,
                _sys.MOUNT_ATTR_RDONLY | _sys.MOUNT_ATTR_NOSUID | _sys.MOUNT_ATTR_NODEV,
                recursive=False,
            )
        finally:
            os.close(fd)

    def op_mask(self, op: dict[str, Any]) -> None:
        """Hide a path that exists (an empty read-only dir, or /dev/null); symlinks and absent paths stay."""
        kind = self.root.exists(op["dst"])
        if kind is None:
            return
        fd, tgt = self.root.target(op["dst"], kind)
        try:
            if kind == "dir":
                _sys.mount(
                    "tmpfs", tgt, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, "size=4k,mode=0755"
                )
            else:
                bind_clone("/dev/null", tgt, _sys.MOUNT_ATTR_RDONLY | _sys.MOUNT_ATTR_NOSUID, recursive=False)
        finally:
            os.close(fd)

    def op_dev(self, op: dict[str, Any]) -> None:
        """A minimal /dev: the harmless character devices, a private devpts, and GPU nodes granted."""
        fd, tgt = self.root.target("/dev", "dir")
        try:
            _sys.mount("tmpfs", tgt, "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=0755")
        finally:
            os.close(fd)
        nodes = [
            (name, f"/dev/{name}", _sys.MOUNT_ATTR_NOSUID | _sys.MOUNT_ATTR_NOEXEC)
            for name in _DEV_NODES
            if os.path.exists(f"/dev/{name}")
        ]
        for name, host in op.get("extra", ()):  # granted GPU nodes: one missing fails the build
            if not stat.S_ISCHR(os.stat(host).st_mode):
                raise OSError(errno.ENODEV, f"{host} is not a character device")
            # no noexec: a driver may map its device with PROT_EXEC (nothing can be executed from a device)
            nodes.append((name, host, _sys.MOUNT_ATTR_NOSUID))
        for name, host, attrs in nodes:
            nfd, ntgt = self.root.target(f"/dev/{name}", "file")
            try:
                bind_clone(host, ntgt, attrs, recursive=False)
            finally:
                os.close(nfd)
        for name, target in _DEV_LINKS.items():
            self.root.symlink(f"/dev/{name}", target)
        for sub in ("pts", "shm"):
            sfd, _ = self.root.target(f"/dev/{sub}", "dir")
            os.close(sfd)
        pfd, ptgt = self.root.target("/dev/pts", "dir")
        try:
            _sys.mount("devpts", ptgt, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620")
        finally:
            os.close(pfd)

    def op_readonly(self, op: dict[str, Any]) -> None:
        """Make the mount at ``dst`` (only that one, not its submounts) read-only.

        Walked again after mounting, so the fd names the mount's root, which is what a remount needs."""
        fd, tgt = self.root.target(op["dst"], "dir")
        try:
            _sys.mount(None, tgt, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
        finally:
            os.close(fd)


def mount_proc_and_tmp(tmp: dict[str, Any]) -> None:
    """What each call (or, in episode mode, the sandbox's init) mounts in its own pid namespace's view."""
    for target in ("/proc", "/tmp", "/dev/shm"):  # a writable image root could have swapped one for a link
        if not stat.S_ISDIR(os.lstat(target).st_mode):
            raise OSError(20, f"{target} is not a directory in the sandbox root")
    _sys.mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for sub in PROC_READ_ONLY:
        path = f"/proc/{sub}"
        if os.path.exists(path):
            _sys.mount(path, path, None, MS_BIND | MS_REC)
            _sys.mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if tmp.get("nvidia"):
        _nvidia_gpus(tmp["nvidia"]["root"], tmp["nvidia"]["keep"])
    flags = MS_NOSUID | MS_NODEV | (MS_NOEXEC if tmp.get("noexec") else 0)
    _sys.mount("tmpfs", "/tmp", "tmpfs", flags, f"size={tmp['size']},mode=1777")
    _sys.mount("tmpfs", "/dev/shm", "tmpfs", flags, f"size={tmp['size']},mode=1777")


def _nvidia_gpus(root: str, keep: list[str]) -> None:
    """Only the granted GPUs under the driver's ``gpus/`` (the layout libnvidia-container makes)."""
    gpus = os.path.join(root, "gpus")
    if not os.path.isdir(gpus):
        return  # no NVIDIA driver on this machine
    clones: list[tuple[str, int]] = []
    try:
        for bus in keep:  # a granted GPU gone from the driver fails the call: its view would be wrong
            if "/" in bus or bus in ("", ".", ".."):
                raise OSError(errno.EINVAL, f"bad PCI bus id {bus!r}")
            clones.append(
                (bus, _sys.open_tree(os.path.join(gpus, bus), _sys.OPEN_TREE_CLONE | _sys.OPEN_TREE_CLOEXEC))
            )
        _sys.mount("tmpfs", gpus, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=16k,mode=0555")
        for bus, fd in clones:
            os.mkdir(os.path.join(gpus, bus), 0o555)
            _sys.move_mount_fd(fd, os.path.join(gpus, bus))
        _sys.mount(None, gpus, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    finally:
        for _, fd in clones:
            os.close(fd)
