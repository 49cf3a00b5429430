"""The HTTP API of the node service (FastAPI). Over TCP every route but health needs a bearer token."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import time
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from corral import __version__
from corral.errors import CorralError, InputError, SandboxClosedError
from corral.integrations.service._logs import add_log_routes
from corral.integrations.service._models import CreateSandbox, ErrorBody, Health, RunCall, SandboxInfo
from corral.integrations.service._node import NodeService
from corral.sandbox import ToolResult

_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody},
    400: {"model": ErrorBody},
    401: {"model": ErrorBody},
}


def create_app(node: NodeService, *, token: str | None = None, follow_poll_s: float = 0.2) -> FastAPI:
    """The API over ``node``. ``token``: required as ``Authorization: Bearer <token>`` (TCP listeners)."""
    app = FastAPI(
        title="Corral node service",
        version=__version__,
        description="Sandboxes for the tool calls of RL agents on this node: create, run, destroy, events.",
    )

    def auth(authorization: Annotated[str | None, Header()] = None) -> None:
        if token is None:
            return
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, detail="missing or wrong bearer token")

    authed = [Depends(auth)]

    @app.exception_handler(CorralError)
    def _corral_error(request: Request, exc: CorralError) -> JSONResponse:
        status = 404 if isinstance(exc, SandboxClosedError) else 400 if isinstance(exc, InputError) else 500
        return JSONResponse({"error": type(exc).__name__, "detail": str(exc)}, status_code=status)

    @app.get("/v1/health", response_model=Health)
    def health() -> Health:
        return Health(
            status="ok",
            version=__version__,
            sandboxes=len(node),
            policies=sorted(node.policies),
            store_pending=node.store_pending(),
        )

    @app.post(
        "/v1/sandboxes", response_model=SandboxInfo, status_code=201, dependencies=authed, responses=_ERRORS
    )
    def create(req: CreateSandbox) -> SandboxInfo:
        return node.create(req.policy, sandbox_id=req.sandbox_id, lease_s=req.lease_s, owner=req.owner)

    @app.get("/v1/sandboxes", response_model=list[SandboxInfo], dependencies=authed)
    def list_sandboxes() -> list[SandboxInfo]:
        return node.sandboxes()

    @app.get("/v1/sandboxes/{sandbox_id}", response_model=SandboxInfo, dependencies=authed, responses=_ERRORS)
    def info(sandbox_id: str) -> SandboxInfo:
        return node.info(sandbox_id)

    @app.post(
        "/v1/sandboxes/{sandbox_id}/run", response_model=ToolResult, dependencies=authed, responses=_ERRORS
    )
    def run(sandbox_id: str, call: RunCall) -> ToolResult:
        try:
            stdin = base64.b64decode(call.stdin_b64, validate=True) if call.stdin_b64 is not None else None
        except binascii.Error as exc:
            raise InputError(f"stdin_b64 is not base64: {exc}") from exc
        return node.run(sandbox_id, call.command, call.ctx, timeout=call.timeout, stdin=stdin, env=call.env)

    @app.post("/v1/sandboxes/{sandbox_id}/heartbeat", status_code=204, dependencies=authed, responses=_ERRORS)
    def heartbeat(sandbox_id: str) -> Response:
        node.heartbeat(sandbox_id)
        return Response(status_code=204)

    @app.delete("/v1/sandboxes/{sandbox_id}", status_code=204, dependencies=authed, responses=_ERRORS)
    def destroy(sandbox_id: str) -> Response:
        if not node.destroy(sandbox_id):
            raise SandboxClosedError(f"no sandbox {sandbox_id}")
        return Response(status_code=204)

    @app.get(
        "/v1/events",
        dependencies=authed,
        response_class=StreamingResponse,
        responses={200: {"content": {"application/x-ndjson": {}}, "description": "One event per line"}},
    )
    def events(
        after_seq: Annotated[int, Query(ge=0)] = 0,
        run_id: str | None = None,
        episode_id: str | None = None,
        sandbox_id: str | None = None,
        type: str | None = None,
        follow: bool = False,
        limit: Annotated[int | None, Query(ge=1, le=100_000)] = None,
        max_wait_s: Annotated[float, Query(ge=0, le=3600)] = 30.0,
    ) -> StreamingResponse:
        store = node.store
        if store is None:
            raise InputError("this service keeps no event store")

        def lines() -> Iterator[bytes]:
            seq, sent = after_seq, 0
            deadline = time.monotonic() + max_wait_s
            while True:
                for ev in store.query(
                    run_id=run_id,
                    episode_id=episode_id,
                    sandbox_id=sandbox_id,
                    type=type,
                    after_seq=seq,
                    limit=None if limit is None else limit - sent,
                ):
                    seq = ev.seq or seq
                    sent += 1
                    yield json.dumps(ev.flat(), default=str).encode() + b"\n"
                if not follow or (limit is not None and sent >= limit) or time.monotonic() > deadline:
                    return
                time.sleep(follow_poll_s)

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    @app.get("/metrics", dependencies=authed, response_class=Response)
    def metrics() -> Response:
        node.metrics.store_lag.set(node.store_pending())
        return Response(node.metrics.render(), media_type="text/plain; version=0.0.4")

    add_log_routes(app, node, auth)
    return app


def openapi_spec(node: NodeService) -> dict[str, Any]:
    return create_app(node).openapi()
