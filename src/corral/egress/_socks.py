"""SOCKS wire formats, parsed without I/O: SOCKS5 greetings and requests, SOCKS4/4a requests.

Each parser takes the bytes received so far and returns ``None`` while it needs more, a
parsed value when complete, or raises ``SocksError`` with the reason a request is refused.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

MAX_SOCKS4_FIELD = 255  # user id and 4a host name: NUL-terminated, bounded


class SocksError(ValueError):
    """A malformed or unsupported request; ``reason`` goes into the denied record."""

    def __init__(self, reason: str, host: str | None = None, port: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.host, self.port = reason, host, port


@dataclass(frozen=True)
class SocksRequest:
    version: int  # 4 or 5
    command: int  # 1 CONNECT, 2 BIND, 3 UDP ASSOCIATE
    host: str
    port: int
    consumed: int
    named: bool = False  # SOCKS4a / SOCKS5 domain: the client left resolution to the proxy


SOCKS5_OK = b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00"


def socks5_reply(code: int) -> bytes:
    return bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0])


def socks4_rejected() -> bytes:
    return b"\x00\x5b\x00\x00\x00\x00\x00\x00"  # 0x5B: request rejected or failed


def socks5_greeting(buf: bytes) -> tuple[bytes, int] | None:
    """(offered auth methods, bytes consumed)."""
    if len(buf) < 2 or len(buf) < 2 + buf[1]:
        return None
    return buf[2 : 2 + buf[1]], 2 + buf[1]


def socks5_request(buf: bytes) -> SocksRequest | None:
    if len(buf) < 5:
        return None
    if buf[0] != 5:
        raise SocksError("socks:bad-version")
    atyp = buf[3]
    if atyp == 1:
        need = 10
    elif atyp == 4:
        need = 22
    elif atyp == 3:
        need = 7 + buf[4]
    else:
        raise SocksError("socks:bad-address-type")
    if len(buf) < need:
        return None
    if atyp == 1:
        host = str(ipaddress.IPv4Address(buf[4:8]))
    elif atyp == 4:
        host = str(ipaddress.IPv6Address(buf[4:20]))
    else:
        host = buf[5 : 5 + buf[4]].decode("ascii", "replace")
    port = int.from_bytes(buf[need - 2 : need], "big")
    return SocksRequest(5, buf[1], host, port, need, named=atyp == 3)


def socks4_request(buf: bytes) -> SocksRequest | None:
    """SOCKS4: VN CD DSTPORT DSTIP USERID NUL; 4a: DSTIP 0.0.0.x and a host name NUL after the user id."""
    if len(buf) < 9:
        return None
    port = int.from_bytes(buf[2:4], "big")
    ip = ipaddress.IPv4Address(buf[4:8])
    end = buf.find(b"\0", 8)
    if end < 0:
        if len(buf) - 8 > MAX_SOCKS4_FIELD:
            raise SocksError("socks4:user-id-too-long", str(ip), port)
        return None
    if int(ip) >> 8 == 0 and int(ip) != 0:  # 4a
        hend = buf.find(b"\0", end + 1)
        if hend < 0:
            if len(buf) - end - 1 > MAX_SOCKS4_FIELD:
                raise SocksError("socks4:host-too-long", None, port)
            return None
        host = buf[end + 1 : hend].decode("ascii", "replace")
        return SocksRequest(4, buf[1], host, port, hend + 1, named=True)
    return SocksRequest(4, buf[1], str(ip), port, end + 1)
