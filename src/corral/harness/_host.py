"""The node's address as the network sees it (the ``host`` of trace records)."""

from __future__ import annotations

import functools
import ipaddress
import socket

import psutil


@functools.cache
def node_address() -> str:
    """First global-scope IPv4 of this node; falls back to the host name."""
    for _name, addrs in sorted(psutil.net_if_addrs().items()):
        for a in addrs:
            if a.family == socket.AF_INET:
                ip = ipaddress.ip_address(a.address)
                if not (ip.is_loopback or ip.is_link_local):
                    return a.address
    return socket.gethostname()
