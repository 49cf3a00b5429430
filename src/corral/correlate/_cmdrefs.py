"""What a tool call's command says about where it connects: addresses, host names and ports.

An agent that dials somewhere usually types it: ``nc 203.0.113.5 4444``, ``ssh -p
2222 user@host``, ``curl https://x.example:8443/``, ``--pool 198.51.100.7:3333``.
These references are the evidence behind two tie-breaks that apply to every
attribution method: a command that names the record's remote address (and
port) beats one that does not, and a command that names only other ports for
that destination is not the call behind a flow to this port.

Each reference is ``(host, port)``: an address (normalised) or a lower-case host
name with the port given for it, or ``(None, port)`` for a port named by a
flag (``-p 2222``), or ``(host, None)`` for an address alone.
"""

from __future__ import annotations

import ipaddress
import re

Ref = tuple[str | None, int | None]

_V4 = r"(?:\d{1,3}\.){3}\d{1,3}"
# An IPv4 address not inside a longer dotted or word token, with an optional ":port" or " port".
_IPV4 = re.compile(rf"(?<![\w.:/-])({_V4})(?![\w.])(?::(\d{{1,5}})(?!\d)|[ \t]+(\d{{1,5}})(?![\w.:]))?")
_IPV6_BRACKET = re.compile(r"\[([0-9A-Fa-f:.]{2,45})\](?::(\d{1,5})(?!\d))?")
_IPV6_BARE = re.compile(r"(?<![\w:.\[])((?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4})(?![\w:])")
_URL = re.compile(
    r"\b([a-z][a-z0-9+.-]{1,15})://(?:[^@/\s]+@)?([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::(\d{1,5}))?"
)
# host:port for a host name (a label with a letter), as in "pool.example:3333" or "TCP:host:4444".
_HOST_PORT = re.compile(
    r"(?<![\w.@/-])((?:[A-Za-z0-9-]{1,63}\.)*[A-Za-z][A-Za-z0-9-]{0,62}):(\d{1,5})(?![\d.])"
)
_DEV_TCP = re.compile(r"/dev/(?:tcp|udp)/([A-Za-z0-9.:-]{1,253})/(\d{1,5})(?!\d)")  # bash's own sockets
_PORT_FLAG = re.compile(r"(?:^|\s)(?:-p|-P|--port|--dport)(?:[ \t=]*)(\d{1,5})(?![\d.:])")
_SCHEME_PORTS = {
    "http": 80,
    "https": 443,
    "ws": 80,
    "wss": 443,
    "ssh": 22,
    "ftp": 21,
    "sftp": 22,
    "git": 9418,
}


def _port(text: str | None) -> int | None:
    if text is None:
        return None
    p = int(text)
    return p if 0 < p <= 65535 else None


def _address(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def command_refs(command: str) -> set[Ref]:
    """Every address, host name and port the command names (see the module docstring)."""
    refs: set[Ref] = set()
    if not any(ch.isdigit() for ch in command) and "://" not in command:
        return refs  # no address and no port can be named without a digit (or a URL's scheme)
    text = command[:65536]
    for m in _IPV4.finditer(text):
        addr = _address(m.group(1))
        if addr is not None:
            refs.add((addr, _port(m.group(2) or m.group(3))))
    for m in _IPV6_BRACKET.finditer(text):
        addr = _address(m.group(1))
        if addr is not None:
            refs.add((addr, _port(m.group(2))))
    for m in _IPV6_BARE.finditer(text):
        if m.group(1).count(":") >= 2 and (addr := _address(m.group(1))) is not None:
            refs.add((addr, None))
    for m in _URL.finditer(text):
        host = m.group(2).strip("[]").lower()
        host = _address(host) or host
        port = _port(m.group(3)) or _SCHEME_PORTS.get(m.group(1).lower())
        refs.add((host, port))
    for m in _HOST_PORT.finditer(text):
        refs.add((m.group(1).lower(), _port(m.group(2))))
    for m in _DEV_TCP.finditer(text):
        host = m.group(1).lower()
        refs.add((_address(host) or host, _port(m.group(2))))
    for m in _PORT_FLAG.finditer(text):
        if (port := _port(m.group(1))) is not None:
            refs.add((None, port))
    refs.discard((None, None))
    return refs
