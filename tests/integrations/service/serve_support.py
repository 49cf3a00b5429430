"""A real ``corral serve`` process, on a Unix socket and a loopback HTTP port with a token, for tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from corral import Policy
from corral.integrations.service import ServiceClient

TOKEN = "serve-t0ken-for-tests-0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeProcess:
    def __init__(self, tmp: Path, policy: Policy | None = None, *args: str) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.tmp = tmp
        self.sock_path = str(tmp / "svc.sock")
        self.url = f"http://127.0.0.1:{_free_port()}"
        token_file = tmp / "token"
        token_file.write_text(TOKEN)
        cmd = [str(Path(sys.executable).with_name("corral")), "serve", "--socket", self.sock_path]
        cmd += ["--http", self.url.removeprefix("http://"), "--token-file", str(token_file), *args]
        if policy is not None:
            (tmp / "policy.json").write_text(policy.model_dump_json())
            cmd += ["--policy", str(tmp / "policy.json")]
        self.proc = subprocess.Popen(cmd, env={**os.environ, "CORRAL_HOME": str(tmp)})
        deadline = time.monotonic() + 60
        while True:
            try:
                probe = ServiceClient(socket_path=self.sock_path, timeout_s=2)
                try:
                    probe.health()
                finally:
                    probe.close()
                return
            except Exception:
                assert self.proc.poll() is None and time.monotonic() < deadline, "corral serve did not start"
                time.sleep(0.1)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> int:
        """SIGTERM, as systemd or the kubelet stop it; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
