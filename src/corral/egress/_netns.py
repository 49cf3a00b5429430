"""Per-sandbox network namespaces: a veth pair to the host, a route out, nftables, an NFLOG socket.

Addressing: each ``Egress`` claims one /22 block (lock files under /run/corral/egress
make the claim, so several harness processes on one node never collide): ``index-N.lock``
owns the names (netns ``corral-NN-*``, veths ``crvNN*``, host table ``corral_host_NN``,
state directory ``block-N``) whatever the address base, ``block-ADDR.lock`` the addresses.
A lock whose owner died can be taken: every start sweeps what such owners left, in any
block, not only the one it claims. The
host side of every veth carries the block's gateway address (/32, the same on
each veth); each sandbox gets its own /32 and a host route to it. The proxy and
DNS resolver listen on the gateway address, and know a sandbox by its source IP.
No forwarding, no NAT: a packet that is not for the gateway has nowhere to go.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import shutil
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from corral.egress._nflog import open_nflog
from corral.egress._nft import host_ruleset, host_table, run_nft, sandbox_ruleset
from corral.egress._nsutil import NETNS_DIR, create_named_netns, in_netns, remove_named_netns, write_sysctl
from corral.errors import EgressError

if TYPE_CHECKING:
    from pyroute2 import IPRoute

LOCK_DIR = "/run/corral/egress"
DEFAULT_BASE = "10.231.0.0/16"
BLOCK_PREFIX = 22
LOG_GROUP = 7


@dataclass(frozen=True)
class Block:
    """One Egress's share of the address space and interface names."""

    index: int
    network: ipaddress.IPv4Network
    lock_fd: int
    proxy_port: int
    dns_port: int
    index_fd: int = -1

    @property
    def gateway(self) -> str:
        return str(self.network[1])

    @property
    def capacity(self) -> int:
        return self.network.num_addresses - 3

    def sandbox_ip(self, slot: int) -> str:
        return str(self.network[1 + slot])

    def slot_of(self, ip: str) -> int | None:
        try:
            a = ipaddress.IPv4Address(ip)
        except ValueError:
            return None
        n = int(a) - int(self.network[1])
        return n if a in self.network and 1 <= n <= self.capacity else None

    def netns_name(self, slot: int) -> str:
        return f"corral-{self.index:02d}-{slot}"

    def host_if(self, slot: int) -> str:
        return f"crv{self.index:02x}{slot:04x}"

    @property
    def if_prefix(self) -> str:
        return f"crv{self.index:02x}"

    @property
    def ns_prefix(self) -> str:
        return f"corral-{self.index:02d}-"


MAX_BLOCKS = 100  # names carry the index in two digits


def _iproute() -> IPRoute:
    """Imported on first use: pyroute2 takes 0.1-0.15 s to import, and only a sandbox with an
    egress slot needs it (``corral run`` on a policy without egress never does)."""
    from pyroute2 import IPRoute

    return IPRoute()


def _try_lock(path: str) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _index_lock(i: int) -> str:
    return os.path.join(LOCK_DIR, f"index-{i}.lock")


def _block_lock(network: ipaddress.IPv4Network) -> str:
    return os.path.join(LOCK_DIR, f"block-{network.network_address}.lock")


def state_dir(index: int) -> str:
    return os.path.join(LOCK_DIR, f"block-{index}")


def claim_block(base: str = DEFAULT_BASE, proxy_port: int = 3128, dns_port: int = 53) -> Block:
    """Lock the first free block of ``base``, then remove whatever dead owners left in any block."""
    net = ipaddress.IPv4Network(base)
    os.makedirs(LOCK_DIR, exist_ok=True)
    for i, sub in enumerate(net.subnets(new_prefix=BLOCK_PREFIX)):
        if i >= MAX_BLOCKS:
            break
        idx_fd = _try_lock(_index_lock(i))
        if idx_fd is None:
            continue
        fd = _try_lock(_block_lock(sub))
        if fd is None:
            os.close(idx_fd)
            continue
        block = Block(i, sub, fd, proxy_port, dns_port, idx_fd)
        try:
            with open(os.path.join(LOCK_DIR, f"index-{i}.json"), "w") as f:
                json.dump({"index": i, "network": str(sub), "pid": os.getpid()}, f)
            sweep_names(i)
            run_nft(host_ruleset(i, block.if_prefix, block.gateway, proxy_port, dns_port))
            reap_dead(keep=i)
        except BaseException:
            os.close(fd)
            os.close(idx_fd)
            raise
        return block
    raise EgressError(f"no free address block left in {base}: too many Corral egress instances on this node")


def _owner_networks(i: int) -> list[ipaddress.IPv4Network]:
    """Address locks a block index may be held by: its recorded one, and the default base's (older owners
    locked only the address file)."""
    nets = [list(ipaddress.IPv4Network(DEFAULT_BASE).subnets(new_prefix=BLOCK_PREFIX))[i]]
    meta = os.path.join(LOCK_DIR, f"index-{i}.json")
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError), open(meta) as f:
        nets.append(ipaddress.IPv4Network(json.load(f)["network"]))
    return list(dict.fromkeys(nets))


def _candidates() -> set[int]:
    """Indices with something left to sweep: an owner record, a state directory or a named netns."""
    found: set[int] = set()
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(LOCK_DIR):
            if m := re.fullmatch(r"index-(\d+)\.json|block-(\d+)", name):
                found.add(int(m.group(1) or m.group(2)))
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(NETNS_DIR):
            if m := re.fullmatch(r"corral-(\d\d)-\d+", name):
                found.add(int(m.group(1)))
    return {i for i in found if i < MAX_BLOCKS}


def reap_dead(keep: int | None = None) -> list[int]:
    """Sweep every block whose owner is dead (its locks can be taken); returns the indices swept."""
    reaped: list[int] = []
    for i in sorted(_candidates() - {keep}):
        held: list[int] = []
        try:
            fd = _try_lock(_index_lock(i))
            if fd is None:
                continue  # alive
            held.append(fd)
            for n in _owner_networks(i):
                bfd = _try_lock(_block_lock(n))
                if bfd is None:
                    break  # an owner holds the addresses: alive
                held.append(bfd)
            else:
                sweep_names(i)
                _forget(i)
                reaped.append(i)
        finally:
            for fd in held:
                os.close(fd)
    return reaped


def sweep_names(index: int) -> None:
    """Delete veths and the host table in this netns, and the netns and state named for ``index``."""
    t = host_table(index)
    run_nft(f"add table inet {t}\ndelete table inet {t}\n")
    if_prefix, ns_prefix = f"crv{index:02x}", f"corral-{index:02d}-"
    with _iproute() as ip:
        for link in ip.get_links():
            name = link.get_attr("IFLA_IFNAME") or ""
            if name.startswith(if_prefix):
                with contextlib.suppress(Exception):
                    ip.link("del", index=link["index"])
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(NETNS_DIR):
            if name.startswith(ns_prefix):
                remove_named_netns(name)
    shutil.rmtree(state_dir(index), ignore_errors=True)


def _forget(index: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(LOCK_DIR, f"index-{index}.json"))


def sweep_block(block: Block) -> None:
    sweep_names(block.index)


@dataclass
class Slot:
    """One ready sandbox netns."""

    index: int
    netns_name: str
    host_if: str
    sandbox_ip: str
    ns_fd: int
    nflog: socket.socket

    @property
    def netns_path(self) -> str:
        return os.path.join(NETNS_DIR, self.netns_name)


def create_slot(block: Block, index: int) -> Slot:
    """Build a sandbox netns with its rules in place; on any failure nothing is left behind."""
    name, host_if, sip, gw = (
        block.netns_name(index),
        block.host_if(index),
        block.sandbox_ip(index),
        block.gateway,
    )
    ns_fd = -1
    try:
        ns_fd = create_named_netns(name)
        with _iproute() as ip:
            ip.link("add", ifname=host_if, kind="veth", peer={"ifname": "eth0", "net_ns_fd": ns_fd})
            idx = ip.link_lookup(ifname=host_if)[0]
            # Defence in depth: even on a node with forwarding on, nothing that arrives from a sandbox
            # is ever forwarded (the per-interface flag is checked on input), and no IPv6 on the link.
            write_sysctl(f"net.ipv4.conf.{host_if}.forwarding", "0")
            write_sysctl(f"net.ipv6.conf.{host_if}.disable_ipv6", "1")
            ip.addr("add", index=idx, address=gw, prefixlen=32)
            ip.link("set", index=idx, state="up")
            ip.route("add", dst=f"{sip}/32", oif=idx, prefsrc=gw)
        with in_netns(ns_fd):
            # Rules first, then links up: no moment exists where the netns has a path and no rules.
            run_nft(sandbox_ruleset(gw, block.proxy_port, block.dns_port, LOG_GROUP))
            for key in ("all", "default"):
                write_sysctl(f"net.ipv6.conf.{key}.disable_ipv6", "1")
            write_sysctl("net.ipv4.icmp_ratelimit", "0")  # our own rejects, to ourselves: never delay them
            nflog = open_nflog(LOG_GROUP)
            with _iproute() as ip:
                ip.link("set", index=ip.link_lookup(ifname="lo")[0], state="up")
                eth = ip.link_lookup(ifname="eth0")[0]
                write_sysctl("net.ipv6.conf.eth0.disable_ipv6", "1")
                ip.addr("add", index=eth, address=sip, prefixlen=32)
                ip.link("set", index=eth, state="up")
                ip.route("add", dst=f"{gw}/32", oif=eth, scope=253)
                ip.route("add", dst="0.0.0.0/0", gateway=gw, oif=eth)
        return Slot(index, name, host_if, sip, ns_fd, nflog)
    except Exception as exc:
        _remove(host_if, name, ns_fd)
        if isinstance(exc, EgressError):
            raise
        raise EgressError(f"creating sandbox netns {name} failed: {exc}") from exc


def _remove(host_if: str, name: str, ns_fd: int) -> None:
    with _iproute() as ip, contextlib.suppress(Exception):
        found = ip.link_lookup(ifname=host_if)
        if found:
            ip.link("del", index=found[0])  # deleting one end removes the pair
    if ns_fd >= 0:
        os.close(ns_fd)
    remove_named_netns(name)


def destroy_slot(slot: Slot) -> None:
    slot.nflog.close()
    _remove(slot.host_if, slot.netns_name, slot.ns_fd)


def release_block(block: Block) -> None:
    sweep_block(block)
    _forget(block.index)
    os.close(block.lock_fd)
    if block.index_fd >= 0:
        os.close(block.index_fd)
