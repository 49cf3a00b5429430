"""The vocabulary of a proxied flow: the events the server feeds it, the commands it returns,
and the record it leaves. No logic here; ``_flow.Flow`` is the state machine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


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


@dataclass(frozen=True)
class RequestTimeout:
    """No complete request arrived in time (the server arms it when a connection opens)."""


FlowEvent = (
    ClientData
    | ClientClosed
    | Resolved
    | ResolveFailed
    | Connected
    | ConnectFailed
    | ServerData
    | ServerClosed
    | RequestTimeout
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
    """The one record a flow leaves: a denied attempt, or an allowed flow when it ends.

    ``interim`` records come earlier, once per protocol fingerprint seen on an allowed flow, so
    a tunnel or miner is reported while it runs, not when it stops."""

    proxy_protocol: str
    host: str | None
    port: int | None
    ip: str | None
    decision: Literal["allowed", "denied"]
    rule: str
    bytes_sent: int = 0
    bytes_received: int = 0
    outside: Connected | None = None
    fingerprint: str | None = None
    fingerprint_detail: str | None = None
    interim: bool = False


Command = SendClient | SendServer | Resolve | Dial | CloseAll | Record


@dataclass
class Account:
    """Per-sandbox budget use; shared by the sandbox's flows, reset when a sandbox is attached."""

    connections_max: int
    transfer_max_bytes: int
    connections: int = 0
    transfer_bytes: int = 0
