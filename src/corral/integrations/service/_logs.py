"""``POST /v1/logs?format=F[&source=S]``: log lines pushed by forwarders that cannot write files.

The body is text, one record per line, in a registered line format (``corral
correlate --list-formats``). Lines are appended, whole requests at a time, to a
spool file per source and format under the node's state (beside its event
store: ``pushed-logs/<source>.<format>.log``), which ``corral watch --log``
follows like any log (the spool rotates at ``MAX_SPOOL_BYTES``, as logrotate
would). A ``sink`` (a ``Watcher``'s ``push``) may receive them in-process too.
Over TCP the route needs the service's bearer token, like every route but
health.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated

import anyio
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from pydantic import BaseModel

from corral.correlate import log_formats, make_reader
from corral.errors import InputError
from corral.integrations.service._node import NodeService

MAX_BODY_BYTES = 16 << 20
MAX_LINE_BYTES = 1 << 20
MAX_SPOOL_BYTES = 256 << 20
_SOURCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

LogSink = Callable[[Sequence[str], str, str], None]  # (lines, format, source)


class LogsAccepted(BaseModel):
    accepted: int  # lines appended to the spool
    rejected: int  # lines refused: longer than MAX_LINE_BYTES or not UTF-8
    file: str  # the spool file ``corral watch --log`` follows


class LogSpool:
    """Append-only spool files, one per (source, format); thread-safe, whole requests at a time."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()

    def path(self, source: str, fmt: str) -> Path:
        return self.directory / f"{source}.{fmt}.log"

    def append(self, source: str, fmt: str, lines: Sequence[str]) -> Path:
        path = self.path(source, fmt)
        data = "".join(ln + "\n" for ln in lines).encode()
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            try:
                if path.stat().st_size + len(data) > MAX_SPOOL_BYTES:
                    path.rename(path.with_name(path.name + ".1"))  # followers finish the old file first
            except FileNotFoundError:
                pass
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
        return path


def spool_dir(node: NodeService) -> Path:
    if node.store is not None:
        return node.store.path.parent / "pushed-logs"
    home = os.environ.get("CORRAL_HOME") or "~/.corral"
    return Path(home).expanduser() / "pushed-logs"


def add_log_routes(
    app: FastAPI,
    node: NodeService,
    auth: Callable[..., None],
    *,
    spool: LogSpool | None = None,
    sink: LogSink | None = None,
) -> LogSpool:
    """Add ``POST /v1/logs`` to the service's app; returns the spool it writes."""
    sp = spool or LogSpool(spool_dir(node))
    known = ", ".join(sorted(log_formats()))

    @app.post(
        "/v1/logs",
        response_model=LogsAccepted,
        status_code=202,
        dependencies=[Depends(auth)],
        responses={400: {"description": "unknown or whole-document format, bad source"}, 413: {}},
    )
    async def push_logs(
        request: Request,
        format: Annotated[str, Query(description="the lines' format (corral correlate --list-formats)")],
        source: Annotated[str, Query(description="the forwarder's name, [A-Za-z0-9._-]")] = "default",
    ) -> LogsAccepted:
        if format not in log_formats():
            raise InputError(f"unknown log format {format!r} (known: {known})")
        if make_reader(format).parser(source) is None:
            raise InputError(f"log format {format!r} is a whole document, not lines: it cannot be pushed")
        if not _SOURCE.match(source):
            raise InputError(f"source must match {_SOURCE.pattern}, got {source[:80]!r}")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise HTTPException(413, detail=f"body over {MAX_BODY_BYTES} bytes: send smaller batches")
        accepted: list[str] = []
        rejected = 0
        for raw in bytes(body).split(b"\n"):
            raw = raw.rstrip(b"\r")
            if not raw.strip():
                continue
            if len(raw) > MAX_LINE_BYTES or b"\x00" in raw:
                rejected += 1
                continue
            try:
                accepted.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                rejected += 1
        path = sp.path(source, format)
        if accepted:
            path = await anyio.to_thread.run_sync(sp.append, source, format, accepted)
            if sink is not None:
                sink(accepted, format, source)
        return LogsAccepted(accepted=len(accepted), rejected=rejected, file=str(path))

    return sp
