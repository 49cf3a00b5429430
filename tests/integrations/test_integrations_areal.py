"""AReaL 1.0: CorralWorkflow is a real ``areal.api.workflow_api.RolloutWorkflow`` (the module from the
wheel; it imports nothing heavy at run time) around a scripted multi-turn tool workflow driven by a
scripted engine: the output reaches the model, the penalty comes off the rewards, a quarantined
trajectory returns None (AReaL's rejection), and each trajectory's sandbox is closed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from framework_wheels import load_modules, unpack
from integrations_support import BAD, MEDIUM, write_policy

from corral.integrations import GuardConfig, extract_command, shared_guard


@pytest.fixture(scope="module")
def areal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ModuleType]]:
    root = unpack("areal", tmp_path_factory.mktemp("wheels"))
    with load_modules(
        root, ["areal", "areal.api"], [], ["areal.api.workflow_api", "corral.integrations.areal"]
    ) as m:
        yield m


class ScriptedEngine:
    """AReaL's InferenceEngine as the workflow uses it: ``agenerate`` on the text so far."""

    def __init__(self, actions: list[str]) -> None:
        self.actions = list(actions)
        self.prompts: list[str] = []

    async def agenerate(self, prompt: str) -> str:
        self.prompts.append(prompt)
        return self.actions.pop(0) if self.actions else "done"


def tool_workflow(areal: dict[str, ModuleType]) -> Any:
    base = areal["areal.api.workflow_api"].RolloutWorkflow
    current_episode = areal["corral.integrations.areal"].current_episode

    class ToolWorkflow(base):  # type: ignore[misc, valid-type]
        """A user's multi-turn workflow: its tool calls go through the trajectory's Corral episode."""

        async def arun_episode(self, engine: ScriptedEngine, data: dict[str, Any]) -> dict[str, Any]:
            text = data["prompt"]
            for _ in range(4):
                action = await engine.agenerate(text)
                command = extract_command(action)
                if command is None:
                    break
                report = await current_episode().run(command)
                text += f"{action}\n<output>{report.observation}</output>\n"
            return {"rewards": 1.0, "text": text}

    return ToolWorkflow()


def run(
    areal: dict[str, ModuleType], policy: str, run_id: str, actions: list[str]
) -> tuple[Any, ScriptedEngine]:
    wf = areal["corral.integrations.areal"].CorralWorkflow(
        tool_workflow(areal), policy=policy, run_id=run_id, store=None
    )
    assert isinstance(wf, areal["areal.api.workflow_api"].RolloutWorkflow)
    engine = ScriptedEngine(actions)
    return asyncio.run(wf.arun_episode(engine, {"prompt": "Fix it.", "query_id": "q1"})), engine


def test_penalty_comes_off_the_rewards(areal: dict[str, ModuleType], tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "p.yaml")
    result, engine = run(
        areal, policy, "areal-1", ["<bash>echo from-sandbox</bash>", f"<bash>{MEDIUM}</bash>"]
    )
    assert "from-sandbox" in engine.prompts[1]
    assert result["rewards"] == pytest.approx(0.5)
    assert shared_guard(GuardConfig(policy=policy, run_id="areal-1", store=None)).open_episodes == 0


def test_quarantined_trajectory_is_rejected(areal: dict[str, ModuleType], tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "p.yaml")
    result, _ = run(areal, policy, "areal-2", [f"<bash>{BAD}</bash>"])
    assert result is None
    assert shared_guard(GuardConfig(policy=policy, run_id="areal-2", store=None)).open_episodes == 0


def test_no_episode_outside_the_workflow(areal: dict[str, ModuleType]) -> None:
    with pytest.raises(RuntimeError, match="inside CorralWorkflow"):
        areal["corral.integrations.areal"].current_episode()
