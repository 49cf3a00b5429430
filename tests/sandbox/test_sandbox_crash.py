"""After kill -9 of a trainer holding sandboxes, nothing of Corral survives it, and the next start
reaps what the kernel could not (cgroups, state directories, uid leases)."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from corral.sandbox import DEFAULT_STATE_ROOT

_CHILD = r"""
import json, sys, threading
from corral import Harness, Policy
policy = Policy.default().with_overrides(processes={"lifetime": "episode"}, detection={"enabled": False})
h = Harness(policy, store=None)
def make():  # from a thread that ends: the helpers must still die with the process, not this thread
    global sbs
    sbs = [h.sandbox() for _ in range(3)]
t = threading.Thread(target=make); t.start(); t.join()
for sb in sbs:
    sb.run("(sleep 600 &) ; true")
from corral.sandbox._cgroups import detect_layout
from corral.sandbox._zygote_client import shared_zygote
from corral.harness._services import shared_exec
ident = policy.identity
tracer = shared_exec((ident.uid_range_start, ident.uid_range_start + ident.uid_range_size)).collector()
zygote = shared_zygote(detect_layout()).pid
import os, re
progs = []  # the tracer's BPF programs, by the links this process holds to them
for fd in os.listdir("/proc/self/fdinfo"):
    try:
        text = open(f"/proc/self/fdinfo/{fd}").read()
    except OSError:
        continue
    if "link_type:" in text:
        progs += [int(m) for m in re.findall(r"prog_id:\s*(\d+)", text)]
print(json.dumps({"ids": [s.id for s in sbs], "uids": [s.uid for s in sbs], "zygote": zygote,
                  "tracer": tracer.tracer, "progs": progs}), flush=True)
sys.stdin.read()
"""


def _loaded(prog_ids: list[int]) -> list[int]:
    """Those of these BPF programs the kernel still holds."""
    lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
    lib.bpf_prog_get_fd_by_id.argtypes = [ctypes.c_uint32]
    alive = []
    for i in prog_ids:
        fd = lib.bpf_prog_get_fd_by_id(i)
        if fd >= 0:
            os.close(fd)
            alive.append(i)
    return alive


def test_kill_9_of_the_trainer_leaves_nothing_running_and_the_next_start_reaps_the_rest() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        time.sleep(1.0)  # the thread that created the sandboxes is long gone: everything still runs
        assert psutil.pid_exists(info["zygote"])
        assert info["tracer"] == "libbpf" and info["progs"] and _loaded(info["progs"]) == info["progs"]
        assert any(p.info["uids"].real in info["uids"] for p in psutil.process_iter(["uids"]))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = [p.pid for p in psutil.process_iter(["uids"]) if p.info["uids"].real in info["uids"]]
        helpers = [pid for pid in (info["zygote"],) if psutil.pid_exists(pid)]
        probes = _loaded(info["progs"])
        if not left and not helpers and not probes:
            break
        time.sleep(0.1)
    # sandboxes' processes, the zygote and the tracer's probes died with it
    assert left == [] and helpers == [] and probes == []
    # What only a new start can clean: the dead owner's state directories and cgroups.
    from corral.sandbox import preflight, reap_stale

    reaped = set(reap_stale(DEFAULT_STATE_ROOT, preflight()))
    assert set(info["ids"]) <= reaped
    for sid in info["ids"]:
        assert not (DEFAULT_STATE_ROOT / "sandboxes" / sid).exists()
        assert not Path(f"/sys/fs/cgroup/pids/corral/{sid}").exists()
