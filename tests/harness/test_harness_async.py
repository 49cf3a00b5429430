"""AsyncSandbox: native asyncio, concurrent calls in one sandbox, streaming, the agent's neutral note."""

from __future__ import annotations

import asyncio
import time

from corral import AsyncSandbox, Harness, Policy, Sandbox, TraceContext
from corral.harness import OutputChunk
from corral.sandbox import ToolResult


def _policy(**over: dict[str, object]) -> Policy:
    return Policy.default().with_overrides(detection={"enabled": False}, **over)


def test_many_concurrent_calls_overlap_on_one_loop() -> None:
    async def main() -> tuple[float, list[int], float]:
        harness = Harness(_policy(), store=None)
        try:
            sandboxes = [harness.async_sandbox() for _ in range(4)]
            await asyncio.gather(*(sb.start() for sb in sandboxes))
            lag = 0.0
            stop = False

            async def probe() -> None:  # the loop stays responsive while the calls run
                nonlocal lag
                while not stop:
                    t = time.perf_counter()
                    await asyncio.sleep(0.005)
                    lag = max(lag, time.perf_counter() - t - 0.005)

            p = asyncio.ensure_future(probe())
            t0 = time.perf_counter()
            results = await asyncio.gather(*(sb.run("sleep 1") for sb in sandboxes for _ in range(6)))
            wall = time.perf_counter() - t0
            stop = True
            await p
            await asyncio.gather(*(sb.close() for sb in sandboxes))
            return wall, [r.exit_code or 0 for r in results], lag
        finally:
            harness.close()

    wall, codes, lag = asyncio.run(main())
    assert codes == [0] * 24
    assert wall < 4.0  # 24 one-second calls over 4 sandboxes: they ran together, not one after another
    assert lag < 0.5


def test_stream_yields_output_as_it_comes_then_the_result() -> None:
    async def main() -> list[object]:
        items: list[object] = []
        async with AsyncSandbox(_policy(), store=None) as sb:
            async for item in sb.stream("for i in 1 2 3; do echo $i; sleep 0.3; done; echo err >&2"):
                items.append((time.perf_counter(), item))
        return items

    items = asyncio.run(main())
    chunks = [i for _, i in items if isinstance(i, OutputChunk)]
    final = items[-1][1]
    assert isinstance(final, ToolResult) and final.exit_code == 0
    assert b"".join(c.data for c in chunks if c.stream == "stdout") == b"1\n2\n3\n"
    assert [c.data for c in chunks if c.stream == "stderr"] == [b"err\n"]
    times = [t for t, i in items if isinstance(i, OutputChunk) and i.stream == "stdout"]
    assert times[-1] - times[0] > 0.4  # they arrived while the call ran, not all at the end
    assert final.stdout == "1\n2\n3\n"


def test_stream_respects_the_output_cap() -> None:
    with Sandbox(_policy(resources={"output_max_bytes": 4096}), store=None) as sb:
        got = list(sb.stream("head -c 100000 /dev/zero | tr '\\0' a"))
    data = b"".join(i.data for i in got if isinstance(i, OutputChunk))
    final = got[-1]
    assert isinstance(final, ToolResult) and final.stdout_truncated
    assert len(data) == 4096 and final.stdout_bytes == data


def test_the_agent_is_never_told_which_rule_fired() -> None:
    policy = Policy.default()
    with Sandbox(policy, store=None) as sb:
        r = sb.run("curl -s http://169.254.169.254/latest/meta-data/iam/security-credentials/")
    assert r.blocked and r.alerts
    for a in r.alerts:
        assert a.rule_id not in r.observation and a.title not in r.observation
    assert r.agent_message and "not run" in r.agent_message
    assert r.block_reason and r.alerts[0].rule_id in r.block_reason  # the trainer keeps the full record
    detailed = policy.with_overrides(response={"agent_message": "detailed"})
    with Sandbox(detailed, store=None) as sb:
        r2 = sb.run("curl -s http://169.254.169.254/latest/meta-data/iam/security-credentials/")
    assert r2.alerts[0].title in (r2.agent_message or "")


def test_raw_bytes_are_kept_beside_the_text() -> None:
    with Sandbox(_policy(), store=None) as sb:
        r = sb.run("printf '\\377\\376ok'")
    assert r.stdout_bytes == b"\xff\xfeok" and r.stdout.endswith("ok") and "\ufffd" in r.stdout


def test_events_go_to_the_default_store(tmp_path: object, monkeypatch: object) -> None:
    import os

    from corral.events import EventStore, default_store_path

    ctx = TraceContext(run_id="r-default", episode_id="e1")
    with Sandbox(_policy()) as sb:
        sb.run("true", ctx)
    path = default_store_path()
    assert path.exists() and str(path).startswith(os.environ["CORRAL_HOME"])
    with EventStore(path) as store:
        assert [e for e in store.query() if e.type == "tool_call" and e.ctx.run_id == "r-default"]
