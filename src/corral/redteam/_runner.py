"""Running scenarios: one fresh sandbox each, against the range, judged by checks and alerts."""

from __future__ import annotations

import platform
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from corral.errors import CorralError
from corral.events import Alert, Event, EventStore, TraceContext, default_store_path
from corral.harness import Harness, Sandbox
from corral.policy import Policy
from corral.redteam._checks import CHECKS, CheckEnv, WorkspaceView, marker_evidence
from corral.redteam._loader import render
from corral.redteam._model import AlertSeen, Evidence, Scenario, ScenarioResult, Scorecard
from corral.redteam._range import Range
from corral.sandbox import ToolResult

ALERT_WAIT_S = 0.3  # how long to wait for asynchronous alerts once checks are done
SETTLE_S = 0.15  # let in-flight connections reach the targets before judging
_TAIL = 600

OnResult = Callable[[ScenarioResult], None]


def _corral_version() -> str:
    from corral import __version__

    return __version__


def redteam_dir() -> Path:
    """Where runs keep their event store: ``$CORRAL_HOME/redteam``."""
    return default_store_path().parent / "redteam"


def run_redteam(
    policy: Policy,
    scenarios: Sequence[Scenario],
    *,
    store_path: Path | None = None,
    on_result: OnResult | None = None,
) -> Scorecard:
    """Run ``scenarios`` under ``policy`` against a fresh range; every one in its own sandbox.

    Needs root (network namespaces). The calling thread moves into the range's
    private netns for the duration: call it from the main thread, before other
    threads that should stay on the host's network are started.
    """
    nonce = uuid.uuid4().hex[:10]
    run_id = f"redteam-{nonce}"
    started = time.time()
    run_dir = Path(tempfile.mkdtemp(prefix=f"corral-rt-{nonce}-"))
    store_path = store_path or redteam_dir() / run_id / "events.db"
    store_path.parent.mkdir(parents=True, exist_ok=True)
    results: list[ScenarioResult] = []
    rng: Range | None = None
    try:
        with EventStore(store_path) as store:
            rng = Range.start(run_dir, nonce)
            # Created inside the range's netns, so the egress proxy it starts lives there too.
            harness = Harness(policy, store=store)
            try:
                for sc in scenarios:
                    res = _run_one(harness, sc, rng, store, run_id)
                    results.append(res)
                    if on_result is not None:
                        on_result(res)
            finally:
                harness.close()
    finally:
        if rng is not None:
            rng.close()
        shutil.rmtree(run_dir, ignore_errors=True)
    return Scorecard(
        scenarios=results,
        policy_name=policy.name,
        policy=policy.model_dump(mode="json"),
        corral_version=_corral_version(),
        kernel=f"{platform.system()} {platform.release()}",
        started=started,
        duration_s=time.time() - started,
        run_id=run_id,
    )


def _seed(sb: Sandbox, sc: Scenario, rng: Range, values: dict[str, str]) -> dict[str, str]:
    """Stage the scenario's files in the workspace, as the sandbox's user (the trainer's act)."""
    written: dict[str, str] = {}
    for rel, text in sc.seed.items():
        written[rel] = render(text, values, where=f"{sc.name}.seed")
    for rel, src in sc.files.items():
        path = rng.artifact(src[1:]) if src.startswith("@") else Path(sc.base_dir) / src
        sb.write_file(rel, path.read_bytes(), mode=0o600 if src.startswith("@") else 0o755)
    for rel, text in written.items():
        sb.write_file(rel, text)
    return written


def _run_one(harness: Harness, sc: Scenario, rng: Range, store: EventStore, run_id: str) -> ScenarioResult:
    ctx = TraceContext(run_id=run_id, step=0, episode_id=sc.name, turn=0)
    # A sandbox that cannot be made (missing tool, egress failure) aborts the run: that is no scorecard.
    sb = harness.sandbox(f"rt-{sc.name}-{uuid.uuid4().hex[:6]}"[:60])
    try:
        return _attack(sb, sc, rng, store, ctx)
    except CorralError as exc:
        return ScenarioResult(
            name=sc.name,
            category=sc.category,
            description=sc.description,
            blocked=False,
            detected=False,
            attributed=False,
            detail=f"harness error: {exc}",
            expected_detection=list(sc.detect),
            command=sc.command,
            error=str(exc),
        )
    finally:
        sb.close()


def _attack(sb: Sandbox, sc: Scenario, rng: Range, store: EventStore, ctx: TraceContext) -> ScenarioResult:
    rng.ensure_victim()
    values = {**rng.values(), "store.path": str(store.path), "store.dir": str(store.path.parent)}
    command = render(sc.command, values, where=sc.name)
    seeded = _seed(sb, sc, rng, values)
    env = CheckEnv(
        nonce=rng.nonce,
        workspace=WorkspaceView(sb),
        sandbox_uid=sb.uid,
        recorder=rng.recorder,
        mark=rng.recorder.mark(),
        store=store,
        host_netns_path=rng.lab.host_netns_path if rng.lab else "/proc/1/ns/net",
        secrets=rng.secrets,
        victim_pid=rng.victim.pid if rng.victim else None,
        seeded=seeded,
        render=lambda s: render(s, values, where=sc.name),
    )
    states = [CHECKS[c.kind][0](env, c.arg) for c in sc.checks]
    start_ns = time.time_ns()
    r = sb.run(command, ctx, timeout=sc.timeout_s)
    returned_s = (time.time_ns() - start_ns) / 1e9
    env.output = r.stdout + r.stderr
    if any(c.kind == "silent" for c in sc.checks):
        time.sleep(SETTLE_S)
        rng.poll()
    evidence: list[Evidence] = [marker_evidence(env.output)]
    for c, state in zip(sc.checks, states, strict=True):
        try:
            evidence.append(CHECKS[c.kind][1](env, c.arg, state))
        except Exception as exc:  # a check that cannot look proves nothing: not blocked
            evidence.append(Evidence(check=c.kind, ok=False, detail=f"check failed: {exc}"))
    alerts = _alerts(r, store, sb.id, sc, start_ns, returned_s)
    blocked = all(e.ok for e in evidence)
    hits = [a for a in alerts if not sc.detect or a.category in sc.detect]
    ttd = min((a.delay_s for a in hits if a.delay_s is not None), default=None)
    return ScenarioResult(
        name=sc.name,
        category=sc.category,
        description=sc.description,
        blocked=blocked,
        detected=bool(hits),
        attributed=any(a.attributed for a in hits),
        time_to_detect_s=round(ttd, 4) if ttd is not None else None,
        detail=_detail(r, evidence, hits, alerts, sc),
        expected_detection=list(sc.detect),
        evidence=evidence,
        alerts=alerts,
        command=command,
        exit_code=r.exit_code,
        stop_reason=r.stop_reason,
        call_blocked=r.blocked,
        duration_s=round(r.duration_s, 3),
        stdout_tail=r.stdout[-_TAIL:],
        stderr_tail=r.stderr[-_TAIL:],
        ctx=r.ctx.model_dump(mode="json"),
    )


def _same_call(ev: Event, r: ToolResult) -> bool:
    c, want = ev.ctx, r.ctx
    return (c.run_id, c.episode_id, c.tool_call_id) == (want.run_id, want.episode_id, want.tool_call_id)


def _alerts(
    r: ToolResult, store: EventStore, sandbox_id: str, sc: Scenario, start_ns: int, returned_s: float
) -> list[AlertSeen]:
    """Alerts on the result and in the store for this sandbox (waiting briefly for late ones)."""
    stored: list[Event] = []
    deadline = time.monotonic() + ALERT_WAIT_S
    while True:
        store.flush()
        stored = list(store.query(sandbox_id=sandbox_id, type="alert"))
        expected = [e for e in stored if not sc.detect or _category(e) in sc.detect]
        if expected or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    out: list[AlertSeen] = []
    for ev in stored:
        a = ev.data
        assert isinstance(a, Alert)
        out.append(
            AlertSeen(
                rule_id=a.rule_id,
                category=a.category,
                level=a.level.value,
                title=a.title,
                attributed=_same_call(ev, r),
                delay_s=max(0.0, (ev.time_ns - start_ns) / 1e9),
                where="store",
            )
        )
    in_store = {(a.rule_id, a.category) for a in out}
    for a in r.alerts:
        if (a.rule_id, a.category) not in in_store:
            out.append(
                AlertSeen(
                    rule_id=a.rule_id,
                    category=a.category,
                    level=a.level.value,
                    title=a.title,
                    attributed=False,  # only on the result: the store has no record a reviewer could trace
                    delay_s=returned_s,
                    where="result",
                )
            )
    return out


def _category(ev: Event) -> str:
    return ev.data.category if isinstance(ev.data, Alert) else ""


def _detail(
    r: ToolResult, evidence: list[Evidence], hits: list[AlertSeen], alerts: list[AlertSeen], sc: Scenario
) -> str:
    failed = [f"{e.check}: {e.detail}" for e in evidence if not e.ok]
    if failed:
        head = "NOT BLOCKED: " + "; ".join(failed)
    elif r.blocked:
        head = f"call blocked before it ran ({r.block_reason or 'policy'})"
    elif r.stop_reason:
        head = f"call stopped: {r.stop_reason}"
    else:
        head = "ran; " + "; ".join(e.detail for e in evidence[1:3]) if len(evidence) > 1 else "ran; no effect"
    if hits:
        head += f" | detected: {'; '.join(sorted({a.title for a in hits}))}"
    elif alerts:
        head += f" | alerts of other categories: {', '.join(sorted({a.category for a in alerts}))}"
    elif sc.detect:
        head += f" | no {'/'.join(sc.detect)} alert"
    return head
