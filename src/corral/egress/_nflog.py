"""NFLOG (nfnetlink_log) over a raw netlink socket: bind a log group, decode logged packets.

The socket belongs to the netns it was created in, so the egress layer opens
one per sandbox netns (on a thread that has ``setns()``-ed there).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass

from corral.errors import EgressError

NETLINK_NETFILTER = 12
_NFNL_SUBSYS_ULOG = 4
_MSG_PACKET = 0
_MSG_CONFIG = 1
_CFG_CMD, _CFG_MODE, _CFG_TIMEOUT, _CFG_QTHRESH = 1, 2, 4, 5
_CMD_BIND = 1
_COPY_PACKET = 2
_ATTR_PAYLOAD, _ATTR_PREFIX, _ATTR_UID = 9, 10, 11
_NLM_F_REQUEST, _NLM_F_ACK = 1, 4
_NLMSG_ERROR = 2
_PROTOS = {1: "icmp", 6: "tcp", 17: "udp", 58: "ipv6-icmp", 132: "sctp"}


@dataclass(frozen=True)
class LoggedPacket:
    protocol: str
    src: str
    dst: str
    src_port: int | None
    dst_port: int | None
    icmp_id: int | None
    prefix: str
    uid: int | None

    def attempt_key(self) -> tuple[object, ...]:
        """Same key for the packets of one attempt (retransmits, one ping run, one UDP socket)."""
        return (self.protocol, self.src, self.src_port, self.dst, self.dst_port, self.icmp_id)


def _attr(t: int, payload: bytes) -> bytes:
    a = struct.pack("=HH", 4 + len(payload), t) + payload
    return a + b"\0" * (-len(a) % 4)


def _config_msg(group: int, seq: int, attrs: bytes) -> bytes:
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(group)) + attrs
    mtype = (_NFNL_SUBSYS_ULOG << 8) | _MSG_CONFIG
    return struct.pack("=IHHII", 16 + len(body), mtype, _NLM_F_REQUEST | _NLM_F_ACK, seq, 0) + body


def open_nflog(group: int) -> socket.socket:
    """A non-blocking socket bound to NFLOG ``group`` in the calling thread's netns."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.bind((0, 0))
        cfg = (
            _attr(_CFG_CMD, bytes([_CMD_BIND]))
            + _attr(_CFG_MODE, struct.pack("!IBB", 256, _COPY_PACKET, 0))
            + _attr(_CFG_QTHRESH, struct.pack("!I", 1))  # hand each packet over at once
            + _attr(_CFG_TIMEOUT, struct.pack("!I", 1))
        )
        s.send(_config_msg(group, 1, cfg))
        reply = s.recv(4096)
        _, mtype, _, _, _ = struct.unpack_from("=IHHII", reply)
        if mtype == _NLMSG_ERROR:
            (err,) = struct.unpack_from("=i", reply, 16)
            if err != 0:
                raise EgressError(f"NFLOG bind of group {group} failed: errno {-err}")
        s.setblocking(False)
        return s
    except BaseException:
        s.close()
        raise


def _parse_ip(payload: bytes) -> tuple[str, str, str, int | None, int | None, int | None] | None:
    if not payload:
        return None
    if payload[0] >> 4 == 4 and len(payload) >= 20:
        ihl = (payload[0] & 0xF) * 4
        proto = payload[9]
        src, dst = str(ipaddress.IPv4Address(payload[12:16])), str(ipaddress.IPv4Address(payload[16:20]))
        l4 = payload[ihl:]
    elif payload[0] >> 4 == 6 and len(payload) >= 40:
        proto = payload[6]
        src, dst = str(ipaddress.IPv6Address(payload[8:24])), str(ipaddress.IPv6Address(payload[24:40]))
        l4 = payload[40:]
    else:
        return None
    name = _PROTOS.get(proto, str(proto))
    if proto in (6, 17, 132) and len(l4) >= 4:
        sport, dport = struct.unpack_from("!HH", l4)
        return name, src, dst, sport, dport, None
    if proto in (1, 58) and len(l4) >= 6:
        return name, src, dst, None, None, struct.unpack_from("!H", l4, 4)[0]
    return name, src, dst, None, None, None


def parse_messages(buf: bytes) -> list[LoggedPacket]:
    """Decode the NFLOG packet messages in one netlink read."""
    out: list[LoggedPacket] = []
    off = 0
    while off + 16 <= len(buf):
        length, mtype, _, _, _ = struct.unpack_from("=IHHII", buf, off)
        if length < 16:
            break
        if mtype == (_NFNL_SUBSYS_ULOG << 8) | _MSG_PACKET:
            attrs: dict[int, bytes] = {}
            p = off + 20  # nlmsghdr + nfgenmsg
            while p + 4 <= off + length:
                alen, atype = struct.unpack_from("=HH", buf, p)
                if alen < 4:
                    break
                attrs[atype & 0x7FFF] = buf[p + 4 : p + alen]
                p += (alen + 3) & ~3
            parsed = _parse_ip(attrs.get(_ATTR_PAYLOAD, b""))
            if parsed is not None:
                uid = (
                    struct.unpack("!I", attrs[_ATTR_UID])[0] if len(attrs.get(_ATTR_UID, b"")) == 4 else None
                )
                prefix = attrs.get(_ATTR_PREFIX, b"").rstrip(b"\0").decode(errors="replace").strip()
                out.append(LoggedPacket(*parsed, prefix=prefix, uid=uid))
        off += (length + 3) & ~3
    return out
