"""The range: lab netns, target namespaces, fake servers, sshd, a host victim and planted secrets.

``Range.start`` builds everything; ``values`` are the placeholders scenarios
use; ``close`` tears it all down (and returns the runner to its own netns).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

from corral.redteam._netlab import Lab
from corral.redteam._sshd import SSH_USER, Sshd
from corral.redteam._targets import Recorder, Service, TargetServers

# Addresses live only inside namespaces the range creates (198.18.0.0/15: the benchmarking range).
SSH_IP, RELAY_IP, POOL_IP, UPLOAD_IP, DNS_IP = (
    "198.18.0.22",
    "198.18.0.44",
    "198.18.0.33",
    "198.18.0.80",
    "198.18.0.53",
)
METADATA_IPS = ("169.254.169.254", "100.100.100.200")
INTERNAL_IP = "10.213.7.10"
RELAY_PORT, POOL_PORT, UPLOAD_PORT, REDIS_PORT, ETCD_PORT, HOST_PORT = 4444, 3333, 8080, 6379, 2379, 7777
TARGETS = ("ssh", "relay", "pool", "upload", "dns", "metadata", "internal", "host")


class Range:
    """Everything a red-team run attacks. Create with ``start``; always ``close``."""

    def __init__(self, run_dir: Path, nonce: str) -> None:
        self.run_dir, self.nonce = run_dir, nonce
        self.recorder = Recorder()
        self.lab: Lab | None = None
        self.servers: TargetServers | None = None
        self.sshd: Sshd | None = None
        self.victim: subprocess.Popen[bytes] | None = None
        self.canary = f"CORRAL-CANARY-{uuid.uuid4().hex}"
        self.secret_path = run_dir / "secret.token"
        self.unix_path = f"/run/corral-rt-{nonce}.sock"
        self.secrets: list[str] = []

    @classmethod
    def start(cls, run_dir: Path, nonce: str) -> Range:
        r = cls(run_dir, nonce)
        try:
            r._start()
        except BaseException:
            r.close()
            raise
        return r

    def _start(self) -> None:
        self.lab = lab = Lab.enter(self.nonce[:6])
        out = lab.add_target("out", 0, [f"{a}/32" for a in (SSH_IP, RELAY_IP, POOL_IP, UPLOAD_IP, DNS_IP)])
        md = lab.add_target("md", 1, [f"{a}/32" for a in METADATA_IPS])
        internal = lab.add_target("int", 2, [f"{INTERNAL_IP}/32"])
        services = [
            Service("relay", out.path, "tcp", RELAY_IP, RELAY_PORT, "relay"),
            Service("relay", out.path, "tcp", RELAY_IP, 443, "relay"),
            Service("pool", out.path, "tcp", POOL_IP, POOL_PORT, "stratum"),
            Service("upload", out.path, "tcp", UPLOAD_IP, UPLOAD_PORT, "upload"),
            Service("upload", out.path, "tcp", UPLOAD_IP, 80, "upload"),
            Service("dns", out.path, "udp", DNS_IP, 53),
            *(Service("metadata", md.path, "tcp", ip, 80, "metadata") for ip in METADATA_IPS),
            Service("internal", internal.path, "tcp", INTERNAL_IP, REDIS_PORT, "redis"),
            Service("internal", internal.path, "tcp", INTERNAL_IP, ETCD_PORT, "etcd"),
            # host canaries: services of the runner's own netns that a sandbox must never reach
            Service("host", None, "tcp", "0.0.0.0", HOST_PORT, "banner"),
            Service("host", None, "unix", self.unix_path),
            Service("host", None, "unix", f"@corral-rt-{self.nonce}"),
        ]
        self.servers = TargetServers(services, self.recorder)
        self.sshd = Sshd(self.run_dir, out.name, SSH_IP, self.recorder)
        self.secret_path.write_text(self.canary + "\n")
        self.secret_path.chmod(0o600)
        os.environ["CORRAL_RT_CANARY"] = self.canary  # visible in /proc/<runner>/environ on the host
        self.secrets = [self.canary, *_host_secret_lines()]
        self.ensure_victim()

    def ensure_victim(self) -> int:
        """A host process (root, outside every sandbox) that scenarios try to signal or trace."""
        if self.victim is None or self.victim.poll() is not None:
            self.victim = subprocess.Popen(
                ["sleep", "3600"], executable=shutil.which("sleep"), start_new_session=True
            )
        return self.victim.pid

    def poll(self) -> None:
        if self.sshd is not None:
            self.sshd.poll()

    def values(self) -> dict[str, str]:
        v = {
            "nonce": self.nonce,
            "ssh.ip": SSH_IP,
            "ssh.port": "22",
            "ssh.user": SSH_USER,
            "relay.ip": RELAY_IP,
            "relay.port": str(RELAY_PORT),
            "pool.ip": POOL_IP,
            "pool.port": str(POOL_PORT),
            "upload.ip": UPLOAD_IP,
            "upload.port": str(UPLOAD_PORT),
            "dns.ip": DNS_IP,
            "metadata.ip": METADATA_IPS[0],
            "metadata.alibaba_ip": METADATA_IPS[1],
            "internal.ip": INTERNAL_IP,
            "redis.port": str(REDIS_PORT),
            "etcd.port": str(ETCD_PORT),
            "host.port": str(HOST_PORT),
            "host.unix": self.unix_path,
            "host.abstract": f"corral-rt-{self.nonce}",
            "secret.path": str(self.secret_path),
        }
        if self.victim is not None:
            v["victim.pid"] = str(self.victim.pid)
        return v

    def artifact(self, name: str) -> Path:
        """Runtime files scenarios may copy into the workspace (``files: {path: "@name"}``)."""
        if name == "ssh_client_key" and self.sshd is not None:
            return self.sshd.client_key
        raise KeyError(name)

    def close(self) -> None:
        os.environ.pop("CORRAL_RT_CANARY", None)
        if self.victim is not None and self.victim.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.victim.pid, signal.SIGKILL)
            self.victim.wait()
        if self.sshd is not None:
            self.sshd.close()
        if self.servers is not None:
            self.servers.stop()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.unix_path)
        if self.lab is not None:
            self.lab.close()


def _host_secret_lines() -> list[str]:
    """Distinctive lines of real host secrets (password hashes, SSH host keys) to look for in outputs."""
    found: list[str] = []
    with contextlib.suppress(OSError):
        for line in Path("/etc/shadow").read_text().splitlines():
            parts = line.split(":")
            if len(parts) > 1 and len(parts[1]) > 20:
                found.append(parts[1])
    for key in sorted(Path("/etc/ssh").glob("ssh_host_*_key")):
        with contextlib.suppress(OSError):
            found += [ln for ln in key.read_text().splitlines() if len(ln) >= 40 and "PRIVATE KEY" not in ln][
                :2
            ]
    return found
