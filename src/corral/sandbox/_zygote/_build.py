"""Building one sandbox's namespace set from a plan: mounts, hostname, loopback, user namespace.

Runs in a child of the zygote, as root, inside fresh mount, ipc and uts (and
network) namespaces that only this sandbox will use, so nothing it mounts ever
appears in the host's mount table. Mount points are resolved one component at a
time with O_NOFOLLOW under the new root, so a symlink inside an image can never
redirect a mount outside the sandbox's view.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import stat
from typing import Any

from . import _proto, _sys
from ._sys import MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC, MS_REMOUNT

_O_PATH_DIR = os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
_DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
_DEV_LINKS = {
    "fd": "/proc/self/fd",
    "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1",
    "stderr": "/proc/self/fd/2",
    "ptmx": "pts/ptmx",
}
PROC_READ_ONLY = ("sys", "sysrq-trigger", "irq", "bus")


def _ms_flags(names: list[str]) -> int:
    out = 0
    for n in names:
        out |= _sys.MS_BITS[n]
    return out


def _attr_flags(names: list[str]) -> int:
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


def _bind(src: str, tgt: str, attrs: int, *, recursive: bool, userns_fd: int = -1) -> None:
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


class IdMaps:
    """User namespaces that only carry an id mapping, for idmapped mounts (created on demand)."""

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}

    def fd(self, mapping: list[list[int]]) -> int:
        key = repr(mapping)
        if key not in self._fds:
            lines = "".join(f"{a} {b} {c}\n" for a, b, c in mapping)
            self._fds[key] = userns_fd(lines, lines)
        return self._fds[key]

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


_proc_fd = -1


def _host_proc() -> int:
    """The host's /proc, opened before pivot_root so it stays reachable afterwards."""
    global _proc_fd
    if _proc_fd < 0:
        _proc_fd = os.open("/proc", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    return _proc_fd


def _write_at(dirfd: int, rel: str, text: str) -> None:
    fd = os.open(rel, os.O_WRONLY | os.O_CLOEXEC, dir_fd=dirfd)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def userns_fd(uid_map: str, gid_map: str, *, deny_setgroups: bool = True) -> int:
    """A new user namespace with these maps, held by an fd (its only process exits at once)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            _sys.unshare(_sys.CLONE_NEWUSER)
            os.write(w, b"1")
            signal.pause()
        finally:
            os._exit(0)
    os.close(w)
    proc = _host_proc()
    try:
        if os.read(r, 1) != b"1":
            raise OSError(1, "the user-namespace helper failed")
        _write_at(proc, f"{pid}/uid_map", uid_map)
        if deny_setgroups:
            _write_at(proc, f"{pid}/setgroups", "deny")
        _write_at(proc, f"{pid}/gid_map", gid_map)
        return os.open(f"{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc)
    finally:
        os.close(r)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


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
            _bind(
                op["src"],
                tgt,
                _attr_flags(op.get("flags", [])),
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
            _sys.mount("tmpfs", tgt, "tmpfs", _ms_flags(op.get("flags", [])), data)
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
                _ms_flags(op.get("flags", [])),
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
                _bind(src, d, 0, recursive=False, userns_fd=self.idmaps.fd(op["idmap"]))
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
            _bind(
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
                _bind("/dev/null", tgt, _sys.MOUNT_ATTR_RDONLY | _sys.MOUNT_ATTR_NOSUID, recursive=False)
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
                _bind(host, ntgt, attrs, recursive=False)
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


def close_all_except(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            with contextlib.suppress(OSError):
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


def build(req: dict[str, Any], fds: list[int]) -> None:
    """The setup child: build, report the namespace fds on the reply socket, exit."""
    reply = socket.socket(fileno=fds[0])
    rest = fds[1:]
    net_fd = rest.pop(0) if req.get("net") == "fd" else -1
    lifeline = rest.pop(0) if req.get("episode") else -1
    cgroup_fds = rest
    try:
        _sys.prctl(_sys.PR_SET_PDEATHSIG, signal.SIGKILL)
        for (
            cg
        ) in cgroup_fds:  # the sandbox's own cgroup: its init and setup count there, not in the harness's
            os.write(cg, b"0")
            os.close(cg)
        _sys.unshare(
            _sys.CLONE_NEWNS
            | _sys.CLONE_NEWIPC
            | _sys.CLONE_NEWUTS
            | (0 if net_fd >= 0 else _sys.CLONE_NEWNET)
        )
        if net_fd >= 0:
            _sys.setns(net_fd, _sys.CLONE_NEWNET)
            os.close(net_fd)
        else:
            _sys.loopback_up()
        _sys.sethostname(req["hostname"])
        _sys.mount(None, "/", None, MS_REC | _sys.MS_PRIVATE)
        proc = _host_proc()
        staging, aux = req["staging"], req["aux"]
        _sys.mount("tmpfs", aux, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0700")
        root_op = req["root"]
        if root_op["op"] == "root_tmpfs":
            _sys.mount("tmpfs", staging, "tmpfs", MS_NOSUID | MS_NODEV, f"size={root_op['size']},mode=0755")
            root = Root(staging, replace=False)
            builder = Builder(root, aux)
        else:  # root_overlay: an image, copy-on-write over the cache's read-only rootfs
            builder = Builder(Root(aux, replace=False), aux)
            upper = builder._layer_tmpfs(root_op)
            lower = builder._lower(root_op)
            _sys.mount(
                "overlay",
                staging,
                "overlay",
                MS_NOSUID | MS_NODEV,
                f"lowerdir={lower},upperdir={upper}/upper,workdir={upper}/work,index=off",
            )
            root = Root(staging, replace=True)
            builder.root = root
        for op in req["plan"]:
            builder.run(op)
        builder.idmaps.close()
        os.chdir(staging)
        os.mkdir(".corral-old", 0o700)
        _sys.pivot_root(".", ".corral-old")
        os.chdir("/")
        _sys.umount("/.corral-old")
        os.rmdir("/.corral-old")
        if req.get("read_only_root", True):
            _sys.mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
        uid, gid, inside = req["host_uid"], req["host_gid"], req["inside_id"]
        user_fd = userns_fd(f"{inside} {uid} 1\n", f"{inside} {gid} 1\n")
        names = ["mnt", "ipc", "uts", "net"]
        out = [os.open(f"self/ns/{n}", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc) for n in names]
        names.append("user")
        out.append(user_fd)
        msg: dict[str, Any] = {"ok": True, "names": names}
        if lifeline >= 0:
            init_pid, pid_fd = _start_init(req, lifeline, reply)
            names.append("pid")
            out.append(pid_fd)
            msg["init_pid"] = init_pid
        _proto.send(reply, msg, out)
    except Exception as exc:  # reported, never raised past the fork
        _proto.send(reply, {"ok": False, "error": str(exc)})
        os._exit(1)
    os._exit(0)


def _start_init(req: dict[str, Any], lifeline: int, reply: socket.socket) -> tuple[int, int]:
    """Episode mode: a pid namespace whose pid 1 reaps orphans and ends everything when the owner goes."""
    _sys.unshare(_sys.CLONE_NEWPID)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            mount_proc_and_tmp(req["tmp"])  # first: closing the rest needs this pid namespace's /proc
            close_all_except({lifeline, w})
            os.write(w, b"1")
            os.close(w)
        except Exception as exc:
            with contextlib.suppress(OSError):
                os.write(w, b"0" + str(exc).encode()[:400])
            os._exit(1)
        _init_loop(lifeline)
    os.close(w)
    status = os.read(r, 512)
    os.close(r)
    if status != b"1":
        why = status[1:].decode(errors="replace")
        raise OSError(5, f"the sandbox's init could not mount /proc and /tmp: {why}")
    return pid, os.open(f"{pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC, dir_fd=_host_proc())


def _init_loop(lifeline: int) -> None:
    """pid 1 of an episode sandbox: reap orphans; exit (ending its namespace) once the lifeline closes."""
    import select

    for sig in signal.valid_signals():
        if sig not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD):
            with contextlib.suppress(OSError, ValueError):
                signal.signal(sig, signal.SIG_DFL)
    rfd, wfd = os.pipe()
    os.set_blocking(wfd, False)
    signal.set_wakeup_fd(wfd)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    poller = select.poll()
    poller.register(lifeline, select.POLLIN | select.POLLHUP)
    poller.register(rfd, select.POLLIN)
    while True:
        for fd, _ev in poller.poll():
            if fd == lifeline:
                os._exit(0)
            with contextlib.suppress(BlockingIOError):
                os.read(rfd, 512)
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
