"""Linux system calls Python 3.11 does not wrap, through ctypes (x86_64 and aarch64 numbers).

Every zygote module imports what it needs at the top: its children enter sandboxes whose root
does not hold this interpreter's standard library, so nothing may be imported after that.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import platform
import signal
import socket
import struct
from collections.abc import Iterable

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.syscall.restype = ctypes.c_long
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]

_NR = {
    "x86_64": {
        "pivot_root": 155,
        "setns": 308,
        "unshare": 272,
        "capset": 126,
        "open_tree": 428,
        "move_mount": 429,
        "mount_setattr": 442,
        "seccomp": 317,
        "close_range": 436,
        "pidfd_open": 434,
        "openat2": 437,
    },
    "aarch64": {
        "pivot_root": 41,
        "setns": 268,
        "unshare": 97,
        "capset": 91,
        "open_tree": 428,
        "move_mount": 429,
        "mount_setattr": 442,
        "seccomp": 277,
        "close_range": 436,
        "pidfd_open": 434,
        "openat2": 437,
    },
}[platform.machine()]

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
NS_FLAGS = {
    "mnt": CLONE_NEWNS,
    "uts": CLONE_NEWUTS,
    "ipc": CLONE_NEWIPC,
    "user": CLONE_NEWUSER,
    "pid": CLONE_NEWPID,
    "net": CLONE_NEWNET,
}

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2

OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_EMPTY_PATH = 0x40
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR_IDMAP = 0x100000
MOUNT_ATTR_BITS = {
    "ro": MOUNT_ATTR_RDONLY,
    "nosuid": MOUNT_ATTR_NOSUID,
    "nodev": MOUNT_ATTR_NODEV,
    "noexec": MOUNT_ATTR_NOEXEC,
}
MS_BITS = {"ro": MS_RDONLY, "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
PR_SET_CHILD_SUBREAPER = 36
SECCOMP_SET_MODE_FILTER = 1
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def _b(s: str | None) -> bytes | None:
    return None if s is None else os.fsencode(s)


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(
        _libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)),
        f"mount {fstype or source} on {target}",
    )


def umount(target: str, flags: int = MNT_DETACH) -> None:
    _check(_libc.umount2(_b(target), flags), f"umount {target}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), f"unshare {flags:#x}")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(fd, nstype), f"setns {nstype:#x}")


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_libc.syscall(_NR["pivot_root"], _b(new_root), _b(put_old)), "pivot_root")


def open_tree(path: str, flags: int) -> int:
    return _check(_libc.syscall(_NR["open_tree"], -100, _b(path), ctypes.c_uint(flags)), f"open_tree {path}")


def move_mount_fd(fd: int, target: str) -> None:
    """Attach the detached mount ``fd`` at ``target``; a ``/proc/self/fd/N`` target means that fd itself."""
    if target.startswith("/proc/self/fd/"):
        to_fd, to_path, flags = (
            int(target.rsplit("/", 1)[1]),
            b"",
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    else:
        to_fd, to_path, flags = -100, os.fsencode(target), MOVE_MOUNT_F_EMPTY_PATH
    _check(
        _libc.syscall(_NR["move_mount"], fd, b"", to_fd, to_path, ctypes.c_uint(flags)),
        f"move_mount to {target}",
    )


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def mount_setattr(fd: int, attr_set: int, *, recursive: bool, userns_fd: int = -1) -> None:
    attr = _MountAttr(attr_set, 0, 0, userns_fd if userns_fd >= 0 else 0)
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    _check(
        _libc.syscall(
            _NR["mount_setattr"], fd, b"", ctypes.c_uint(flags), ctypes.byref(attr), ctypes.c_size_t(32)
        ),
        "mount_setattr",
    )


def prctl(option: int, arg2: int = 0, arg3: int = 0) -> None:
    _check(_libc.prctl(option, arg2, arg3, 0, 0), f"prctl {option}")


def last_cap() -> int:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


def drop_capabilities(last: int | None) -> None:
    """Empty the ambient, effective, permitted and inheritable sets, and the bounding set
    (capabilities 0 to ``last``; ``None``: the caller has emptied it already)."""
    for cap in range((last + 1) if last is not None else 0):
        prctl(PR_CAPBSET_DROP, cap)
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    header = struct.pack("=Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
    data = bytes(24)  # two all-zero __user_cap_data_struct
    _check(_libc.syscall(_NR["capset"], header, data), "capset")


def join_user_namespace(fd: int, last_cap: int) -> None:
    """Enter a sandbox's user namespace, still host root, and empty the bounding set there."""
    os.setgroups([])
    setns(fd, CLONE_NEWUSER)
    for cap in range(last_cap + 1):
        prctl(PR_CAPBSET_DROP, cap)


def become(ident: int) -> None:
    """Become ``ident`` of the joined user namespace with no capabilities left (the bounding set
    emptied by ``join_user_namespace``), no_new_privs, not dumpable, killed with its parent."""
    os.setresgid(ident, ident, ident)
    os.setresuid(ident, ident, ident)
    drop_capabilities(None)
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    prctl(PR_SET_DUMPABLE, 0)
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # reset by the uid change, so set after it


class _Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class SeccompProgram:
    """A classic-BPF seccomp filter, ready to install. Made once, in the zygote, so that a call's
    process only makes the syscall: building the ctypes objects there cost each call 0.2-0.5 ms."""

    def __init__(self, program: bytes) -> None:
        self._buf = ctypes.create_string_buffer(program, len(program))
        self._prog = _Fprog(len(program) // 8, ctypes.cast(self._buf, ctypes.c_void_p))

    def install(self) -> None:
        """On this process (no_new_privs, or CAP_SYS_ADMIN in its user namespace, must be there)."""
        _check(
            _libc.syscall(_NR["seccomp"], SECCOMP_SET_MODE_FILTER, 0, ctypes.byref(self._prog)),
            "seccomp(SET_MODE_FILTER)",
        )


Filters = dict[str, SeccompProgram]  # the zygote's registered filters, by name


def _close_range(lo: int, hi: int) -> None:
    if _libc.syscall(_NR["close_range"], ctypes.c_uint(lo), ctypes.c_uint(hi), 0) < 0:
        os.closerange(lo, min(hi, (1 << 20) - 1) + 1)  # a kernel before 5.9


def close_all_but(keep: Iterable[int], first: int = 3) -> None:
    """Close every descriptor from ``first`` up except ``keep``: a few syscalls, however many the
    process holds (a zygote's child would otherwise close each call's reply socket in turn)."""
    lo = first
    for fd in sorted({k for k in keep if k >= first}):
        if fd > lo:
            _close_range(lo, fd - 1)
        lo = fd + 1
    _close_range(lo, 0xFFFFFFFF)


def openat2(dirfd: int, path: str, flags: int, mode: int, resolve: int) -> int:
    how = struct.pack("=QQQ", flags, mode, resolve)
    return _check(
        _libc.syscall(_NR["openat2"], dirfd, _b(path), how, ctypes.c_size_t(len(how))), f"open {path}"
    )


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), "sethostname")


def loopback_up() -> None:
    """Bring ``lo`` up in the current network namespace (SIOCGIFFLAGS / SIOCSIFFLAGS)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(s.fileno(), 0x8913, req))[1]
        fcntl.ioctl(s.fileno(), 0x8914, struct.pack("16sH14s", b"lo", flags | 0x1 | 0x40, b""))
