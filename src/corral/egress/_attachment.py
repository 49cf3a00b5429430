"""``NetworkAttachment``: what a sandbox holds while it uses one network namespace."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from corral.errors import EgressError
from corral.events import TraceContext

if TYPE_CHECKING:
    from corral.egress._egress import Egress
    from corral.egress._emission import Attached


class NetworkAttachment:
    """One sandbox's network: the netns to ``setns()`` into, the env and files for its calls.

    The sandbox calls ``begin_call``/``end_call`` around each tool call so every attempt
    is tagged with that call's trace context, ``check`` before and after a call (fail
    closed: a dead proxy or resolver is reported), and ``close`` once at the end.
    """

    def __init__(self, egress: Egress, state: Attached) -> None:
        self._egress = egress
        self._state = state
        self._closed = False
        self.sandbox_id = state.sandbox_id
        self.netns_path: str = state.slot.netns_path
        self.sandbox_ip: str | None = state.slot.sandbox_ip
        self.gateway: str = egress.block.gateway
        self.proxy_port: int = egress.block.proxy_port
        self.env: Mapping[str, str] = egress.env()
        self.files: Mapping[str, str] = {"/etc/resolv.conf": egress.resolv_conf}

    def begin_call(self, ctx: TraceContext) -> None:
        self._alive()
        self._egress.set_context(self._state, ctx)

    def end_call(self) -> None:
        if not self._closed:
            self._egress.set_context(self._state, None)

    def check(self) -> None:
        self._alive()
        self._egress.health(self._state)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._egress.release(self._state)

    def _alive(self) -> None:
        if self._closed:
            raise EgressError(f"network attachment of sandbox {self.sandbox_id} is closed")

    def __enter__(self) -> NetworkAttachment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
