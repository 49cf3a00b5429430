"""One proxied connection as a pure state machine: events in, commands out, no I/O.

The asyncio server (``_proxy.py``) turns socket activity into events
(``ClientData``, ``Resolved``, ``Connected`` ...) and carries out the commands
the flow returns (``SendClient``, ``Resolve``, ``Dial`` ...). Everything that
decides (protocol parsing, allow/deny, DNS-rebinding and SNI checks, budgets,
byte accounting, the one record each attempt leaves) lives here, so it is tested
as scripts of events with no sockets.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

from corral.egress._http import HttpRequest, parse_request, rewrite_for_origin
from corral.egress._rules import Rules, Verdict, parse_ip
from corral.egress._tls import client_hello_sni

MAX_HEADER_BYTES = 64 * 1024
MAX_HELLO_BYTES = 64 * 1024


# -- events -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClientData:
    data: bytes


@dataclass(frozen=True)
class ClientClosed:
    pass


@dataclass(frozen=True)
class Resolved:
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class ResolveFailed:
    reason: str


@dataclass(frozen=True)
class Connected:
    local_ip: str
    local_port: int
    remote_ip: str
    remote_port: int


@dataclass(frozen=True)
class ConnectFailed:
    reason: str


@dataclass(frozen=True)
class ServerData:
    data: bytes


@dataclass(frozen=True)
class ServerClosed:
    pass


FlowEvent = (
    ClientData
    | ClientClosed
    | Resolved
    | ResolveFailed
    | Connected
    | ConnectFailed
    | ServerData
    | ServerClosed
)


# -- commands -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SendClient:
    data: bytes


@dataclass(frozen=True)
class SendServer:
    data: bytes


@dataclass(frozen=True)
class Resolve:
    host: str


@dataclass(frozen=True)
class Dial:
    ip: str
    port: int


@dataclass(frozen=True)
class CloseAll:
    pass


@dataclass(frozen=True)
class Record:
    """The one record a flow leaves: a denied attempt, or an allowed flow when it ends."""

    proxy_protocol: str
    host: str | None
    port: int | None
    ip: str | None
    decision: Literal["allowed", "denied"]
    rule: str
    bytes_sent: int = 0
    bytes_received: int = 0
    outside: Connected | None = None


Command = SendClient | SendServer | Resolve | Dial | CloseAll | Record


@dataclass
class Account:
    """Per-sandbox budget use; shared by the sandbox's flows, reset when a sandbox is attached."""

    connections_max: int
    transfer_max_bytes: int
    connections: int = 0
    transfer_bytes: int = 0


State = Literal[
    "start", "http", "socks_greeting", "socks_request", "resolving", "dialing", "sni", "relay", "done"
]


def _http_error(status: str, message: str) -> bytes:
    body = f"corral: {message}\n".encode()
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
        f"X-Corral-Decision: denied\r\nConnection: close\r\n\r\n"
    ).encode() + body


_SOCKS_OK = b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00"


def _socks_reply(code: int) -> bytes:
    return bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0])


@dataclass
class Flow:
    rules: Rules
    account: Account
    state: State = "start"
    proxy_protocol: str = "unknown"
    host: str | None = None
    port: int | None = None
    ip: str | None = None
    verdict: Verdict | None = None
    outside: Connected | None = None
    bytes_sent: int = 0
    bytes_received: int = 0
    _buf: bytes = b""
    _pending: bytes = b""  # client bytes to forward once the server is dialled
    _request: HttpRequest | None = None
    _recorded: bool = False
    _over_budget: bool = False
    out: list[Command] = field(default_factory=list)

    # -- entry point -----------------------------------------------------------------------------------
    def handle(self, event: FlowEvent) -> list[Command]:
        self.out = []
        if self.state == "done":
            return []
        try:
            self._dispatch(event)
        except Exception as exc:  # any error in a decision is a denial (fail closed)
            self.out = []
            self._deny(f"internal-error:{type(exc).__name__}")
        return self.out

    def _dispatch(self, event: FlowEvent) -> None:
        if isinstance(event, ClientData):
            self._client_data(event.data)
        elif isinstance(event, ServerData):
            self._relay_down(event.data)
        elif isinstance(event, Resolved):
            self._resolved(event.addresses)
        elif isinstance(event, ResolveFailed):
            self._deny(f"resolve-failed:{event.reason}", allowed_name=True)
        elif isinstance(event, Connected):
            self._connected(event)
        elif isinstance(event, ConnectFailed):
            self._fail_dial(event.reason)
        elif isinstance(event, ClientClosed | ServerClosed):
            self._finish()

    # -- client bytes by state ---------------------------------------------------------------------------
    def _client_data(self, data: bytes) -> None:
        if self.state == "relay":
            self._relay_up(data)
            return
        self._buf += data
        if self.state == "start" and self._buf:
            if self._buf[0] == 5:
                self.proxy_protocol, self.state = "socks5", "socks_greeting"
            else:
                self.state = "http"
        if self.state == "http":
            self._http_head()
        elif self.state == "socks_greeting":
            self._socks_greeting()
        elif self.state == "socks_request":
            self._socks_request()
        elif self.state in ("resolving", "dialing"):
            pass  # held in _buf until the server side is open
        elif self.state == "sni":
            self._sni()

    def _http_head(self) -> None:
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > MAX_HEADER_BYTES:
                self._deny("bad-request:header-too-large", status="431 Request Header Fields Too Large")
            return
        head, rest = self._buf[: end + 4], self._buf[end + 4 :]
        req = parse_request(head)
        if req is None:
            self.proxy_protocol = "http"
            self._deny("bad-request", status="400 Bad Request")
            return
        self._request = req
        self.proxy_protocol = "http-connect" if req.method == "CONNECT" else "http"
        self.host, self.port = req.host, req.port
        self._buf = rest
        self._decide()

    def _socks_greeting(self) -> None:
        if len(self._buf) < 2 or len(self._buf) < 2 + self._buf[1]:
            return
        methods = self._buf[2 : 2 + self._buf[1]]
        self._buf = self._buf[2 + self._buf[1] :]
        if 0 not in methods:
            self.out.append(SendClient(b"\x05\xff"))
            self._deny("socks:no-acceptable-auth", reply=b"")
            return
        self.out.append(SendClient(b"\x05\x00"))
        self.state = "socks_request"
        if self._buf:
            self._socks_request()

    def _socks_request(self) -> None:
        b = self._buf
        if len(b) < 5:
            return
        atyp = b[3]
        if atyp == 1:
            need, host = 10, str(ipaddress.IPv4Address(b[4:8])) if len(b) >= 8 else ""
        elif atyp == 4:
            need, host = 22, str(ipaddress.IPv6Address(b[4:20])) if len(b) >= 20 else ""
        elif atyp == 3:
            need = 7 + b[4]
            host = b[5 : 5 + b[4]].decode("ascii", "replace") if len(b) >= need else ""
        else:
            self._deny("socks:bad-address-type", reply=_socks_reply(8))
            return
        if len(b) < need:
            return
        self.host, self.port = host, int.from_bytes(b[need - 2 : need], "big")
        self._buf = b[need:]
        if b[1] != 1:  # only CONNECT: BIND and UDP ASSOCIATE would open other paths
            self._deny(f"socks:command-{b[1]}-unsupported", reply=_socks_reply(7))
            return
        self._decide()

    # -- decision, resolution, dial ------------------------------------------------------------------------
    def _decide(self) -> None:
        assert self.host is not None and self.port is not None
        verdict = self.rules.decide_name(self.host, self.port)
        if not verdict.allowed:
            self._deny(verdict.rule, verdict=verdict)
            return
        if self.account.connections >= self.account.connections_max:
            self._deny("budget:connections", status="429 Too Many Requests")
            return
        if self.account.transfer_bytes >= self.account.transfer_max_bytes:
            self._deny("budget:transfer-bytes", status="429 Too Many Requests")
            return
        self.account.connections += 1
        self.verdict = verdict
        ip = parse_ip(self.host)
        if ip is not None:
            self.ip = str(ip)
            self._dial()
        else:
            self.state = "resolving"
            self.out.append(Resolve(self.host))

    def _resolved(self, addresses: tuple[str, ...]) -> None:
        if self.state != "resolving":
            return
        if not addresses:
            self._deny("resolve-failed:no-address", allowed_name=True)
            return
        assert self.port is not None
        # Refuse if ANY answer is in a denied range: a rebinding name is hostile, not half-usable.
        for a in addresses:
            ip = parse_ip(a)
            bad = (
                Verdict(False, "rebinding:unparseable")
                if ip is None
                else self.rules.check_resolved(ip, self.port)
            )
            if bad is not None:
                self.ip = a
                self._deny(bad.rule, allowed_name=True)
                return
        self.ip = addresses[0]
        self._dial()

    def _dial(self) -> None:
        assert self.ip is not None and self.port is not None
        self.state = "dialing"
        self.out.append(Dial(self.ip, self.port))

    def _fail_dial(self, reason: str) -> None:
        if self.state != "dialing":
            return
        self.state = "done"
        if self.proxy_protocol == "socks5":
            self.out.append(SendClient(_socks_reply(5)))
        else:
            self.out.append(SendClient(_http_error("502 Bad Gateway", f"could not connect: {reason}")))
        self._record("allowed", f"{self._rule()};connect-failed:{reason}")
        self.out.append(CloseAll())

    def _connected(self, ev: Connected) -> None:
        if self.state != "dialing":
            return
        self.outside = ev
        if self.proxy_protocol == "http":
            assert self._request is not None
            self.state = "relay"
            self._relay_up(rewrite_for_origin(self._request) + self._buf)
            self._buf = b""
            return
        self.out.append(
            SendClient(
                _SOCKS_OK
                if self.proxy_protocol == "socks5"
                else b"HTTP/1.1 200 Connection established\r\n\r\n"
            )
        )
        self.state = "sni"
        if self._buf:
            self._sni()

    def _sni(self) -> None:
        """Hold the client's first bytes; if they are a TLS ClientHello, its SNI must name the host."""
        b = self._buf
        if b[:1] == b"\x16" and len(b) >= 5:
            total = 5 + int.from_bytes(b[3:5], "big")
            if len(b) < total and len(b) < MAX_HELLO_BYTES:
                return
            sni = client_hello_sni(b[:total])
            assert self.host is not None
            if sni is not None and sni.lower().rstrip(".") != self.host.lower().rstrip("."):
                self._deny(f"sni-mismatch:{sni}", allowed_name=True, reply=b"")
                return
        elif b[:1] == b"\x16":
            return
        self.state = "relay"
        self._buf = b""
        self._relay_up(b)

    # -- relay and accounting ----------------------------------------------------------------------------
    def _charge(self, n: int) -> bool:
        self.account.transfer_bytes += n
        if self.account.transfer_bytes > self.account.transfer_max_bytes:
            self._over_budget = True
            self._finish()
            return False
        return True

    def _relay_up(self, data: bytes) -> None:
        if data and self._charge(len(data)):
            self.bytes_sent += len(data)
            self.out.append(SendServer(data))

    def _relay_down(self, data: bytes) -> None:
        if self.state == "sni":  # the server spoke first: not TLS, nothing to check
            if self._buf:
                self._deny("sni:server-spoke-during-client-hello", reply=b"")
                return
            self.state = "relay"
        if self.state == "relay" and data and self._charge(len(data)):
            self.bytes_received += len(data)
            self.out.append(SendClient(data))

    # -- endings -------------------------------------------------------------------------------------------
    def _rule(self) -> str:
        return self.verdict.rule if self.verdict is not None else "unknown"

    def _record(self, decision: Literal["allowed", "denied"], rule: str) -> None:
        if self._recorded:
            return
        self._recorded = True
        self.out.append(
            Record(
                self.proxy_protocol,
                self.host,
                self.port,
                self.ip,
                decision,
                rule,
                self.bytes_sent,
                self.bytes_received,
                self.outside,
            )
        )

    def _deny(
        self,
        rule: str,
        *,
        verdict: Verdict | None = None,
        status: str = "403 Forbidden",
        reply: bytes | None = None,
        allowed_name: bool = False,
    ) -> None:
        self.state = "done"
        if reply is None:
            if self.proxy_protocol == "socks5":
                reply = _socks_reply(4 if rule.startswith("resolve-failed") else 2)
            else:
                target = f"{self.host}:{self.port}" if self.host else "this request"
                reply = _http_error(status, f"egress to {target} denied by policy ({rule})")
        if reply:
            self.out.append(SendClient(reply))
        self._record("denied", rule)
        self.out.append(CloseAll())

    def _finish(self) -> None:
        if self.state == "done":
            return
        was_open = self.outside is not None
        self.state = "done"
        if was_open:
            self._record("allowed", self._rule() + (";budget:transfer-bytes" if self._over_budget else ""))
        elif self.host is not None and self.verdict is not None:
            self._record("allowed", f"{self._rule()};client-closed")
        self.out.append(CloseAll())
