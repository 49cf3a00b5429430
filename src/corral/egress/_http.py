"""Just enough HTTP/1.x request parsing for a forward proxy: request line, target, headers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

_HOP_BY_HOP = {b"proxy-connection", b"proxy-authorization", b"connection", b"keep-alive"}
_TOKEN = re.compile(rb"^[A-Z]{3,16}$")


@dataclass(frozen=True)
class HttpRequest:
    method: str
    target: str  # as sent: authority for CONNECT, absolute URI otherwise
    version: str
    host: str
    port: int
    path: str  # origin-form for forwarding ("" for CONNECT)
    headers: tuple[tuple[bytes, bytes], ...]


def _split_authority(authority: str, default_port: int) -> tuple[str, int] | None:
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d{1,5}))?|([^:\[\]]+)(?::(\d{1,5}))?", authority)
    if m is None:
        return None
    host = m.group(1) or m.group(3)
    port_s = m.group(2) or m.group(4)
    port = int(port_s) if port_s else default_port
    return (host, port) if host and 0 < port < 65536 else None


def parse_request(head: bytes) -> HttpRequest | None:
    """Parse a request head ending in CRLFCRLF; None when it is not a proxy request we accept."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not _TOKEN.match(parts[0]) or not parts[2].startswith(b"HTTP/1."):
        return None
    method, target, version = (p.decode("latin-1") for p in parts)
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            return None
        headers.append((name, value.strip()))
    if method == "CONNECT":
        hp = _split_authority(target, 443)
        return None if hp is None else HttpRequest(method, target, version, hp[0], hp[1], "", tuple(headers))
    url = urlsplit(target)
    if url.scheme.lower() != "http" or not url.netloc or "@" in url.netloc:
        return None
    hp = _split_authority(url.netloc, 80)
    if hp is None:
        return None
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    return HttpRequest(method, target, version, hp[0], hp[1], path, tuple(headers))


def rewrite_for_origin(req: HttpRequest) -> bytes:
    """The request head as the origin server should see it: origin-form, no proxy headers, one request."""
    out = [f"{req.method} {req.path} {req.version}".encode("latin-1")]
    out += [n + b": " + v for n, v in req.headers if n.lower() not in _HOP_BY_HOP]
    out.append(b"Connection: close")
    return b"\r\n".join(out) + b"\r\n\r\n"
