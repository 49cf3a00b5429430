"""Clients of one node service (Unix socket, or HTTP with a token): async, and its sync face.

``AsyncServiceClient`` is the implementation (aiohttp: its connection pool costs the
same per request however many are in flight, where httpcore's scans every
connection for every request, which took seconds of CPU at a few hundred
concurrent calls); ``ServiceClient`` runs it on the process's portal loop for
synchronous code. One client holds one connection pool and one heartbeat task
for every sandbox it created.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from corral import errors
from corral.errors import CorralError, StoreError
from corral.harness import Portal, portal
from corral.integrations.service._heartbeat import Heartbeats
from corral.integrations.service._models import ErrorBody, Health, Heartbeat, HeartbeatReply, SandboxInfo
from corral.integrations.service._server import DEFAULT_SOCKET
from corral.sandbox import ToolResult

# Errors rebuilt on the client from their name; the dataclass ones carry structured problems instead.
_NOT_REBUILT = ("PolicyError", "RuleError")
# Idle connections are dropped before the server's keep-alive (``ServeConfig.keep_alive_s``, uvicorn's
# default 5 s) closes them, so a request never goes out on a connection the server is closing.
_KEEPALIVE_S = 2.0
_MAX_LINE = 256 << 20  # an NDJSON line holds one ToolResult: both outputs, capped by the policy


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


@dataclass(frozen=True)
class Reply:
    """A response read in full."""

    status: int
    headers: Mapping[str, str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


def raise_for(reply: Reply) -> None:
    """Raise the service's error for a response with status >= 400."""
    if reply.status < 400:
        return
    try:
        body = ErrorBody.model_validate_json(reply.content)
    except ValueError:
        raise CorralError(f"node service: HTTP {reply.status}: {reply.text[:500]}") from None
    raise error_from(body.error, body.detail, body.result)


def _params(params: Mapping[str, object] | None) -> dict[str, str] | None:
    if params is None:
        return None
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.items() if v is not None}


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
        self.socket_path = (socket_path or DEFAULT_SOCKET) if url is None else None
        self.base_url = url.rstrip("/") if url is not None else "http://corral"
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None
        self.heartbeats = Heartbeats(self._beat)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # No cap on connections: concurrent calls must not queue for one (the node caps sandboxes).
            connector: aiohttp.BaseConnector
            if self.socket_path is not None:
                connector = aiohttp.UnixConnector(
                    path=self.socket_path, limit=0, keepalive_timeout=_KEEPALIVE_S
                )
            else:
                connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=_KEEPALIVE_S)
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers,
                timeout=self.timeout(),
                auto_decompress=False,
            )
        return self._session

    def timeout(self, call_timeout_s: float | None = None) -> aiohttp.ClientTimeout:
        """Connect quickly or fail; wait for a call as long as its own timeout allows."""
        read = max(self.timeout_s, (call_timeout_s or 0) + 60)
        return aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=read)

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, object] | None = None,
        json_body: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A response whose body is read as it comes; a status >= 400 is raised as the service's error."""
        try:
            async with self._http().request(
                method,
                self.base_url + path,
                params=_params(params),
                json=json_body,
                data=data,
                headers=headers,
                timeout=timeout or self.timeout(),
            ) as resp:
                if resp.status >= 400:
                    raise_for(Reply(resp.status, dict(resp.headers), await resp.read()))
                yield resp
        except aiohttp.ClientError as exc:
            raise errors.SandboxError(f"node service unreachable or gone: {exc!r}") from exc
        except TimeoutError as exc:
            raise errors.SandboxError(f"node service: no answer for {path} in time") from exc

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, object] | None = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> Reply:
        async with self.stream(
            method, path, params=params, json_body=json, data=data, headers=headers, timeout=timeout
        ) as resp:
            return Reply(resp.status, dict(resp.headers), await resp.read())

    async def _beat(self, ids: list[str]) -> list[str]:
        reply = await self.request("POST", "/v1/heartbeat", json=Heartbeat(ids=ids).model_dump())
        return HeartbeatReply.model_validate_json(reply.content).unknown

    async def health(self) -> Health:
        return Health.model_validate_json((await self.request("GET", "/v1/health")).content)

    async def sandboxes(self) -> list[SandboxInfo]:
        return [SandboxInfo.model_validate(x) for x in (await self.request("GET", "/v1/sandboxes")).json()]

    async def events(
        self, *, follow: bool = False, max_wait_s: float = 30.0, **filters: Any
    ) -> AsyncIterator[dict[str, Any]]:
        params = {**filters, "follow": follow, "max_wait_s": max_wait_s}
        timeout = self.timeout(max_wait_s)
        async with self.stream("GET", "/v1/events", params=params, timeout=timeout) as resp:
            async for line in lines(resp):
                yield json.loads(line)

    async def metrics(self) -> str:
        return (await self.request("GET", "/metrics")).text

    async def aclose(self) -> None:
        await self.heartbeats.aclose()
        if self._session is not None:
            await self._session.close()


async def lines(resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The non-empty lines of a streamed body, as they arrive (any length up to ``_MAX_LINE``)."""
    buf = bytearray()
    async for chunk in resp.content.iter_any():
        buf += chunk
        while (nl := buf.find(b"\n")) >= 0:
            line = bytes(buf[:nl])
            del buf[: nl + 1]
            if line:
                yield line
        if len(buf) > _MAX_LINE:
            raise errors.SandboxError("node service: a streamed line is longer than any result can be")
    if buf:
        yield bytes(buf)


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

    def request(self, method: str, path: str, **kw: Any) -> Reply:
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
