"""The demo's outside world, none of it outside: a private lab netns and target namespaces.

``DemoRange.start`` moves the calling (main) thread into a fresh network namespace with
no uplink, before any sandbox, proxy or thread exists (the red team's ``Lab``): every
thread and child started afterwards lives there, so nothing the demo runs can reach the
host's networks, whatever a policy says. Inside it, namespaces the demo creates own the
addresses the agent dials: an "outside host" with a real OpenSSH server, a stratum
mining pool, an upload server, the cloud metadata service and an internal redis/etcd.
Each records what reaches it; with Corral in front, nothing should.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from pathlib import Path

from corral.redteam import Lab, Recorder, Seen, Service, Sshd, TargetServers

# 198.18.0.0/15 is the benchmarking range: addresses that exist only in these namespaces.
OUTSIDE_HOST_IP = "198.18.0.22"  # the reverse tunnel's outside host (sshd on :22)
POOL_IP, POOL_PORT = "198.18.0.33", 3333  # the mining pool (stratum)
UPLOAD_IP, UPLOAD_PORT = "198.18.0.80", 8080  # where exfiltrated files would go
METADATA_IP = "169.254.169.254"
INTERNAL_IP = "10.213.7.10"  # an internal service (redis, etcd)
REDIS_PORT, ETCD_PORT = 6379, 2379
TARGET_NAMES = ("outside-ssh", "pool", "upload", "metadata", "internal")


class DemoRange:
    """The lab netns, the target namespaces and their servers. Create with ``start``; always ``close``."""

    def __init__(self, nonce: str) -> None:
        self.nonce = nonce
        self.recorder = Recorder()
        self.lab: Lab | None = None
        self.servers: TargetServers | None = None
        self.sshd: Sshd | None = None
        self._dir = Path(tempfile.mkdtemp(prefix=f"corral-demo-{nonce}-"))

    @classmethod
    def start(cls, nonce: str | None = None) -> DemoRange:
        """Needs root; call from the main thread before other threads start (they inherit the netns)."""
        r = cls(nonce or uuid.uuid4().hex[:10])
        try:
            r._start()
        except BaseException:
            r.close()
            raise
        return r

    def _start(self) -> None:
        self.lab = lab = Lab.enter("d" + self.nonce[:5])
        out = lab.add_target("out", 0, [f"{a}/32" for a in (OUTSIDE_HOST_IP, POOL_IP, UPLOAD_IP)])
        md = lab.add_target("md", 1, [f"{METADATA_IP}/32"])
        internal = lab.add_target("int", 2, [f"{INTERNAL_IP}/32"])
        self.servers = TargetServers(
            [
                Service("pool", out.path, "tcp", POOL_IP, POOL_PORT, "stratum"),
                Service("upload", out.path, "tcp", UPLOAD_IP, UPLOAD_PORT, "upload"),
                Service("upload", out.path, "tcp", UPLOAD_IP, 80, "upload"),
                Service("metadata", md.path, "tcp", METADATA_IP, 80, "metadata"),
                Service("internal", internal.path, "tcp", INTERNAL_IP, REDIS_PORT, "redis"),
                Service("internal", internal.path, "tcp", INTERNAL_IP, ETCD_PORT, "etcd"),
            ],
            self.recorder,
        )
        self.sshd = Sshd(self._dir, out.name, OUTSIDE_HOST_IP, self.recorder, target="outside-ssh")

    def seen(self) -> list[Seen]:
        """Everything any target saw so far (sshd's log read now)."""
        if self.sshd is not None:
            self.sshd.poll()
        return self.recorder.since(0)

    def close(self) -> None:
        """Stop the servers, delete the namespaces, and return the thread to its own netns."""
        with contextlib.suppress(Exception):
            if self.sshd is not None:
                self.sshd.close()
        with contextlib.suppress(Exception):
            if self.servers is not None:
                self.servers.stop()
        if self.lab is not None:
            self.lab.close()
            self.lab = None
        shutil.rmtree(self._dir, ignore_errors=True)
