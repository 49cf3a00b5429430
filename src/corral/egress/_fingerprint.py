"""Protocol fingerprints on allowed connections, from the first bytes of each direction (pure).

An allowlist says where a sandbox may connect, not what it may speak there. These signals
do not depend on the command text: an SSH banner in either direction (a tunnel or shell
carried over an allowed port), stratum JSON-RPC (a miner talking to a pool), and a TLS
ClientHello that is not the first thing on the connection or names another server than the
allowed one (a TLS tunnel to somewhere else). Only the first ``SNIFF_BYTES`` of each
direction are looked at, so relaying stays cheap.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from corral.egress._tls import client_hello_sni

SNIFF_BYTES = 8 * 1024
_SSH = re.compile(rb"(?:^|\n)(SSH-(?:2\.0|1\.\d+|1\.99)-[\x21-\x7e]{1,200})")
_STRATUM_CLIENT = frozenset(
    {"mining.subscribe", "mining.authorize", "mining.submit", "mining.extranonce.subscribe", "login",
     "submit", "eth_submitlogin", "eth_submitwork", "keepalived"}
)  # fmt: skip
_STRATUM_SERVER = frozenset({"mining.notify", "mining.set_difficulty", "mining.set_extranonce", "job"})
_HELLO = re.compile(rb"\x16\x03[\x00-\x04]..\x01", re.DOTALL)


@dataclass(frozen=True)
class Fingerprint:
    name: str  # ssh | stratum | tls-tunnel
    detail: str
    direction: str  # client | server


@dataclass
class Sniffer:
    """Feed it relayed bytes; it returns each fingerprint the first time it is seen."""

    host: str
    _up: bytes = b""
    _down: bytes = b""
    _seen: set[str] = field(default_factory=set)

    def done(self) -> bool:
        return len(self._up) >= SNIFF_BYTES and len(self._down) >= SNIFF_BYTES

    def client(self, data: bytes) -> list[Fingerprint]:
        if len(self._up) >= SNIFF_BYTES:
            return []
        self._up += data[: SNIFF_BYTES - len(self._up)]
        found = [*self._ssh(self._up, "client"), *self._stratum(self._up, _STRATUM_CLIENT, "client")]
        found += self._tls(self._up)
        return self._new(found)

    def server(self, data: bytes) -> list[Fingerprint]:
        if len(self._down) >= SNIFF_BYTES:
            return []
        self._down += data[: SNIFF_BYTES - len(self._down)]
        return self._new(
            [*self._ssh(self._down, "server"), *self._stratum(self._down, _STRATUM_SERVER, "server")]
        )

    def _new(self, found: list[Fingerprint]) -> list[Fingerprint]:
        out = [f for f in found if f.name not in self._seen]
        self._seen.update(f.name for f in out)
        return out

    @staticmethod
    def _ssh(buf: bytes, direction: str) -> list[Fingerprint]:
        m = _SSH.search(buf)
        return [Fingerprint("ssh", m.group(1).decode("ascii"), direction)] if m else []

    @staticmethod
    def _stratum(buf: bytes, methods: frozenset[str], direction: str) -> list[Fingerprint]:
        for line in buf.split(b"\n")[:-1] if b"\n" in buf else []:
            line = line.strip()
            if not line.startswith(b"{") or len(line) > 4096:
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            method = msg.get("method") if isinstance(msg, dict) else None
            if isinstance(method, str) and method.lower() in methods:
                if method == "login" and not isinstance(msg.get("params"), dict):
                    continue  # "login" alone is too common a word; stratum's carries a params object
                return [Fingerprint("stratum", method, direction)]
        return []

    def _tls(self, buf: bytes) -> list[Fingerprint]:
        host = self.host.lower().rstrip(".")
        for m in _HELLO.finditer(buf):
            at = m.start()
            total = 5 + int.from_bytes(buf[at + 3 : at + 5], "big")
            if at + total > len(buf):
                continue
            sni = client_hello_sni(buf[at : at + total])
            if at > 0 or (sni is not None and sni.lower().rstrip(".") != host):
                return [Fingerprint("tls-tunnel", f"sni={sni or '-'} offset={at}", "client")]
        return []
