"""``RemoteSandbox``: the ``Sandbox`` interface over the node service, for unprivileged trainers.

    with RemoteSandbox() as sb:                     # the node's Unix socket
        r = sb.run("pytest -q", ctx=TraceContext(run_id="r1", episode_id="e1"))

A background heartbeat keeps the lease while the client lives; if the client
dies, the service reaps its sandbox after the lease.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx

from corral import errors
from corral.errors import CorralError, SandboxClosedError
from corral.events import TraceContext
from corral.integrations.service._models import Health, SandboxInfo
from corral.integrations.service._server import DEFAULT_SOCKET
from corral.sandbox import ToolResult


def _raise_for(resp: httpx.Response) -> None:
    if resp.status_code < 400:
        return
    try:
        body = resp.json()
        name, detail = str(body.get("error", "")), str(body.get("detail", resp.text))
    except (ValueError, AttributeError):
        name, detail = "", resp.text
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, CorralError) and name not in ("PolicyError", "RuleError"):
        raise cls(detail)
    raise CorralError(f"node service: HTTP {resp.status_code}: {detail}")


class ServiceClient:
    """Low-level client of one node service (Unix socket or HTTP with a token)."""

    def __init__(
        self,
        *,
        socket_path: str | None = None,
        url: str | None = None,
        token: str | None = None,
        timeout_s: float = 600.0,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if url is None:
            transport = httpx.HTTPTransport(uds=socket_path or DEFAULT_SOCKET)
            self.http = httpx.Client(
                transport=transport, base_url="http://corral", headers=headers, timeout=timeout_s
            )
        else:
            self.http = httpx.Client(base_url=url, headers=headers, timeout=timeout_s)

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            resp = self.http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise errors.SandboxError(f"node service unreachable: {exc}") from exc
        _raise_for(resp)
        return resp

    def health(self) -> Health:
        return Health.model_validate(self.request("GET", "/v1/health").json())

    def sandboxes(self) -> list[SandboxInfo]:
        return [SandboxInfo.model_validate(x) for x in self.request("GET", "/v1/sandboxes").json()]

    def events(
        self, *, follow: bool = False, max_wait_s: float = 30.0, **filters: Any
    ) -> Iterator[dict[str, Any]]:
        params = {k: v for k, v in filters.items() if v is not None}
        params.update(follow=str(follow).lower(), max_wait_s=max_wait_s)
        with self.http.stream("GET", "/v1/events", params=params) as resp:
            if resp.status_code >= 400:
                resp.read()
                _raise_for(resp)
            for line in resp.iter_lines():
                if line:
                    yield json.loads(line)

    def metrics(self) -> str:
        return self.request("GET", "/metrics").text

    def close(self) -> None:
        self.http.close()


class RemoteSandbox:
    """Same interface as ``corral.Sandbox``; the sandbox lives in the node service."""

    def __init__(
        self,
        policy: str = "default",
        *,
        sandbox_id: str | None = None,
        socket_path: str | None = None,
        url: str | None = None,
        token: str | None = None,
        lease_s: float = 60.0,
        heartbeat: bool = True,
        client: ServiceClient | None = None,
    ) -> None:
        self._own_client = client is None
        self.client = client or ServiceClient(socket_path=socket_path, url=url, token=token)
        body = {"policy": policy, "sandbox_id": sandbox_id, "lease_s": lease_s}
        info = SandboxInfo.model_validate(self.client.request("POST", "/v1/sandboxes", json=body).json())
        self.id = info.id
        self.host = info.host
        self.policy_name = policy
        self._closed = False
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        if heartbeat:
            self._beat = threading.Thread(target=self._heartbeat, args=(lease_s / 3,), daemon=True)
            self._beat.start()

    def _heartbeat(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            try:
                self.client.request("POST", f"/v1/sandboxes/{self.id}/heartbeat")
            except SandboxClosedError:
                return
            except CorralError:
                continue  # the service may be restarting; the next beat tries again

    def run(
        self,
        command: str | Sequence[str],
        ctx: TraceContext | None = None,
        *,
        timeout: float | None = None,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ToolResult:
        if self._closed:
            raise SandboxClosedError(f"sandbox {self.id} is closed")
        body: dict[str, Any] = {
            "command": command if isinstance(command, str) else list(command),
            "ctx": ctx.model_dump(mode="json") if ctx is not None else None,
            "timeout": timeout,
            "stdin_b64": base64.b64encode(stdin).decode() if stdin is not None else None,
            "env": dict(env) if env is not None else None,
        }
        resp = self.client.request("POST", f"/v1/sandboxes/{self.id}/run", json=body)
        return ToolResult.model_validate(resp.json())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        try:
            self.client.request("DELETE", f"/v1/sandboxes/{self.id}")
        except SandboxClosedError:
            pass  # reaped already
        finally:
            if self._own_client:
                self.client.close()

    def __enter__(self) -> RemoteSandbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
