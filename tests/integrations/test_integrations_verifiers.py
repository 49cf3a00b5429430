"""verifiers 0.4 (v1 runtimes): CorralRuntime is a real ``verifiers.v1.runtimes.base.Runtime``; the
framework's own methods on top of it (``read`` with its byte cap, ``alive``, ``with_env``, ``stop``)
work over a Corral sandbox, commands are Corral tool calls with verdicts, and stop closes the sandbox."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from integrations_support import BAD, names_no_rule
from verifiers.v1.errors import SandboxError
from verifiers.v1.runtimes.base import Runtime

from corral.integrations import Guard
from corral.integrations.verifiers import CorralRuntime


def test_runtime_contract(guard: Guard) -> None:
    async def go() -> None:
        rt = CorralRuntime(guard, episode_id="vf1", timeout_s=10)
        assert isinstance(rt, Runtime) and rt.type == "corral"
        async with rt:
            assert await rt.alive()
            await rt.write("task/input.txt", b"hello")
            r = await rt.run(["sh", "-c", "cat task/input.txt; echo; echo $GREETING"], {"GREETING": "hi"})
            assert (r.exit_code, r.stdout) == (0, "hello\nhi\n")
            view = rt.with_env({"GREETING": "view"})
            assert (await view.run(["sh", "-c", "echo $GREETING"], {})).stdout == "view\n"
            assert await rt.read("task/input.txt") == b"hello"
            with pytest.raises(SandboxError, match="limit"):
                await rt.read("task/input.txt", max_bytes=2)
            bad = await rt.run(["sh", "-c", BAD], {})
            assert bad.exit_code == 126 and "not run" in bad.stderr and names_no_rule(bad.stderr + bad.stdout)
            assert (
                rt.summary is not None and rt.summary.quarantined and rt.summary.penalty == pytest.approx(1.0)
            )
            assert rt.info.id and rt.info.episode_id == "vf1"
        assert rt.stopped
        with pytest.raises(SandboxError, match="not started"):
            await rt.run(["true"], {})

    asyncio.run(go())
    assert guard.open_episodes == 0


def test_missing_file_is_the_runtimes_error(guard: Guard, tmp_path: Path) -> None:
    async def go() -> None:
        async with CorralRuntime(guard) as rt:
            with pytest.raises(SandboxError, match="nope"):
                await rt.read("nope.txt")

    asyncio.run(go())
    assert guard.open_episodes == 0
