"""One proxied connection as a pure state machine: events in, commands out, no I/O.

The asyncio server (``_proxy.py``) turns socket activity into events
(``ClientData``, ``Resolved``, ``Connected`` ...) and carries out the commands
the flow returns (``SendClient``, ``Resolve``, ``Dial`` ...). Everything that
decides (protocol parsing, allow/deny, DNS-rebinding and SNI checks, budgets,
byte accounting, the one record each attempt leaves) lives here, so it is tested
as scripts of events with no sockets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from corral.egress._fingerprint import Fingerprint, Sniffer
from corral.egress._flowtypes import (
    Account,
    ClientClosed,
    ClientData,
    CloseAll,
    Command,
    Connected,
    ConnectFailed,
    Dial,
    FlowEvent,
    Record,
    RequestTimeout,
    Resolve,
    Resolved,
    ResolveFailed,
    SendClient,
    SendServer,
    ServerClosed,
    ServerData,
)
from corral.egress._http import HttpRequest, parse_request, rewrite_for_origin
from corral.egress._rules import Rules, Verdict, parse_ip
from corral.egress._socks import (
    SOCKS5_OK,
    SocksError,
    SocksRequest,
    socks4_rejected,
    socks4_request,
    socks5_greeting,
    socks5_reply,
    socks5_request,
)
from corral.egress._tls import client_hello_sni

__all__ = [
    "Account",
    "ClientClosed",
    "ClientData",
    "CloseAll",
    "Command",
    "ConnectFailed",
    "Connected",
    "Dial",
    "Flow",
    "FlowEvent",
    "Record",
    "RequestTimeout",
    "Resolve",
    "ResolveFailed",
    "Resolved",
    "SendClient",
    "SendServer",
    "ServerClosed",
    "ServerData",
]

MAX_HEADER_BYTES = 64 * 1024
MAX_HELLO_BYTES = 64 * 1024


State = Literal[
    "start",
    "http",
    "socks_greeting",
    "socks_request",
    "socks4",
    "tls",
    "resolving",
    "dialing",
    "sni",
    "relay",
    "done",
]
_PRE_REQUEST = ("start", "http", "socks_greeting", "socks_request", "socks4", "tls")
_METHOD = re.compile(rb"[A-Z]{1,16}")


def _http_error(status: str, message: str) -> bytes:
    body = f"corral: {message}\n".encode()
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
        f"X-Corral-Decision: denied\r\nConnection: close\r\n\r\n"
    ).encode() + body


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
    _sniffer: Sniffer | None = None
    fingerprints: list[Fingerprint] = field(default_factory=list)
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
        elif isinstance(event, RequestTimeout) and self.state in _PRE_REQUEST:
            self._deny("timeout:no-complete-request", status="408 Request Timeout")

    # -- client bytes by state ---------------------------------------------------------------------------
    def _client_data(self, data: bytes) -> None:
        if self.state == "relay":
            self._relay_up(data)
            return
        self._buf += data
        if self.state == "start" and self._buf:
            first = self._buf[0]
            if first == 5:
                self.proxy_protocol, self.state = "socks5", "socks_greeting"
            elif first == 4:
                self.proxy_protocol, self.state = "socks4", "socks4"
            elif first == 0x16:
                self.proxy_protocol, self.state = "tls", "tls"
            else:
                self.proxy_protocol, self.state = "http", "http"
        if self.state == "http":
            self._http_head()
        elif self.state == "socks_greeting":
            self._socks_greeting()
        elif self.state == "socks_request":
            self._socks_request()
        elif self.state == "socks4":
            self._socks4()
        elif self.state == "tls":
            self._tls_to_proxy()
        elif self.state in ("resolving", "dialing"):
            pass  # held in _buf until the server side is open
        elif self.state == "sni":
            self._sni()

    def _http_head(self) -> None:
        b = self._buf
        token = _METHOD.match(b)
        if (token is None and b) or (token is not None and token.end() < len(b) and b[token.end()] != 0x20):
            self._deny("bad-request:not-a-proxy-request", status="400 Bad Request")  # garbage: refuse at once
            return
        lf = b.find(b"\n")
        if lf >= 0 and (lf == 0 or b[lf - 1] != 0x0D):
            self._target_from_line(b[:lf])
            self._deny("bad-request:bare-lf", status="400 Bad Request")  # ambiguous framing: never guess
            return
        end = b.find(b"\r\n\r\n")
        if end < 0:
            if len(b) > MAX_HEADER_BYTES:
                self._target_from_line(b[: b.find(b"\r\n")] if b"\r\n" in b else b[:300])
                self._deny("bad-request:header-too-large", status="431 Request Header Fields Too Large")
            return
        head, rest = b[: end + 4], b[end + 4 :]
        req = parse_request(head)
        if req is None:
            self._target_from_line(head[: head.find(b"\r\n")])
            self._deny("bad-request", status="400 Bad Request")
            return
        self._request = req
        self.proxy_protocol = "http-connect" if req.method == "CONNECT" else "http"
        self.host, self.port = req.host, req.port
        self._buf = rest
        self._decide()

    def _target_from_line(self, line: bytes) -> None:
        """Best effort: the destination a refused request named, for its record."""
        req = parse_request(line.rstrip(b"\r") + b"\r\n\r\n")
        if req is not None:
            self.proxy_protocol = "http-connect" if req.method == "CONNECT" else "http"
            self.host, self.port = req.host, req.port
            ip = parse_ip(req.host)
            self.ip = str(ip) if ip is not None else None

    def _socks_greeting(self) -> None:
        got = socks5_greeting(self._buf)
        if got is None:
            return
        methods, used = got
        self._buf = self._buf[used:]
        if 0 not in methods:
            self.out.append(SendClient(b"\x05\xff"))
            self._deny("socks:no-acceptable-auth", reply=b"")
            return
        self.out.append(SendClient(b"\x05\x00"))
        self.state = "socks_request"
        if self._buf:
            self._socks_request()

    def _socks_request(self) -> None:
        try:
            req = socks5_request(self._buf)
        except SocksError as exc:
            self._deny(exc.reason, reply=socks5_reply(8))
            return
        if req is None:
            return
        self._socks_target(req)
        if req.command != 1:  # only CONNECT: BIND and UDP ASSOCIATE would open other paths
            self._deny(f"socks:command-{req.command}-unsupported", reply=socks5_reply(7))
            return
        self._decide()

    def _socks4(self) -> None:
        """SOCKS4/4a is refused (no auth negotiation, no IPv6): one denied record naming its target."""
        try:
            req = socks4_request(self._buf)
        except SocksError as exc:
            self.host, self.port = exc.host, exc.port
            self._deny(exc.reason, reply=socks4_rejected())
            return
        if req is None:
            return
        self._socks_target(req)
        if req.named:
            self.proxy_protocol = "socks4a"
        self._deny(f"{self.proxy_protocol}:unsupported-use-socks5", reply=socks4_rejected())

    def _socks_target(self, req: SocksRequest) -> None:
        self.host, self.port = req.host, req.port
        self._buf = self._buf[req.consumed :]
        ip = parse_ip(req.host)
        self.ip = str(ip) if ip is not None else None

    def _tls_to_proxy(self) -> None:
        """A TLS ClientHello sent to the proxy itself (a client that ignores the proxy settings)."""
        b = self._buf
        if len(b) < 5:
            return
        total = 5 + int.from_bytes(b[3:5], "big")
        if len(b) < total and len(b) < MAX_HELLO_BYTES:
            return
        sni = client_hello_sni(b[:total])
        self.host = sni
        self._deny("not-a-proxy-request:tls-client-hello", reply=b"")

    # -- decision, resolution, dial ------------------------------------------------------------------------
    def _decide(self) -> None:
        assert self.host is not None and self.port is not None
        ip = parse_ip(self.host)
        self.ip = str(ip) if ip is not None else None  # denied records of IP targets carry the address
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
        if self.ip is not None:
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
            self.out.append(SendClient(socks5_reply(5)))
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
                SOCKS5_OK
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
            self._sniff(data, server_side=False)

    def _relay_down(self, data: bytes) -> None:
        if self.state == "sni":  # the server spoke first: not TLS, nothing to check
            if self._buf:
                self._deny("sni:server-spoke-during-client-hello", reply=b"")
                return
            self.state = "relay"
        if self.state == "relay" and data and self._charge(len(data)):
            self.bytes_received += len(data)
            self.out.append(SendClient(data))
            self._sniff(data, server_side=True)

    def _sniff(self, data: bytes, server_side: bool) -> None:
        if self._sniffer is None:
            self._sniffer = Sniffer(self.host or "")
        if self._sniffer.done():
            return
        for fp in self._sniffer.server(data) if server_side else self._sniffer.client(data):
            self.fingerprints.append(fp)
            self.out.append(self._make_record("allowed", self._rule(), fp, interim=True))

    # -- endings -------------------------------------------------------------------------------------------
    def _rule(self) -> str:
        return self.verdict.rule if self.verdict is not None else "unknown"

    def _make_record(
        self, decision: Literal["allowed", "denied"], rule: str, fp: Fingerprint | None, interim: bool = False
    ) -> Record:
        return Record(
            self.proxy_protocol,
            self.host,
            self.port,
            self.ip,
            decision,
            rule,
            self.bytes_sent,
            self.bytes_received,
            self.outside,
            fingerprint=fp.name if fp else None,
            fingerprint_detail=f"{fp.direction}: {fp.detail}" if fp else None,
            interim=interim,
        )

    def _record(self, decision: Literal["allowed", "denied"], rule: str) -> None:
        if self._recorded:
            return
        self._recorded = True
        fp = self.fingerprints[0] if self.fingerprints else None
        self.out.append(self._make_record(decision, rule, fp))

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
            if self.proxy_protocol in ("socks4", "socks4a", "tls"):
                reply = b""
            elif self.proxy_protocol == "socks5":
                reply = socks5_reply(4 if rule.startswith("resolve-failed") else 2)
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
        else:  # the client gave up before a complete request: still one denied attempt on record
            self._record("denied", "incomplete-request" if self._buf else "no-request")
        self.out.append(CloseAll())
