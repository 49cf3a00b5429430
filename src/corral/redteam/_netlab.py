"""The red-team lab: a private network namespace for the runner, and target namespaces wired to it.

Safety by construction: the runner's main thread moves into a fresh network
namespace (the "lab") before any sandbox, proxy or target exists. Every thread
and child started afterwards lives there too, so even a completely broken
policy can only reach the fake targets: the lab has no uplink, and the host's
routes, ip_forward and nftables are never touched. Target namespaces are
named (``ip netns add``) so that sshd can be started in them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from corral.errors import SandboxSetupError

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        raise SandboxSetupError(f"setns: {os.strerror(ctypes.get_errno())}")


def ip(*args: str, netns: str | None = None) -> None:
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    p = subprocess.run(argv, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise SandboxSetupError(f"{' '.join(argv)}: {p.stderr.strip()}")


@contextlib.contextmanager
def in_netns(path: str) -> Iterator[None]:
    """Run the block on this thread in the netns at ``path``; sockets made inside stay there."""
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(fd)
        try:
            yield
        finally:
            _setns(back)
    finally:
        os.close(fd)
        os.close(back)


@dataclass(frozen=True)
class TargetNet:
    """One target namespace: a veth to the lab, its own addresses, a default route back."""

    name: str  # named netns
    link_ip: str  # the target's end of the transfer link
    addresses: tuple[str, ...]  # service addresses (CIDR form) inside the namespace

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"


@dataclass
class Lab:
    """The runner's private netns and the target namespaces; ``close`` undoes everything."""

    tag: str
    host_fd: int = -1  # the netns the runner came from, to return to and to check for changes
    targets: list[TargetNet] = field(default_factory=list)

    @classmethod
    def enter(cls, tag: str) -> Lab:
        """Move the calling (main) thread into a fresh netns with only loopback up."""
        lab = cls(tag)
        lab.host_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        if _libc.unshare(CLONE_NEWNET) != 0:
            os.close(lab.host_fd)
            raise SandboxSetupError(f"unshare(CLONE_NEWNET): {os.strerror(ctypes.get_errno())} (needs root)")
        try:
            ip("link", "set", "lo", "up")
        except BaseException:
            lab.close()
            raise
        return lab

    @property
    def host_netns_path(self) -> str:
        return f"/proc/{os.getpid()}/fd/{self.host_fd}"

    def add_target(self, role: str, index: int, addresses: Sequence[str]) -> TargetNet:
        """A namespace holding ``addresses`` (each routed from the lab over a /30 transfer link)."""
        name = f"crt-{self.tag}-{role}"[:30]
        lab_if, peer_if = f"crt{index}{self.tag}"[:15], "eth0"
        lab_ip, link_ip = f"10.213.250.{4 * index + 1}", f"10.213.250.{4 * index + 2}"
        ip("netns", "add", name)
        t = TargetNet(name, link_ip, tuple(addresses))
        self.targets.append(t)
        ip("link", "add", lab_if, "type", "veth", "peer", "name", peer_if, "netns", name)
        ip("addr", "add", f"{lab_ip}/30", "dev", lab_if)
        ip("link", "set", lab_if, "up")
        ip("link", "set", "lo", "up", netns=name)
        ip("addr", "add", f"{link_ip}/30", "dev", peer_if, netns=name)
        for a in addresses:
            ip("addr", "add", a, "dev", "lo", netns=name)
            ip("route", "add", a.split("/")[0], "via", link_ip, "dev", lab_if)
        ip("link", "set", peer_if, "up", netns=name)
        ip("route", "add", "default", "via", lab_ip, netns=name)
        return t

    def close(self) -> None:
        for t in self.targets:
            subprocess.run(["ip", "netns", "del", t.name], capture_output=True, check=False)
        self.targets.clear()
        if self.host_fd >= 0:
            _setns(self.host_fd)
            os.close(self.host_fd)
            self.host_fd = -1
