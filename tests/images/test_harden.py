"""Hostile layers: names that climb out, symlinks to the host, device nodes, setuid files and file
capabilities. Nothing is written outside the cache entry, and what would be dangerous on the
host's disk is gone before the entry is published. Whiteouts from later layers are applied."""

from __future__ import annotations

import os
import stat
import struct
import tarfile
from pathlib import Path

import pytest

from corral.errors import ImageError
from corral.images import ImageCache, harden_rootfs
from images_support import add_layer, busybox_rootfs, member, oci_layout

# VFS_CAP_REVISION_2 with CAP_SETUID (bit 7) permitted+effective: what `setcap cap_setuid+ep` writes.
_CAP_SETUID = struct.pack("<IIIII", 0x02000001, 1 << 7, 0, 0, 0)


def _hostile_members(outside: Path) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    cap = member("bin/capable", b"#!/bin/sh\n", mode=0o755)
    cap[0].pax_headers = {"SCHILY.xattr.security.capability": _CAP_SETUID.decode("utf-8", "surrogateescape")}
    trusted = member("etc/opaque", b"x")
    trusted[0].pax_headers = {"SCHILY.xattr.trusted.overlay.redirect": "/etc"}
    kept = member("etc/tagged", b"x")
    kept[0].pax_headers = {"SCHILY.xattr.user.note": "kept"}
    return [
        member(f"../../../../../..{outside}/dotdot", b"dotdot"),
        member(f"{outside}/absolute", b"absolute"),
        member("to-host", type=tarfile.SYMTYPE, linkname=str(outside)),
        member("to-host/through-absolute-symlink", b"through"),
        member("up", type=tarfile.SYMTYPE, linkname="../../../../../../.." + str(outside)),
        member("up/through-relative-symlink", b"through"),
        member("dev/mem", type=tarfile.CHRTYPE, devmajor=1, devminor=1, mode=0o666),
        member("dev/sda", type=tarfile.BLKTYPE, devmajor=8, devminor=0, mode=0o666),
        member("bin/rootshell", b"#!/bin/sh\n", mode=0o4755),
        member("bin/groupshell", b"#!/bin/sh\n", mode=0o2755),
        cap,
        trusted,
        kept,
        member("run/fifo", type=tarfile.FIFOTYPE),
    ]


def test_hostile_layer_writes_nothing_outside_and_is_defused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    layout = tmp_path / "layout"
    oci_layout(layout, busybox_rootfs(tmp_path / "r"), tag="hostile")
    add_layer(layout, "hostile", _hostile_members(outside), tmp_path)
    cache = ImageCache(tmp_path / "cache")
    image = cache.pull(f"oci:{layout}:hostile")
    root = image.rootfs

    assert os.listdir(outside) == []  # nothing escaped, by any route
    # The climbing names landed inside the rootfs, under the path they named.
    inside = root / str(outside).lstrip("/")
    assert sorted(os.listdir(inside)) == [
        "absolute",
        "dotdot",
        "through-absolute-symlink",
        "through-relative-symlink",
    ]
    assert os.readlink(root / "to-host") == str(outside)  # kept as a link, resolved only inside a sandbox
    assert not (root / "dev" / "mem").exists() and not (root / "dev" / "sda").exists()
    for name in ("rootshell", "groupshell"):
        mode = os.stat(root / "bin" / name).st_mode
        assert mode & (stat.S_ISUID | stat.S_ISGID) == 0 and mode & 0o777 == 0o755
    assert "security.capability" not in os.listxattr(root / "bin" / "capable")
    assert "trusted.overlay.redirect" not in os.listxattr(root / "etc" / "opaque")
    assert os.getxattr(root / "etc" / "tagged", "user.note") == b"kept"
    assert stat.S_ISFIFO(os.stat(root / "run" / "fifo").st_mode)  # harmless: kept
    # And nothing else in the whole cache is a device or setuid.
    for dirpath, dirnames, filenames in os.walk(tmp_path / "cache"):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            assert not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode))
            assert not (stat.S_ISREG(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID))


def test_hardlinks_resolve_inside_the_rootfs_never_to_host_files(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    oci_layout(layout, busybox_rootfs(tmp_path / "r"), tag="h")
    add_layer(
        layout, "h", [member("pw", type=tarfile.LNKTYPE, linkname="../../../../../etc/passwd")], tmp_path
    )
    before = os.stat("/etc/passwd")
    image = ImageCache(tmp_path / "cache").pull(f"oci:{layout}:h")
    # The link's target is the image's own /etc/passwd, not the host's.
    assert os.stat(image.rootfs / "pw").st_ino == os.stat(image.rootfs / "etc" / "passwd").st_ino
    assert os.stat(image.rootfs / "pw").st_ino != before.st_ino

    # A link to a file the image does not have (only the host does): refused, nothing published.
    oci_layout(layout, busybox_rootfs(tmp_path / "r2"), tag="h2")
    add_layer(layout, "h2", [member("sh", type=tarfile.LNKTYPE, linkname="/etc/hostname")], tmp_path)
    cache = ImageCache(tmp_path / "cache2")
    with pytest.raises(ImageError, match=r"unpacking the image's layers failed: .*link"):
        cache.pull(f"oci:{layout}:h2")
    assert os.listdir(tmp_path / "cache2" / "images") == [] and os.listdir(tmp_path / "cache2" / "tmp") == []
    after = os.stat("/etc/passwd")
    assert (after.st_ino, after.st_nlink, after.st_mtime_ns) == (
        before.st_ino,
        before.st_nlink,
        before.st_mtime_ns,
    )


def test_whiteouts_from_a_later_layer_are_applied(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    rootfs = busybox_rootfs(tmp_path / "r", {"srv/old/a": b"a", "srv/old/b": b"b", "etc/remove-me": b"x"})
    oci_layout(layout, rootfs, tag="w")
    add_layer(
        layout,
        "w",
        [
            member("etc/.wh.remove-me", b""),
            member("srv/old/.wh..wh..opq", b""),
            member("srv/old/c", b"c"),
        ],
        tmp_path,
    )
    image = ImageCache(tmp_path / "cache").pull(f"oci:{layout}:w")
    assert not (image.rootfs / "etc" / "remove-me").exists()
    assert os.listdir(image.rootfs / "srv" / "old") == ["c"]
    assert not any(name.startswith(".wh.") for _, _, files in os.walk(image.rootfs) for name in files)


def test_harden_rootfs_on_a_tree_made_by_hand(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    os.mknod(root / "sub" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    (root / "suid").write_bytes(b"x" * 5000)
    os.chmod(root / "suid", 0o4711)
    os.link(root / "suid", root / "hardlink")
    (root / "plain").write_text("p")
    os.setxattr(root / "plain", "trusted.evil", b"1")
    os.setxattr(root / "sub", "user.fine", b"1")
    report = harden_rootfs(root)
    assert report.devices_removed == 1 and report.setid_cleared >= 1 and report.xattrs_removed == 1
    assert not (root / "sub" / "null").exists()
    assert os.stat(root / "suid").st_mode & 0o7777 == 0o711
    assert os.listxattr(root / "plain") == [] and os.listxattr(root / "sub") == ["user.fine"]
    assert report.size_bytes == sum(
        os.lstat(root / n).st_blocks * 512 for n in ("sub", "suid", "plain")
    )  # the hard link is counted once
