"""Clients of one node service (Unix socket, or HTTP with a token): async, and its sync face.

``AsyncServiceClient`` is the implementation; ``ServiceClient`` runs it on the
process's portal loop for synchronous code. One client holds one connection pool
and one heartbeat task for every sandbox it created.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from corral import errors
from corral.errors import CorralError, StoreError
from corral.harness import Portal, portal
from corral.integrations.service._heartbeat import Heartbeats
from corral.integrations.service._models import ErrorBody, Health, Heartbeat, HeartbeatReply, SandboxInfo
from corral.integrations.service._server import DEFAULT_SOCKET
from corral.sandbox import ToolResult

# Errors rebuilt on the client from their name; the dataclass ones carry structured problems instead.
_NOT_REBUILT = ("PolicyError", "RuleError")


def error_from(name: str, detail: str, result: ToolResult | None = None) -> CorralError:
    """The ``CorralError`` the service reported, as its own class where Corral has it."""
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, CorralError) and name not in _NOT_REBUILT:
        exc = cls(detail)
    else:
        exc = CorralError(f"node service: {name}: {detail}")
    if isinstance(exc, StoreError):
        exc.result = result
    return exc


def raise_for(resp: httpx.Response) -> None:
    """Raise the service's error for a response read in full (status >= 400)."""
    if resp.status_code < 400:
        return
    try:
        body = ErrorBody.model_validate(resp.json())
    except ValueError:
        raise CorralError(f"node service: HTTP {resp.status_code}: {resp.text[:500]}") from None
    raise error_from(body.error, body.detail, body.result)


class AsyncServiceClient:
    """Low-level async client of one node service; use it from one event loop."""

    def __init__(
        self,
        *,
        socket_path: str | None = None,
        url: str | None = None,
        token: str | None = None,
        timeout_s: float = 600.0,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # No cap on connections: concurrent calls must not queue for one (the node caps sandboxes).
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=256)
        self.timeout_s = timeout_s
        if url is None:
            self.http = httpx.AsyncClient(
                transport=httpx.AsyncHTTPTransport(uds=socket_path or DEFAULT_SOCKET, limits=limits),
                base_url="http://corral",
                headers=headers,
                timeout=timeout_s,
            )
        else:
            self.http = httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout_s, limits=limits)
        self.heartbeats = Heartbeats(self._beat)

    async def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            resp = await self.http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise errors.SandboxError(f"node service unreachable: {exc}") from exc
        raise_for(resp)
        return resp

    async def _beat(self, ids: list[str]) -> list[str]:
        resp = await self.request("POST", "/v1/heartbeat", json=Heartbeat(ids=ids).model_dump())
        return HeartbeatReply.model_validate(resp.json()).unknown

    async def health(self) -> Health:
        return Health.model_validate((await self.request("GET", "/v1/health")).json())

    async def sandboxes(self) -> list[SandboxInfo]:
        return [SandboxInfo.model_validate(x) for x in (await self.request("GET", "/v1/sandboxes")).json()]

    async def events(
        self, *, follow: bool = False, max_wait_s: float = 30.0, **filters: Any
    ) -> AsyncIterator[dict[str, Any]]:
        params = {k: v for k, v in filters.items() if v is not None}
        params.update(follow=str(follow).lower(), max_wait_s=max_wait_s)
        try:
            async with self.http.stream("GET", "/v1/events", params=params) as resp:
                if resp.status_code >= 400:
                    await resp.aread()
                    raise_for(resp)
                async for line in resp.aiter_lines():
                    if line:
                        yield json.loads(line)
        except httpx.TransportError as exc:
            raise errors.SandboxError(f"node service unreachable: {exc}") from exc

    async def metrics(self) -> str:
        return (await self.request("GET", "/metrics")).text

    async def aclose(self) -> None:
        await self.heartbeats.aclose()
        await self.http.aclose()


class ServiceClient:
    """The synchronous face of ``AsyncServiceClient`` (which it runs on the portal loop as ``inner``)."""

    def __init__(
        self,
        *,
        socket_path: str | None = None,
        url: str | None = None,
        token: str | None = None,
        timeout_s: float = 600.0,
        loop_portal: Portal | None = None,
    ) -> None:
        self.portal = loop_portal or portal()
        self.inner = AsyncServiceClient(socket_path=socket_path, url=url, token=token, timeout_s=timeout_s)

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.portal.call(self.inner.request(method, path, **kw))

    def health(self) -> Health:
        return self.portal.call(self.inner.health())

    def sandboxes(self) -> list[SandboxInfo]:
        return self.portal.call(self.inner.sandboxes())

    def events(
        self, *, follow: bool = False, max_wait_s: float = 30.0, **filters: Any
    ) -> Iterator[dict[str, Any]]:
        return self.portal.iterate(self.inner.events(follow=follow, max_wait_s=max_wait_s, **filters))

    def metrics(self) -> str:
        return self.portal.call(self.inner.metrics())

    def close(self) -> None:
        self.portal.call(self.inner.aclose())
