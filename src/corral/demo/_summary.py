"""The end of ``corral demo``: what happened, where everything is, and the commands to try next.

Everything fits 80 columns; commands are printed whole (soft-wrapped by the terminal,
never cut or broken by us), so they can be copied.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from corral.demo._main import DemoOutput


def _act_lines(name: str, a: dict[str, object]) -> list[str]:
    ran = "blocked before it ran" if a["call_blocked"] else "ran"
    end = {"quarantine": "quarantined, closed", "halt": "ended by the halt"}.get(
        str(a["ended_by"]), "quarantined" if a["quarantined"] else "not quarantined"
    )
    return [
        f"  {name:<7} {a['episode_id']} turn {a['turn']}, call {a['tool_call_id']}: {ran}; {end}",
        f"          {a['firewall_records']} firewall records, {a['attributed_live_to_this_call']} "
        "attributed live to this call",
    ]


def print_summary(d: DemoOutput, console: Console) -> None:
    st, f = d.stats, d.figures
    t = Table(title="Run summary", show_header=False, title_justify="left")
    t.add_row("episodes run", str(st.episodes))
    if st.skipped:
        t.add_row("episodes never started (halted)", str(st.skipped))
    t.add_row("agent tool calls", str(st.calls))
    t.add_row("calls blocked before they ran", str(st.blocked))
    if st.refused:
        t.add_row("calls refused after the halt", str(st.refused))
    t.add_row("episodes quarantined", str(st.quarantined))
    t.add_row("episodes ended early", str(st.truncated))
    rewards = [e.reward for e in d.episodes if not e.skipped]
    t.add_row("mean reward", f"{sum(rewards) / max(1, len(rewards)):.2f}")
    for cat, n in sorted(st.alerts_by_category.items(), key=lambda kv: -kv[1]):
        t.add_row(f"alerts: {cat}", str(n))
    console.print(t)

    console.print("[bold]The incident[/]")
    acts = f["acts"]
    assert isinstance(acts, dict)
    for name, a in acts.items():
        for line in _act_lines(name, a):
            console.print(line, highlight=False)
    sec = f["seconds_first_violation_to_halt"]
    if sec is None:
        console.print("  the circuit breaker did not trip", highlight=False)
    elif d.halt_obeyed:
        console.print(f"  [bold]{sec:.1f} s from the first violation to the halt[/]", highlight=False)
    else:
        after = f["after_trip"]
        assert isinstance(after, dict)
        console.print(
            f"  the breaker tripped {sec:.1f} s after the first violation (--no-halt)", highlight=False
        )
        console.print(
            f"  after the trip: {after['episodes']} episodes started, {after['calls']} calls ran "
            f"({after['blocked']} blocked, {after['alerts']} alerts)",
            highlight=False,
        )
    reached = f["targets_reached"]
    assert isinstance(reached, list)
    if reached:
        console.print(f"  [bold red]reached a target:[/] {'; '.join(reached)}", highlight=False)
    else:
        console.print("  the outside host's sshd and the pool recorded no connection at all", highlight=False)
    console.print(
        f"  firewall: {f['firewall_records']} records ({f['firewall_rejects']} REJECT), "
        f"{f['attributed_live']} attributed live ({f['violations_attributed_live']} violations)",
        highlight=False,
    )
    console.print(
        f"  slowest attribution: {f['max_latency_s']:.1f} s after its line was read", highlight=False
    )
    rep = d.correlation_report
    console.print(
        f"  batch correlation afterwards: {rep.records} records, {rep.attributed} attributed, "
        f"{len(rep.incidents)} incidents",
        highlight=False,
    )

    others = [c for ep in d.episodes for c in ep.calls if c.misbehaviour is not None]
    if others:
        console.print("[bold]Other misbehaving calls[/] (in full: the --call command below)", highlight=False)
        for c in others:
            r = c.result
            what = "refused" if c.refused else "blocked" if r.blocked else "alerted" if r.alerts else "ran"
            name = c.misbehaviour.name if c.misbehaviour else ""
            line = f"  {c.episode_id} turn {c.turn} {r.ctx.tool_call_id or '':<15} {what:<8} {name}"
            console.print(line[: max(20, console.width)], highlight=False)
    console.print("[bold]Written[/] to", highlight=False)
    console.print(f"  {d.out_dir}", highlight=False, soft_wrap=True, markup=False)
    for label, p in (
        ("events (SQLite)", d.store),
        ("trace (JSON lines, with outcomes)", d.trace),
        ("node firewall log (VPC flow log)", d.firewall_log),
        ("attributions as the watcher made them", d.live_attributions),
        ("batch correlation (JSON)", d.correlation),
        ("the figures above (JSON)", d.summary),
        ("the policy the demo ran under", d.policy),
        ("report (HTML)", d.report),
    ):
        name = p.name if p.parent == d.out_dir else str(p)
        console.print(f"  {name:<24} {label}", highlight=False, soft_wrap=True, markup=False)
    print_next(d, console)


def next_commands(d: DemoOutput) -> list[tuple[str, str]]:
    """(what it shows, the command) for the commands worth trying after this run."""
    acts = d.figures["acts"]
    assert isinstance(acts, dict)
    store, log, q = str(d.store), str(d.firewall_log), shlex.quote
    out: list[tuple[str, str]] = []
    for name, a in acts.items():
        out.append(
            (
                f"every call of the {name} episode, in full",
                f"corral events --store {q(store)} --episode {a['episode_id']}",
            )
        )
    if "miner" in acts:
        out.append(
            (
                "the miner's starting call as JSON (command, output, trace context)",
                f"corral events --store {q(store)} --call {acts['miner']['tool_call_id']} --json",
            )
        )
    out += [
        (
            "the firewall log attributed again, in batch",
            f"corral correlate --trace {q(store)} --log {q(log)}",
        ),
        ("the live attribution, replayed", f"corral watch --log {q(log)} --store {q(store)} --from-start"),
        ("the report (the incident's story first)", f"xdg-open {q(str(d.report))}"),
    ]
    if d.halt_obeyed:
        c = d.config
        again = f"corral demo --episodes {c.episodes} --workers {c.workers} --seed {c.seed} --no-halt"
        out.append(("what the run would have done without the breaker", again))
    return out


def shell_lines(command: str, width: int, indent: str = "  ") -> list[str]:
    """``command`` broken at spaces into lines of at most ``width`` columns, continued with `` \\``,
    so that it can be copied from a narrow terminal and pasted into a shell as it is."""
    words = [shlex.quote(w) for w in shlex.split(command)]
    lines: list[str] = []
    cur = indent
    for w in words:
        sep = "" if cur.strip() == "" else " "
        if cur.strip() and len(cur) + len(sep) + len(w) + 2 > width:
            lines.append(cur + " \\")
            cur = indent + "    " + w
        else:
            cur += sep + w
    lines.append(cur)
    return lines


def print_next(d: DemoOutput, console: Console) -> None:
    console.print("[bold]Next[/]")
    width = min(console.width, 100)
    for what, cmd in next_commands(d):
        console.print(f"  [dim]# {what}[/]", highlight=False)
        for line in shell_lines(cmd, width):
            console.print(line, highlight=False, soft_wrap=True, markup=False)
