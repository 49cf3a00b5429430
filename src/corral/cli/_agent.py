"""``corral run`` as a client of this node's agent (``corral serve``), when one is running.

A one-shot call then costs a request, not a sandbox build and a tracer start: the agent's sandboxes
are watched by its own, already running, exec tracer and detection, and its event store records the
call. Only the standard library is imported here, so that the client starts in tens of milliseconds.

The agent runs the call under its ``default`` policy, the one the node was started with. When no
agent answers on the socket, the caller builds a local sandbox instead; an agent that answers with an
error is reported (the command may have run there) and nothing is retried locally.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import http.client

DEFAULT_SOCKET = "/run/corral/corral.sock"  # as corral.integrations.service (FastAPI is slow to import)
SOCKET_ENV = "CORRAL_SOCKET"
LEASE_S = 60.0  # reaped this long after a client died mid-call (never while the call runs)
LOCAL_HINT = "(corral run --local -- CMD runs without the agent)"
EXIT_BLOCKED = 126  # policy stopped the call before it ran (as a shell reports "cannot execute")


class AgentUnreachable(Exception):
    """No agent listens on the socket: build a sandbox here instead."""


class AgentError(Exception):
    """The agent answered with an error; the message names the socket."""


def agent_socket() -> str:
    return os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET


def _unix_connection(path: str, timeout: float | None) -> http.client.HTTPConnection:
    """An HTTP connection over the agent's Unix socket. http.client (with email and ssl, about
    20 ms) is imported here: ``corral run --local`` and the command line's other uses of this
    module never connect."""
    import http.client

    class UnixConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(self.timeout)
                sock.connect(path)
            except BaseException:
                sock.close()
                raise
            self.sock = sock

    return UnixConnection("corral", timeout=timeout)


class _Agent:
    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: http.client.HTTPConnection | None = None

    def request(self, method: str, url: str, body: dict[str, Any] | None, timeout: float | None) -> Any:
        import http.client  # loaded by _unix_connection already: a lookup

        if self._conn is None:
            self._conn = _unix_connection(self.path, timeout=5.0)
            try:
                self._conn.connect()
            except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as exc:
                raise AgentUnreachable(f"{self.path}: {exc.strerror}") from None
            except OSError as exc:  # a socket we may not use, a timeout: name it, do not guess
                raise AgentError(f"node agent at {self.path}: {exc.strerror or exc}") from None
        self._conn.sock.settimeout(timeout)
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        try:
            self._conn.request(method, url, body=payload, headers=headers)
            resp = self._conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise AgentError(f"node agent at {self.path}: {method} {url}: {exc!r}") from None
        if resp.status >= 400:
            raise AgentError(f"node agent at {self.path}: {_error_text(resp.status, data)}")
        return json.loads(data) if data else None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def _error_text(status: int, data: bytes) -> str:
    try:
        body = json.loads(data)
        return f"{body['error']}: {body['detail']}"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {status}: {data[:300].decode(errors='replace')}"


def run_via_agent(
    command: str | list[str], ctx: dict[str, Any], timeout: float | None, path: str | None = None
) -> dict[str, Any]:
    """The call's result as ``corral run --json`` prints it, run in a sandbox of the node agent."""
    path = path or agent_socket()
    agent = _Agent(path)
    try:
        info = agent.request(
            "POST", "/v1/sandboxes", {"lease_s": LEASE_S, "owner": f"corral run (pid {os.getpid()})"}, 30
        )
        sid = info["id"]
        call = {"command": command, "ctx": ctx or None, "timeout": timeout}
        try:
            result: dict[str, Any] = agent.request(
                "POST", f"/v1/sandboxes/{sid}/run", call, None if timeout is None else timeout + 60
            )
        except BaseException:  # Ctrl-C too: destroying the sandbox stops the call in it
            agent.close()  # the connection may be mid-response: a fresh one for the delete
            agent = _Agent(path)
            _destroy(agent, sid)
            raise
        _destroy(agent, sid)
    finally:
        agent.close()
    return flat(result)


def _destroy(agent: _Agent, sid: str) -> None:
    with contextlib.suppress(AgentError, AgentUnreachable):  # gone already; else its lease reaps it
        agent.request("DELETE", f"/v1/sandboxes/{sid}", None, 30)


def flat(result: dict[str, Any]) -> dict[str, Any]:
    """A ToolResult's wire JSON in ``to_json_dict`` form: trace fields at the top, no raw bytes."""
    out = {k: v for k, v in result.items() if k not in ("ctx", "stdout_bytes", "stderr_bytes")}
    out.update(result.get("ctx") or {})
    return out


def report(result: dict[str, Any], as_json: bool) -> int:
    """Print a call's result as ``corral run`` does and return the exit code for it."""
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        sys.stdout.write(result.get("stdout") or "")
        sys.stderr.write(result.get("stderr") or "")
        if result.get("blocked"):
            sys.stderr.write(f"corral: blocked by policy: {result.get('block_reason')}\n")
        elif result.get("stop_reason"):
            sys.stderr.write(f"corral: call stopped: {result.get('stop_reason')}\n")
    sys.stdout.flush()
    if result.get("blocked"):
        return EXIT_BLOCKED
    code = result.get("exit_code")
    return code if isinstance(code, int) else 1


def run_oneshot(args: list[str]) -> int | None:
    """``corral run [--json] -- CMD...`` through the agent, before the CLI framework is loaded.

    None when ``args`` asks for more than this path handles (any other option) or no agent answers:
    the full command then runs, locally where no agent is.
    """
    as_json = False
    while args and args[0] == "--json":
        as_json, args = True, args[1:]
    if len(args) < 2 or args[0] != "--":
        return None
    command = args[1:]
    try:
        result = run_via_agent(command if len(command) > 1 else command[0], {}, None)
    except AgentUnreachable:
        return None
    except AgentError as exc:
        sys.stderr.write(f"corral: {exc}\n  {LOCAL_HINT}\n")
        return 2
    except KeyboardInterrupt:  # the agent's sandbox, and the call in it, were destroyed
        return 130
    return report(result, as_json)
