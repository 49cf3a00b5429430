"""Make an unpacked root filesystem safe to keep on the host before it is published.

umoci confines every layer entry to the rootfs (``..``, absolute names and symlinked parents
resolve inside it), but it faithfully recreates what the image asks for: device nodes,
setuid/setgid files and file capabilities. None of those can do anything inside a sandbox
(no capabilities, a non-root uid, nodev/nosuid mounts), yet on the host's disk a ``crw-rw-rw-
1,1`` node is /dev/mem and a setuid-root shell is root for anyone who can reach it. So they are
removed here, along with every extended attribute outside ``user.`` (``security.capability``,
ACLs that grant host uids access, ``trusted.overlay.*`` that overlayfs would obey).
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path


@dataclass
class HardenReport:
    size_bytes: int = 0
    files: int = 0
    devices_removed: int = 0
    setid_cleared: int = 0
    xattrs_removed: int = 0


def harden_rootfs(root: Path) -> HardenReport:
    report = HardenReport()
    seen: set[tuple[int, int]] = set()
    _strip_xattrs(str(root), report)
    stack = [str(root)]
    while stack:
        top = stack.pop()
        with os.scandir(top) as it:
            entries = list(it)
        for entry in entries:
            st = entry.stat(follow_symlinks=False)
            mode = st.st_mode
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                os.unlink(entry.path)
                report.devices_removed += 1
                continue
            report.files += 1
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                report.size_bytes += st.st_blocks * 512
            if stat.S_ISREG(mode) and mode & (stat.S_ISUID | stat.S_ISGID):
                os.chmod(entry.path, stat.S_IMODE(mode) & ~(stat.S_ISUID | stat.S_ISGID))
                report.setid_cleared += 1
            _strip_xattrs(entry.path, report)
            if stat.S_ISDIR(mode):
                stack.append(entry.path)
    return report


def _strip_xattrs(path: str, report: HardenReport) -> None:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM):
            return
        raise
    for name in names:
        # user.* is plain data; security.selinux is the host's own label, not something the image grants.
        if name.startswith("user.") or name == "security.selinux":
            continue
        try:
            os.removexattr(path, name, follow_symlinks=False)
        except OSError as exc:
            if exc.errno != errno.ENODATA:
                raise
        report.xattrs_removed += 1
