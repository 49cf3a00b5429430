"""After kill -9 of a process holding allowlist sandboxes, the next start reaps its namespaces, veths,
host nftables table and state directory, even when it claims another address block."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from corral.egress import Egress
from corral.egress._netns import LOCK_DIR, reap_dead
from corral.egress._nft import host_table
from corral.policy import Policy

POLICY = Policy.from_yaml("network:\n  mode: allowlist\n  allow: [pkg.test:80]\n")

CHILD = """
import json, time
from corral.egress import Egress
from corral.policy import Policy
pol = Policy.from_yaml("network:\\n  mode: allowlist\\n  allow: [pkg.test:80]\\n")
eg = Egress.start(pol, lambda e: None, pool_size=2, base="10.232.0.0/16")
a = eg.attach("sb-doomed")
print(json.dumps({"index": eg.block.index, "netns": a.netns_path, "state": eg.state_dir,
                  "veth": eg.block.if_prefix}), flush=True)
time.sleep(120)
"""


def _links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout


def _tables() -> str:
    return subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout


def test_kill_9_leftovers_are_reaped_by_the_next_start_in_any_block(private_host: None) -> None:
    first = Egress.start(POLICY, lambda e: None, pool_size=0)  # holds a block, so the child gets another
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        info = json.loads(child.stdout.readline())
        assert info["index"] != first.block.index
        first.close()  # its block is free again: the next start claims that one, not the child's
        child.kill()  # SIGKILL: no cleanup of any kind
        child.wait()
        table = host_table(info["index"])
        netns = [n for n in os.listdir("/run/netns") if n.startswith(f"corral-{info['index']:02d}-")]
        assert len(netns) >= 2 and os.path.isdir(info["state"])  # what a crash leaves
        assert info["veth"] in _links() and table in _tables()
        with Egress.start(POLICY, lambda e: None, pool_size=0) as eg:
            assert eg.block.index != info["index"]
            assert not [n for n in os.listdir("/run/netns") if n.startswith(f"corral-{info['index']:02d}-")]
            assert not os.path.exists(info["state"]) and not os.path.exists(info["netns"])
            assert info["veth"] not in _links() and table not in _tables()
            assert reap_dead() == []  # nothing dead is left; live owners are never touched
            assert os.path.exists(eg.state_dir)
    finally:
        child.kill()
        child.wait()
        first.close()
    assert os.path.isdir(LOCK_DIR)
