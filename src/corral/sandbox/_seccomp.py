"""The seccomp filter every sandboxed process runs under, built with libseccomp.

Denied with EPERM: creating or entering namespaces, ptrace and cross-process
memory access, mounting, kernel modules and kexec, keyrings, BPF and perf,
and a handful of host-wide knobs. ``clone3`` gets ENOSYS so that libc falls
back to ``clone``, whose flags the filter can inspect.
"""

from __future__ import annotations

import errno
import functools
import os
import tempfile

import pyseccomp as seccomp

from corral.errors import SandboxUnavailableError

DENIED_SYSCALLS: tuple[str, ...] = (
    # namespaces
    "unshare",
    "setns",
    # debugging other processes
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    # mounts and filesystem topology
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsmount",
    "fsconfig",
    "fspick",
    "mount_setattr",
    # kernel code
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    # keyrings
    "add_key",
    "request_key",
    "keyctl",
    # kernel attack surface commonly abused for escapes
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "open_by_handle_at",
    "name_to_handle_at",
    # host-wide state
    "acct",
    "swapon",
    "swapoff",
    "reboot",
    "syslog",
    "quotactl",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "iopl",
    "ioperm",
    "lookup_dcookie",
    "vhangup",
)

# Extra denials when a program allowlist is in force: anonymous executable memory files
# would let a process run a binary that is not mounted.
ALLOWLIST_DENIED: tuple[str, ...] = ("memfd_create", "execveat")

CLONE_NS_BITS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
    0x00000080,  # CLONE_NEWTIME
)


@functools.cache
def filter_bpf(program_allowlist: bool) -> bytes:
    """The compiled BPF program (cached: the filter depends only on this switch)."""
    try:
        f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
        for name in DENIED_SYSCALLS + (ALLOWLIST_DENIED if program_allowlist else ()):
            try:
                f.add_rule(seccomp.ERRNO(errno.EPERM), name)
            except (ValueError, OSError):
                continue  # not a syscall on this architecture
        # One rule per namespace bit: libseccomp compares masked args for equality.
        for bit in CLONE_NS_BITS:
            f.add_rule(seccomp.ERRNO(errno.EPERM), "clone", seccomp.Arg(0, seccomp.MASKED_EQ, bit, bit))
        f.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
        with tempfile.TemporaryFile() as tmp:
            f.export_bpf(tmp)
            tmp.seek(0)
            return tmp.read()
    except (OSError, RuntimeError) as exc:
        raise SandboxUnavailableError(f"cannot build the seccomp filter with libseccomp: {exc}") from exc


def filter_fd(program_allowlist: bool) -> int:
    """A readable fd holding the filter, for bubblewrap's ``--seccomp FD`` (caller closes)."""
    data = filter_bpf(program_allowlist)
    r, w = os.pipe()
    # The filter is a few KiB, well under the pipe buffer, so this write never blocks.
    os.write(w, data)
    os.close(w)
    return r
