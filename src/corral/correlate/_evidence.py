"""The evidence of an attribution in words: the method, where the record fell, and what decided."""

from __future__ import annotations

from typing import Any

from corral.correlate._attribute import METHODS

_METHOD = {
    "egress_5tuple": "exact outside 5-tuple recorded by Corral's egress proxy for {who}",
    "conntrack_nat": "conntrack NAT entry maps node address {ip} back to the sandbox of {who}",
    "sandbox_ip_time": "sandbox address {ip} belonged to {who}",
    "workload_time": "the log names the workload, the sandbox of {who}",
    "flow_continuation": "continues the flow of {via} (attributed by {via_method}) to {who}",
    "node_time_command": "node address {ip} ran {who}, whose command names the destination",
    "node_time": "node address {ip} ran {who} within the clock-skew window; node-only evidence, so every "
    "call running there is kept as a candidate",
}
assert _METHOD.keys() == METHODS.keys()
_TIMING = {
    "inside": "the record falls inside the call's interval",
    "skew": "the record reaches the call only through the clock-skew allowance",
    "after": "the record comes after the call ended: a process it left running",
}
_TIE = {
    "port_disagreement": "{k} other candidate(s) ruled out: their commands name only other ports for {dest}",
    "names_address": "only the chosen command names {dest}; {k} other candidate(s) do not",
    "names_port": "the chosen command names port {port}; {k} other candidate(s) do not",
    "inside_interval": "the record falls inside the chosen call's interval; {k} other candidate(s) only "
    "within the skew allowance or after they ended",
    "still_running": "the chosen call was still running (within the skew allowance); {k} other candidate(s) "
    "had ended",
}


def who(n: int, episodes: int) -> str:
    if n == 1:
        return "exactly one tool call"
    if episodes == 1:
        return f"{n} tool calls of one episode, which the evidence cannot tell apart"
    return f"{n} concurrent tool calls in {episodes} episodes (ambiguous)"


def endpoint(ip: str | None, port: int | None) -> str:
    if not ip:
        return "-"
    if port is None:
        return ip
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def evidence(
    row: dict[str, Any],
    local_ip: str | None,
    remote_ip: str | None,
    remote_port: int | None,
    n: int,
    episodes: int,
) -> str:
    """One sentence (or a few) saying why this record belongs to these calls."""
    method = row["method"]
    text = _METHOD[method].format(
        ip=local_ip, who=who(n, episodes), via=row.get("continues"), via_method=row.get("via_method")
    )
    parts = [text]
    timing = row.get("timing")
    tie = row.get("tie_break")
    if timing and method not in ("egress_5tuple", "node_time") and tie != "inside_interval":
        parts.append(_TIMING[timing])
    if tie:
        parts.append(
            _TIE[tie].format(
                k=row.get("ruled_out") or 0, dest=endpoint(remote_ip, remote_port), port=remote_port
            )
        )
    return "; ".join(parts)
