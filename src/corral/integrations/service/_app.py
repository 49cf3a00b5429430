"""The HTTP API of the node service (FastAPI). Over TCP every route but health needs a bearer token.

Calls, streams and file transfers are coroutines on the server's event loop. Bodies
are streamed: a file written is read at most up to the policy's cap, an upload or a
download moves as a tar stream in chunks, and a streamed call sends one NDJSON line
per output chunk as it comes, then one with the ``ToolResult``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from corral import __version__
from corral.errors import (
    CorralError,
    ImageError,
    ImageNotAllowedError,
    InputError,
    SandboxClosedError,
    SandboxFileError,
    SandboxFileNotFoundError,
    SandboxFileTooLargeError,
    SandboxPermissionError,
    SandboxUnavailableError,
    StoreError,
)
from corral.harness import FileEntry, OutputChunk
from corral.integrations.service._logs import add_log_routes
from corral.integrations.service._models import (
    CreateSandbox,
    ErrorBody,
    Health,
    Heartbeat,
    HeartbeatReply,
    RunCall,
    SandboxInfo,
    StreamChunk,
    StreamError,
    StreamLine,
    StreamResult,
)
from corral.integrations.service._node import NodeService
from corral.sandbox import ToolResult

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody},
    401: {"model": ErrorBody},
    403: {"model": ErrorBody},
    404: {"model": ErrorBody},
    413: {"model": ErrorBody},
}
_BINARY = {"schema": {"type": "string", "format": "binary"}}
_DRAIN_MAX = 64 << 20  # after an error, read (and drop) this much of a body so the client sees the error


def status_of(exc: CorralError) -> int:
    if isinstance(exc, SandboxClosedError | SandboxFileNotFoundError):
        return 404
    if isinstance(exc, SandboxFileTooLargeError):
        return 413
    if isinstance(exc, SandboxPermissionError | ImageNotAllowedError):
        return 403
    if isinstance(exc, InputError | SandboxFileError | ImageError):
        return 400
    if isinstance(exc, StoreError | SandboxUnavailableError):
        return 503
    return 500


def error_body(exc: CorralError) -> ErrorBody:
    result = getattr(exc, "result", None)
    return ErrorBody(
        error=type(exc).__name__,
        detail=str(exc),
        result=result if isinstance(result, ToolResult) else None,
    )


def _stdin(call: RunCall) -> bytes | None:
    try:
        return base64.b64decode(call.stdin_b64, validate=True) if call.stdin_b64 is not None else None
    except binascii.Error as exc:
        raise InputError(f"stdin_b64 is not base64: {exc}") from exc


class _Body:
    """A request body read once, in chunks; after an error the rest can be drained."""

    def __init__(self, request: Request) -> None:
        self._it = request.stream().__aiter__()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._it

    async def drain(self) -> None:
        seen = 0
        async for chunk in self._it:
            seen += len(chunk)
            if seen > _DRAIN_MAX:
                return


def _line(item: OutputChunk | ToolResult) -> bytes:
    msg = StreamResult(result=item) if isinstance(item, ToolResult) else StreamChunk(**item.model_dump())
    return msg.model_dump_json().encode() + b"\n"


def create_app(node: NodeService, *, token: str | None = None, follow_poll_s: float = 0.2) -> FastAPI:
    """The API over ``node``. ``token``: required as ``Authorization: Bearer <token>`` (TCP listeners)."""
    app = FastAPI(
        title="Corral node service",
        version=__version__,
        description="Sandboxes for the tool calls of RL agents on this node: create, run, stream, "
        "files in and out, destroy, events.",
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
        return JSONResponse(error_body(exc).model_dump(mode="json"), status_code=status_of(exc))

    @app.get("/v1/health", response_model=Health)
    async def health() -> Health:
        return Health(
            status="ok",
            version=__version__,
            sandboxes=len(node),
            policies=sorted(node.policies),
            store_pending=node.store_pending(),
        )

    # -- sandboxes -------------------------------------------------------------------------

    @app.post(
        "/v1/sandboxes", response_model=SandboxInfo, status_code=201, dependencies=authed, responses=_ERRORS
    )
    async def create(req: CreateSandbox) -> SandboxInfo:
        return await node.create(
            req.policy, sandbox_id=req.sandbox_id, lease_s=req.lease_s, owner=req.owner, image=req.image
        )

    @app.get("/v1/sandboxes", response_model=list[SandboxInfo], dependencies=authed)
    async def list_sandboxes() -> list[SandboxInfo]:
        return node.sandboxes()

    @app.get("/v1/sandboxes/{sandbox_id}", response_model=SandboxInfo, dependencies=authed, responses=_ERRORS)
    async def info(sandbox_id: str) -> SandboxInfo:
        return node.info(sandbox_id)

    @app.post("/v1/sandboxes/{sandbox_id}/heartbeat", status_code=204, dependencies=authed, responses=_ERRORS)
    async def heartbeat(sandbox_id: str) -> Response:
        node.heartbeat(sandbox_id)
        return Response(status_code=204)

    @app.post("/v1/heartbeat", response_model=HeartbeatReply, dependencies=authed)
    async def heartbeat_many(req: Heartbeat) -> HeartbeatReply:
        """Renew many leases in one request (a client's heartbeat for all the sandboxes it holds)."""
        return HeartbeatReply(unknown=node.heartbeat_many(req.ids))

    @app.delete("/v1/sandboxes/{sandbox_id}", status_code=204, dependencies=authed, responses=_ERRORS)
    async def destroy(sandbox_id: str) -> Response:
        if not await node.destroy(sandbox_id):
            raise SandboxClosedError(f"no sandbox {sandbox_id}")
        return Response(status_code=204)

    # -- calls -----------------------------------------------------------------------------

    @app.post(
        "/v1/sandboxes/{sandbox_id}/run", response_model=ToolResult, dependencies=authed, responses=_ERRORS
    )
    async def run(sandbox_id: str, call: RunCall) -> ToolResult:
        return await node.run(
            sandbox_id, call.command, call.ctx, timeout=call.timeout, stdin=_stdin(call), env=call.env
        )

    @app.post(
        "/v1/sandboxes/{sandbox_id}/stream",
        dependencies=authed,
        response_class=StreamingResponse,
        responses={
            **_ERRORS,
            200: {
                "model": StreamLine,
                "description": "NDJSON, one StreamLine per line: chunks as the call produces them, "
                "then one result (or one error).",
                "content": {"application/x-ndjson": {}},
            },
        },
    )
    async def stream(sandbox_id: str, call: RunCall) -> StreamingResponse:
        stdin = _stdin(call)
        node.info(sandbox_id)  # an unknown sandbox is a 404, before the stream starts
        items = node.stream(
            sandbox_id, call.command, call.ctx, timeout=call.timeout, stdin=stdin, env=call.env
        )

        async def lines() -> AsyncIterator[bytes]:
            try:
                async for item in items:
                    yield _line(item)
            except CorralError as exc:
                e = error_body(exc)
                line = StreamError(error=e.error, detail=e.detail, result=e.result).model_dump_json()
                yield line.encode() + b"\n"
            finally:
                await items.aclose()  # type: ignore[attr-defined]  # a client gone: the call is stopped

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    # -- files -----------------------------------------------------------------------------

    @app.put(
        "/v1/sandboxes/{sandbox_id}/file",
        status_code=204,
        dependencies=authed,
        responses=_ERRORS,
        openapi_extra={"requestBody": {"required": True, "content": {"application/octet-stream": _BINARY}}},
    )
    async def write_file(
        sandbox_id: str,
        request: Request,
        path: Annotated[str, Query(description="Relative to the workspace, or an allowed absolute path.")],
        mode: Annotated[int, Query(ge=0, le=0o7777)] = 0o644,
    ) -> Response:
        body, data = _Body(request), bytearray()
        try:
            cap = node.files_policy(sandbox_id).file_max_bytes
        except CorralError:
            await body.drain()
            raise
        async for chunk in body:
            data += chunk
            if len(data) > cap:
                await body.drain()
                raise SandboxFileTooLargeError(f"{path}: more than {cap} bytes is over files.file_max_bytes")
        await node.write_file(sandbox_id, path, bytes(data), mode=mode)
        return Response(status_code=204)

    @app.get(
        "/v1/sandboxes/{sandbox_id}/file",
        dependencies=authed,
        response_class=Response,
        responses={**_ERRORS, 200: {"content": {"application/octet-stream": _BINARY}}},
    )
    async def read_file(sandbox_id: str, path: str) -> Response:
        data = await node.read_file(sandbox_id, path)
        return Response(data, media_type="application/octet-stream")

    @app.get(
        "/v1/sandboxes/{sandbox_id}/files",
        response_model=list[FileEntry],
        dependencies=authed,
        responses=_ERRORS,
    )
    async def list_files(sandbox_id: str, path: str = ".", recursive: bool = False) -> list[FileEntry]:
        return await node.list_files(sandbox_id, path, recursive=recursive)

    @app.put(
        "/v1/sandboxes/{sandbox_id}/tree",
        status_code=204,
        dependencies=authed,
        responses=_ERRORS,
        openapi_extra={"requestBody": {"required": True, "content": {"application/x-tar": _BINARY}}},
    )
    async def upload(
        sandbox_id: str,
        request: Request,
        dest: Annotated[str, Query(description="Where in the sandbox; ending in / takes the file's name.")],
        kind: Annotated[Literal["file", "dir"], Query(description="One file, or a directory's contents.")],
    ) -> Response:
        """Upload a file or a tree as a tar stream (uncompressed; links are recreated, never followed)."""
        body = _Body(request)
        try:
            await node.upload(sandbox_id, dest, kind, body)
        except CorralError:
            await body.drain()
            raise
        return Response(status_code=204)

    @app.get(
        "/v1/sandboxes/{sandbox_id}/tree",
        dependencies=authed,
        response_class=StreamingResponse,
        responses={
            **_ERRORS,
            200: {
                "content": {"application/x-tar": _BINARY},
                "description": "A tar stream; header X-Corral-Kind is file or dir, X-Corral-Name the "
                "file's name (percent-encoded). Links and special files are never sent.",
            },
        },
    )
    async def download(sandbox_id: str, path: str) -> StreamingResponse:
        d = await node.download(sandbox_id, path)
        return StreamingResponse(
            d.chunks(),
            media_type="application/x-tar",
            headers={"X-Corral-Kind": d.kind, "X-Corral-Name": quote(d.name, safe="")},
            background=BackgroundTask(d.aclose),
        )

    # -- events and metrics ----------------------------------------------------------------

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

        def lines() -> Iterator[bytes]:  # a blocking reader: Starlette runs it in its thread pool
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
    async def metrics() -> Response:
        node.metrics.store_lag.set(node.store_pending())
        return Response(node.metrics.render(), media_type="text/plain; version=0.0.4")

    add_log_routes(app, node, auth)
    return app


def openapi_spec(node: NodeService) -> dict[str, Any]:
    return create_app(node).openapi()
