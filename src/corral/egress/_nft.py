"""nftables: the per-sandbox ruleset, and running rulesets through libnftables in the current netns."""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

from corral.errors import EgressError

TABLE = "corral"


def sandbox_ruleset(gateway: str, proxy_port: int, dns_port: int, log_group: int) -> str:
    """Default drop both ways; out only to the proxy and DNS on the gateway; every other attempt logged.

    ``inet`` covers IPv4 and IPv6. Denied packets are logged to NFLOG and rejected (not dropped), so
    a tool fails at once instead of hanging, and a TCP connect sends one SYN: one attempt, one log.
    TCP gets a reset (ICMP errors are rate limited per destination, and a limited one means a
    retransmitted SYN a second later).
    """
    return f"""
table inet {TABLE} {{
  chain output {{
    type filter hook output priority 0; policy drop;
    oif "lo" accept
    ip daddr {gateway} tcp dport {proxy_port} accept
    ip daddr {gateway} udp dport {dns_port} accept
    log prefix "corral-deny " group {log_group}
    meta l4proto tcp reject with tcp reset
    reject with icmpx admin-prohibited
  }}
  chain input {{
    type filter hook input priority 0; policy drop;
    iif "lo" accept
    ct state established,related accept
  }}
}}
"""


def host_table(block_index: int) -> str:
    return f"corral_host_{block_index:02d}"


def host_ruleset(block_index: int, if_prefix: str, gateway: str, proxy_port: int, dns_port: int) -> str:
    """The host side of the same rule, in the host netns, for this egress's veths only: a sandbox whose
    own rules were lost still reaches nothing on the host but the proxy and DNS, and is never forwarded."""
    t = host_table(block_index)
    return f"""
add table inet {t}
delete table inet {t}
table inet {t} {{
  chain input {{
    type filter hook input priority -10; policy accept;
    iifname != "{if_prefix}*" accept
    ct state established,related accept
    ip daddr {gateway} tcp dport {proxy_port} accept
    ip daddr {gateway} udp dport {dns_port} accept
    drop
  }}
  chain forward {{
    type filter hook forward priority -10; policy accept;
    iifname "{if_prefix}*" drop
  }}
}}
"""


class _Lib:
    _lock = threading.Lock()
    _lib: ctypes.CDLL | None = None

    @classmethod
    def get(cls) -> ctypes.CDLL:
        with cls._lock:
            if cls._lib is None:
                name = ctypes.util.find_library("nftables") or "libnftables.so.1"
                try:
                    lib = ctypes.CDLL(name)
                except OSError as exc:
                    raise EgressError(f"libnftables is not available ({exc}); install nftables") from exc
                lib.nft_ctx_new.restype = ctypes.c_void_p
                lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
                lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
                lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
                lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
                lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
                lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
                lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
                lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
                lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
                lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
                cls._lib = lib
            return cls._lib


def run_nft(script: str) -> str:
    """Run an nft script atomically in the calling thread's netns; returns nft's output."""
    lib = _Lib.get()
    ctx = lib.nft_ctx_new(0)
    if not ctx:
        raise EgressError("nft_ctx_new failed")
    try:
        lib.nft_ctx_buffer_output(ctx)
        lib.nft_ctx_buffer_error(ctx)
        rc = lib.nft_run_cmd_from_buffer(ctx, script.encode())
        if rc != 0:
            err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace").strip()
            raise EgressError(f"nftables rejected the ruleset: {err}")
        return (lib.nft_ctx_get_output_buffer(ctx) or b"").decode(errors="replace")
    finally:
        lib.nft_ctx_free(ctx)
