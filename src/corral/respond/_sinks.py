"""Alert sinks: webhook (JSON POST, retried in its own thread), syslog, stdout.

A sink's ``send`` must never block a tool call: the notifier calls sinks from its
own thread, and the webhook sink queues and retries on a thread of its own so a
slow receiver delays nobody else.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from corral.errors import RegistryError
from corral.events import Level
from corral.policy import SinkConfig, StdoutSinkConfig, SyslogSinkConfig, WebhookSinkConfig
from corral.respond._group import Notification

_FACILITY = {
    "user": 1,
    "auth": 4,
    "authpriv": 10,
    "daemon": 3,
    "local0": 16,
    "local1": 17,
    "local2": 18,
    "local3": 19,
}
# Sigma level -> syslog severity (RFC 5424): critical=2, high=3 (err), medium=4 (warning), low=5, info=6.
_SEVERITY = {"critical": 2, "high": 3, "medium": 4, "low": 5, "informational": 6}


class AlertSink(Protocol):
    min_level: Level

    def send(self, n: Notification) -> None: ...

    def close(self) -> None: ...


def notification_json(n: Notification) -> dict[str, object]:
    d = n.model_dump(mode="json")
    d["title"] = n.title
    return d


class StdoutSink:
    def __init__(self, cfg: StdoutSinkConfig) -> None:
        self.min_level = Level(cfg.min_level)
        self._stream = cfg.stream

    def send(self, n: Notification) -> None:
        stream = sys.stdout if self._stream == "stdout" else sys.stderr
        stream.write(json.dumps(notification_json(n), sort_keys=True) + "\n")
        stream.flush()

    def close(self) -> None:
        pass


class SyslogSink:
    """RFC 5424 messages over a Unix datagram socket or UDP; a lost datagram is not retried."""

    def __init__(self, cfg: SyslogSinkConfig) -> None:
        self.min_level = Level(cfg.min_level)
        self._facility = _FACILITY[cfg.facility]
        self._host = socket.gethostname()
        if cfg.address.startswith("/"):
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._addr: str | tuple[str, int] = cfg.address
        else:
            host, _, port = cfg.address.rpartition(":")
            host = host.strip("[]")
            fam = socket.AF_INET6 if ":" in host else socket.AF_INET
            self._sock = socket.socket(fam, socket.SOCK_DGRAM)
            self._addr = (host, int(port))

    def send(self, n: Notification) -> None:
        pri = self._facility * 8 + _SEVERITY[n.level.value]
        ts = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        body = json.dumps(notification_json(n), sort_keys=True, separators=(",", ":"))
        msg = f"<{pri}>1 {ts} {self._host} corral {os.getpid()} alert - {n.title} {body}"
        with contextlib.suppress(OSError):  # syslog is best effort; the store holds every alert
            self._sock.sendto(msg.encode("utf-8")[:65000], self._addr)

    def close(self) -> None:
        self._sock.close()


class WebhookSink:
    """POST JSON to a URL, retried with backoff on errors and 5xx; bounded queue, oldest dropped."""

    def __init__(self, cfg: WebhookSinkConfig) -> None:
        self.min_level = Level(cfg.min_level)
        self.cfg = cfg
        self._headers = {"Content-Type": "application/json", "User-Agent": "corral-alerts"}
        for name, env in cfg.headers_env.items():
            value = os.environ.get(env)
            if value is None:
                raise RegistryError(f"webhook header {name}: environment variable {env} is not set")
            self._headers[name] = value
        self._q: queue.Queue[Notification | None] = queue.Queue(maxsize=cfg.queue_max)
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._loop, name="corral-webhook", daemon=True)
        self._thread.start()

    def send(self, n: Notification) -> None:
        while True:
            try:
                self._q.put_nowait(n)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._q.get_nowait()
                    self._q.task_done()
                    self.dropped += 1

    def _post(self, body: bytes) -> bool:
        req = urllib.request.Request(self.cfg.url, data=body, headers=self._headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.cfg.timeout_s) as resp:
                return 200 <= int(resp.status) < 300
        except urllib.error.HTTPError as exc:
            return 200 <= exc.code < 300
        except (OSError, ValueError):
            return False

    def _loop(self) -> None:
        while True:
            n = self._q.get()
            try:
                if n is None:
                    return
                self._deliver(n)
            finally:
                self._q.task_done()

    def _deliver(self, n: Notification) -> None:
        body = json.dumps(notification_json(n), sort_keys=True).encode()
        for attempt in range(self.cfg.retries + 1):
            if self._post(body):
                self.sent += 1
                return
            if attempt < self.cfg.retries:
                time.sleep(self.cfg.backoff_s * (2**attempt))
        self.failed += 1

    def drain(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued notification was delivered or given up on (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._q.unfinished_tasks == 0:
                return True
            time.sleep(0.01)
        return False

    def close(self) -> None:
        with contextlib.suppress(queue.Full):
            self._q.put(None, timeout=1.0)
        self._thread.join(timeout=self.cfg.timeout_s * (self.cfg.retries + 1) + 1)


_SINKS: dict[str, Callable[..., AlertSink]] = {
    "webhook": WebhookSink,
    "syslog": SyslogSink,
    "stdout": StdoutSink,
}


def build_sink(cfg: SinkConfig) -> AlertSink:
    try:
        factory = _SINKS[cfg.type]
    except KeyError:
        raise RegistryError(f"alert sink type {cfg.type!r} is not registered") from None
    return factory(cfg)
