"""A real OpenSSH server in a target namespace, for ``ssh -R``/``-D`` tunnel scenarios.

Throwaway host and client keys live in the run directory. The login user is
``nobody`` with every session forced to ``/bin/false``: a tunnel can be opened
if the sandbox fails, but no shell. ``LogLevel VERBOSE`` writes one
"Connection from" line per TCP connection, which is what "the target saw it" means.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from corral.errors import SandboxUnavailableError
from corral.redteam._targets import Recorder

SSH_USER = "nobody"
_CONN = re.compile(r"Connection from (\S+) port (\d+)")


class Sshd:
    """sshd -D in netns ``netns`` listening on ``address:22``; ``poll`` copies its log into a Recorder."""

    def __init__(
        self, run_dir: Path, netns: str, address: str, recorder: Recorder, target: str = "ssh"
    ) -> None:
        sshd, keygen = shutil.which("sshd") or "/usr/sbin/sshd", shutil.which("ssh-keygen")
        if not os.path.exists(sshd) or keygen is None:
            raise SandboxUnavailableError(
                "the ssh targets need OpenSSH (apt install openssh-server openssh-client)"
            )
        self.dir = run_dir / "sshd"
        self.dir.mkdir(mode=0o700)
        self.client_key = self.dir / "client_ed25519"
        host_key = self.dir / "host_ed25519"
        for key in (host_key, self.client_key):
            subprocess.run(
                [keygen, "-q", "-t", "ed25519", "-N", "", "-C", "corral-redteam", "-f", str(key)], check=True
            )
        auth = self.dir / "authorized_keys"
        auth.write_text(Path(f"{self.client_key}.pub").read_text())
        self.log = self.dir / "sshd.log"
        cfg = self.dir / "sshd_config"
        cfg.write_text(
            f"ListenAddress {address}\nPort 22\nHostKey {host_key}\nAuthorizedKeysFile {auth}\n"
            "PidFile none\nStrictModes no\nUsePAM no\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            f"AllowUsers {SSH_USER}\nPermitRootLogin no\nPermitTTY no\nForceCommand /bin/false\n"
            "AllowTcpForwarding yes\nGatewayPorts no\nLogLevel VERBOSE\n"
        )
        os.makedirs("/run/sshd", exist_ok=True)  # privilege-separation directory sshd insists on
        self._recorder, self._target, self._lines = recorder, target, 0
        self._proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, sshd, "-D", "-f", str(cfg), "-E", str(self.log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._wait_listening(netns, address)

    def _wait_listening(self, netns: str, address: str) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                raise SandboxUnavailableError(f"sshd exited: {err.strip() or self.log.read_text()}")
            out = subprocess.run(
                ["ip", "netns", "exec", netns, "ss", "-Htln"], capture_output=True, text=True
            )
            if f"{address}:22 " in out.stdout:
                return
            time.sleep(0.05)
        self.close()
        raise SandboxUnavailableError("sshd did not start listening within 10 s")

    def poll(self) -> None:
        """Record every new connection sshd logged since the last poll."""
        if not self.log.exists():
            return
        lines = self.log.read_text(errors="replace").splitlines()
        for line in lines[self._lines :]:
            m = _CONN.search(line)
            if m:
                self._recorder.add(self._target, (m.group(1), int(m.group(2))), line.strip())
            elif "Accepted" in line or "forward" in line.lower():
                self._recorder.add(self._target, "", line.strip())
        self._lines = len(lines)

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stderr is not None:
            self._proc.stderr.close()
