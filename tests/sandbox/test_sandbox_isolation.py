"""Host integrity: what a tool call must not be able to do, checked against the real kernel."""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from pathlib import Path

import psutil

from corral import Policy, Sandbox


def test_writes_outside_workspace_fail_and_host_is_untouched(sb: Sandbox) -> None:
    marker = f"corral-{uuid.uuid4().hex}"
    targets = ["/usr/" + marker, "/etc/" + marker, "/" + marker, "/var/" + marker, "/root/" + marker]
    r = sb.run("for t in " + " ".join(targets) + "; do echo x > $t && echo WROTE $t; done; true")
    assert "WROTE" not in r.stdout
    for t in targets:
        assert not os.path.exists(t)
    # /tmp inside is private: writing there does not reach the host's /tmp
    r = sb.run(f"echo x > /tmp/{marker} && echo ok")
    assert r.stdout == "ok\n"
    assert not os.path.exists(f"/tmp/{marker}")


def test_host_secrets_are_unreadable(sb: Sandbox) -> None:
    r = sb.run("cat /etc/shadow; ls /root; cat /root/.bashrc; ls /etc/ssh; echo done")
    assert r.stdout.strip().splitlines()[-1] == "done"
    assert "root:" not in r.stdout
    assert r.stdout.strip() == "done"


def test_host_processes_are_invisible_and_unsignallable(sb: Sandbox) -> None:
    victim = subprocess.Popen(["sleep", "300"])
    try:
        r = sb.run(
            f"ls /proc/{victim.pid} >/dev/null 2>&1 && echo SEEN; "
            f"kill -9 {victim.pid} && echo KILLED; ps -e -o pid="
        )
        assert "SEEN" not in r.stdout and "KILLED" not in r.stdout
        pids = [int(x) for x in r.stdout.split()]
        assert max(pids) < 20  # only the call's own pid namespace
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def _host_uid_of(sb: Sandbox, tag: str) -> int:
    """Run ``sleep TAG`` in the sandbox and read its uid from the host side."""
    t = threading.Thread(target=sb.run, args=(f"sleep {tag}",))
    t.start()
    try:
        for _ in range(400):
            for p in psutil.process_iter(["cmdline", "uids"]):
                if p.info["cmdline"] == ["sleep", tag]:
                    uids = p.info["uids"]
                    # real, effective and saved: no way back to root, not even a saved uid
                    assert uids.real == uids.effective == uids.saved, uids
                    return int(uids.real)
            time.sleep(0.01)
        raise AssertionError("sandboxed process not found")
    finally:
        t.join()


def test_runs_as_unprivileged_host_uid_without_capabilities(sb: Sandbox, policy: Policy) -> None:
    r = sb.run("grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status; id -u")
    lines = r.stdout.split("\n")
    assert all(line.split()[1] == "0000000000000000" for line in lines[:3])
    assert lines[3] == "1000"
    uid = _host_uid_of(sb, "1.2345")
    start = policy.identity.uid_range_start
    assert start <= uid < start + policy.identity.uid_range_size


def test_each_live_sandbox_has_its_own_host_uid(policy: Policy) -> None:
    with Sandbox(policy) as a, Sandbox(policy) as b:
        assert _host_uid_of(a, "1.2346") != _host_uid_of(b, "1.2347")


def test_seccomp_denies_namespaces_mount_ptrace_and_keyrings(sb: Sandbox) -> None:
    script = r"""
import ctypes, os, errno
libc = ctypes.CDLL(None, use_errno=True)
def tryit(name, fn):
    rc = fn()
    print(name, rc, ctypes.get_errno())
tryit("unshare", lambda: libc.unshare(0x10000000))
tryit("mount", lambda: libc.mount(b"none", b"/tmp", b"tmpfs", 0, None))
tryit("ptrace", lambda: libc.ptrace(16, 1, 0, 0))
tryit("keyctl", lambda: libc.syscall(250, 0, 0, 0, 0))
tryit("bpf", lambda: libc.syscall(321, 0, 0, 0))
"""
    r = sb.run(["python3", "-c", script])
    results = {
        line.split()[0]: (int(line.split()[1]), int(line.split()[2])) for line in r.stdout.splitlines()
    }
    assert set(results) == {"unshare", "mount", "ptrace", "keyctl", "bpf"}, r.stderr
    for name, (rc, err) in results.items():
        assert rc == -1 and err == 1, f"{name} was not denied with EPERM: rc={rc} errno={err}"
    r = sb.run("unshare -r true && echo ESCAPED; true")
    assert "ESCAPED" not in r.stdout


def test_proc_sys_and_kernel_knobs_are_read_only(sb: Sandbox) -> None:
    before = Path("/proc/sys/kernel/domainname").read_text()
    r = sb.run("echo pwned > /proc/sys/kernel/domainname && echo WROTE; true")
    assert "WROTE" not in r.stdout
    assert Path("/proc/sys/kernel/domainname").read_text() == before


def test_environment_is_cleared(sb: Sandbox) -> None:
    os.environ["CORRAL_TEST_SECRET"] = "s3cr3t"
    try:
        r = sb.run("env")
    finally:
        del os.environ["CORRAL_TEST_SECRET"]
    assert "s3cr3t" not in r.stdout
    env = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    assert env["HOME"] == "/workspace" and env["USER"] == "agent"


def test_no_network_and_no_host_sockets_by_default(sb: Sandbox) -> None:
    r = sb.run(
        "ls /sys/class/net 2>/dev/null; cat /proc/net/dev | tail -n +3 | cut -d: -f1; ls /run /var/run 2>&1"
    )
    ifaces = {
        x.strip() for x in r.stdout.splitlines() if x.strip() and "No such" not in x and "cannot" not in x
    }
    assert ifaces <= {"lo"}
    r = sb.run("ls -la /var/run/docker.sock /run/containerd 2>&1; echo")
    assert "srw" not in r.stdout


def test_nothing_survives_the_call(sb: Sandbox) -> None:
    tag = str(1000 + uuid.uuid4().int % 1000)
    r = sb.run(
        f"setsid nohup sleep {tag} >/dev/null 2>&1 & "
        f"(sleep {tag} &) ; "
        f"sh -c 'sleep {tag} & disown' ; "
        "echo launched"
    )
    assert r.stdout.strip() == "launched"
    left = [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", tag]]
    assert left == []


def test_workspace_persists_across_calls_and_is_gone_after_destroy(policy: Policy) -> None:
    with Sandbox(policy) as sb:
        sb.run("mkdir -p src && echo 42 > src/answer")
        r = sb.run("cat src/answer")
        assert r.stdout == "42\n"
        assert sb.read_file("src/answer") == b"42\n"
        # The workspace exists only in the sandbox's own mount namespace, never in the host's.
        with open("/proc/self/mountinfo") as f:
            assert sb.id not in f.read()
    with Sandbox(policy) as sb2:
        assert sb2.run("ls -A").stdout == ""


def test_a_call_holds_only_its_stdio_while_other_calls_and_spares_are_in_flight(policy: Policy) -> None:
    # The zygote holds a reply socket for every call in flight and every spare waiting on the node;
    # none of them, nor the zygote's own descriptors, may reach a call (nor is any closed one by one).
    others = [Sandbox(policy, store=None) for _ in range(3)]
    try:
        for o in others:
            o.run("true")  # each now holds a spare, waiting in the zygote's table
        with Sandbox(policy, store=None) as sb:
            r = sb.run("sleep 5 & ls /proc/self/fd; kill %1")
            bg = sb.run("ls /proc/self/fd")
        # 0-2, and the directory ls reads; the background sleep changes nothing
        assert r.stdout.split() == ["0", "1", "2", "3"] and bg.stdout.split() == ["0", "1", "2", "3"]
    finally:
        for o in others:
            o.close()
