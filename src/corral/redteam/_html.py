"""The scorecard for people: a rich terminal table, and a self-contained HTML report for reviewers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from corral.redteam._model import ScenarioResult, Scorecard
from corral.report import Cell, cards, code, details, esc, page, section, table

_GiB, _MiB = 1024**3, 1024**2
_DETAIL_CHARS = 120  # the table shows the start; JSON and HTML carry it all


def _size(n: int) -> str:
    return f"{n / _GiB:g} GiB" if n >= _GiB else f"{n / _MiB:g} MiB"


def policy_in_words(p: dict[str, Any]) -> list[tuple[str, str]]:
    """The controls a policy puts in force, one plain sentence each (from its JSON form)."""
    net, res, proc, fs, det = p["network"], p["resources"], p["processes"], p["filesystem"], p["detection"]
    if net["mode"] == "none":
        network = "No network at all: a tool call has only its own loopback interface."
    else:
        allow = ", ".join(_entry(e) for e in net["allow"]) or "nothing"
        network = (
            "Default-deny egress through Corral's proxy and resolver; allowed destinations: "
            f"{allow}. Metadata, private and host addresses are refused unless listed by IP."
        )
    blocking = sorted(lv for lv, a in det["actions"].items() if a == "block")
    rows = [
        ("Network", network),
        (
            "Filesystem",
            f"Read-only system directories ({', '.join(fs['read_only_binds'])}); writable only the "
            f"{_size(p['workspace']['size_max_bytes'])} workspace at {p['workspace']['mount_point']} and a "
            f"private {_size(fs['tmp_size_max_bytes'])} /tmp. Hidden: {', '.join(fs['hidden_paths'])}.",
        ),
        (
            "Resources",
            f"Per call: {_size(res['memory_max_bytes'])} memory, {res['pids_max']} processes, "
            f"{res['cpu_quota_cores']:g} CPU cores, {res['wall_timeout_s']:g} s wall clock.",
        ),
        (
            "Processes",
            "Processes may outlive their call until the sandbox closes (episode lifetime): "
            "a call can leave a service, or a miner, running."
            if proc["lifetime"] == "episode"
            else "Nothing a call starts survives it: its pid namespace and cgroup die when it returns.",
        ),
        (
            "Programs",
            "Every program under the read-only directories may run."
            if p["programs"]["allow"] is None
            else f"Only these programs may run: {', '.join(p['programs']['allow'])}.",
        ),
        (
            "Detection",
            "Off."
            if not det["enabled"]
            else f"Built-in rules ({', '.join(det['builtin_maturity'])}) inspect every call; "
            + (
                f"alerts of level {', '.join(blocking)} block the call before it runs."
                if blocking
                else "alerts never block a call (alert only)."
            ),
        ),
        ("Identity", "Each sandbox runs as its own unprivileged host uid with every capability dropped."),
    ]
    return rows


def _entry(e: dict[str, Any]) -> str:
    target = e.get("domain") or e.get("cidr") or "?"
    ports = e.get("ports") or (443,)  # an allow entry without ports means 443
    return f"{target}:{','.join(map(str, ports))}"


def _mark(ok: bool) -> str:
    return "yes" if ok else "NO"


def print_scorecard(card: Scorecard, console: Console | None = None) -> None:
    """The scorecard as a table; a detail column only on wide terminals, failures spelled out below."""
    console = console or Console()
    wide = console.width >= 140
    narrow = console.width < 100  # an 80-column terminal: no category column, short headers, light box
    t = Table(
        title=f"Red-team scorecard: policy {card.policy_name!r}",
        box=box.SIMPLE_HEAD if narrow else box.HEAVY_HEAD,
        pad_edge=not narrow,
    )
    cols = ["scenario", *([] if narrow else ["category"]), "blocked", "alert", "tied", "secs"]
    for col in cols:
        t.add_column(col, no_wrap=col != "scenario", overflow="fold")
    if wide:
        t.add_column("detail", no_wrap=True, overflow="ellipsis", max_width=console.width - 100)
    for s in card.scenarios:
        ttd = f"{s.time_to_detect_s:.2f}" if s.time_to_detect_s is not None else "-"
        row = [
            s.name,
            *([] if narrow else [s.category]),
            "[green]yes[/]" if s.blocked else "[bold red]NO[/]",
            "[green]yes[/]" if s.detected else "[yellow]no[/]",
            "yes" if s.attributed else "no",
            ttd,
        ]
        t.add_row(*row, *([s.detail[:_DETAIL_CHARS]] if wide else []))
    console.print(t)
    console.print(
        "[dim]alert: a rule fired; tied: the alert names the call; secs: time to detect[/]",
        highlight=False,
    )
    console.print(verdict_line(card), highlight=False)
    m = card.summary()
    console.print(
        f"{m['blocked']}/{m['total']} blocked, {m['detected']} detected, {m['attributed']} attributed "
        f"in {m['duration_s']} s (Corral {m['corral_version']}, {m['kernel']})",
        highlight=False,
    )
    for s in card.scenarios:
        if not s.blocked:
            console.print(f"[bold red]NOT BLOCKED[/] {s.name}: {s.detail}", highlight=False)


def _scenario_html(s: ScenarioResult) -> str:
    verdict = (
        '<span class="badge" style="background:#15803d">blocked</span>'
        if s.blocked
        else '<span class="badge" style="background:#b91c1c">NOT BLOCKED</span>'
    )
    ev_rows = [
        (e.check, Cell("&#10003;" if e.ok else '<b class="warn">&#10007;</b>', int(e.ok)), e.detail)
        for e in s.evidence
    ]
    alert_rows = [
        (a.rule_id, a.title, a.category, a.level, a.where, _mark(a.attributed), a.delay_s) for a in s.alerts
    ]
    body = (
        f"<p>{esc(s.description)}</p><p><b>Tool call</b> (run {code(s.ctx.get('run_id'))}, episode "
        f"{code(s.ctx.get('episode_id'))}, tool call {code(s.ctx.get('tool_call_id'))}):</p>"
        f"<pre class='mono'>{esc(s.command)}</pre>"
        f"<p>Exit code {code(s.exit_code)}, stopped by {code(s.stop_reason or '-')}, blocked before running: "
        f"{code(s.call_blocked)}, {s.duration_s:.3f} s.</p>"
        "<h3>Evidence</h3>" + table(["check", "ok", "what was seen"], ev_rows)
    )
    if alert_rows:
        body += "<h3>Alerts</h3>" + table(
            ["rule", "title", "category", "level", "where", "attributed", "after s"], alert_rows
        )
    else:
        body += (
            f"<p class='warn'>No alert raised (expected one of: {esc(', '.join(s.expected_detection))}).</p>"
        )
    if s.stdout_tail or s.stderr_tail:
        body += f"<h3>Output (tail)</h3><pre class='mono'>{esc(s.stdout_tail)}{esc(s.stderr_tail)}</pre>"
    summary = f"{verdict} {esc(s.name)} <span class='muted'>({esc(s.category)})</span>"
    return details(summary, body, open_=not s.blocked, anchor=f"sc-{s.name}")


def verdict_line(card: Scorecard) -> str:
    """One sentence that never claims more than happened: blocked and detected are separate claims."""
    m = card.summary()
    undetected = [s.name for s in card.scenarios if not s.detected]
    if not card.all_blocked:
        return f"{len(m['not_blocked'])} attack(s) were NOT blocked: {', '.join(m['not_blocked'])}."
    if not undetected:
        return "Every attack was blocked, and every one was detected."
    return (
        f"Every attack was blocked; {len(undetected)} of {m['total']} raised no alert "
        f"({', '.join(undetected[:6])}{', ...' if len(undetected) > 6 else ''})."
    )


def render_html(card: Scorecard) -> str:
    """A self-contained report: policy in plain words, results, per-scenario evidence, versions, date."""
    m = card.summary()
    when = datetime.fromtimestamp(card.started, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    verdict = verdict_line(card)
    overview = cards(
        [
            ("scenarios", m["total"]),
            ("blocked", m["blocked"]),
            ("detected", m["detected"]),
            ("attributed", m["attributed"]),
            ("run time (s)", m["duration_s"]),
        ]
    )
    rows = [
        (
            Cell(f'<a href="#sc-{esc(s.name)}">{esc(s.name)}</a>', s.name),
            s.category,
            Cell("yes" if s.blocked else '<b class="warn">NO</b>', int(s.blocked)),
            _mark(s.detected),
            _mark(s.attributed),
            "" if s.time_to_detect_s is None else f"{s.time_to_detect_s:.3f}",
            s.detail,
        )
        for s in card.scenarios
    ]
    env_rows = [
        ("Corral version", card.corral_version),
        ("Kernel", card.kernel),
        ("Date", when),
        ("Run id", card.run_id),
        ("Policy", card.policy_name),
    ]
    how = (
        "<p>Each scenario is a tool call an agent could plausibly send, run in a fresh Corral sandbox "
        "under the policy below, against fake targets (an OpenSSH server, a reverse-shell relay, a stratum "
        "mining pool, cloud metadata services, internal Redis/etcd, a DNS receiver, an upload endpoint) "
        "that live in network namespaces created for this run only. <b>Blocked</b> means the targets "
        "recorded nothing and the host was left unchanged; <b>detected</b> means an alert of the expected "
        "category was raised; "
        "<b>attributed</b> means the stored alert carries the scenario's run, episode and tool-call ids.</p>"
    )
    body = (
        f"<p><b>{esc(verdict)}</b></p>{overview}"
        + section("Policy in force", table(["control", "in plain words"], policy_in_words(card.policy)))
        + section(
            "Scorecard",
            table(
                ["scenario", "category", "blocked", "detected", "attributed", "detect s", "detail"],
                rows,
                table_id="scorecard",
                filter_box=True,
            ),
        )
        + section("How to read this", how)
        + section("Scenarios and evidence", "".join(_scenario_html(s) for s in card.scenarios))
        + section("Environment", table(["", ""], env_rows))
    )
    css = (
        "pre{white-space:pre-wrap;word-break:break-all;background:#f1f5f9;padding:8px;border-radius:6px}"
        "h3{font-size:14px}td{overflow-wrap:anywhere}"
    )
    return page(
        f"Corral red-team report: {card.policy_name}",
        body,
        subtitle=f"{when} · Corral {card.corral_version} · {card.kernel}",
        extra_css=css,
    )
