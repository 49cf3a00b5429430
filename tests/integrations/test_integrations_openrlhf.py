"""OpenRLHF 0.11: its real agent-file loader takes the example file's AgentExecutor, and its real
MultiTurnAgentExecutor drives a scripted model through real sandboxes: feedback reaches the model,
rewards are read with .item(), extra_logs carry the penalty, a Corral truncation is `done`, and the
sandbox closes however the rollout ends (token budget included). vLLM and aiohttp are stand-ins
(the agent path never uses them)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
import yaml
from framework_wheels import ROOT, load_modules, unpack
from integrations_support import BAD, RULES, names_no_rule

from corral.integrations import GuardConfig, shared_guard

EXAMPLE = ROOT / "examples" / "integrations" / "openrlhf" / "agent_func.py"


@pytest.fixture(scope="module")
def openrlhf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ModuleType]]:
    root = unpack("openrlhf", tmp_path_factory.mktemp("wheels"))
    packages = ["openrlhf", "openrlhf.utils", "openrlhf.trainer", "openrlhf.trainer.ray"]
    mods = ["openrlhf.utils.agent", "openrlhf.trainer.ray.vllm_engine", "corral.integrations.openrlhf"]
    with load_modules(root, packages, ["aiohttp", "vllm"], mods) as loaded:
        yield loaded


class Ids(list[int]):
    def tolist(self) -> list[int]:
        return list(self)


class CharTokenizer:
    """What OpenRLHF asks of the HF tokenizer on the agent path, one token per character."""

    def __call__(self, text: str, **_: Any) -> dict[str, list[Ids]]:
        return {"input_ids": [Ids(ord(c) for c in text)]}

    def decode(self, ids: list[int], **_: Any) -> str:
        return "".join(map(chr, ids))


class ScriptedEngine:
    def __init__(self, actions: list[str]) -> None:
        self.actions = list(actions)
        self.prompts: list[str] = []

    async def generate(self, tokens: list[int], params: Any, multi_modal_data: Any = None) -> Any:
        self.prompts.append("".join(map(chr, tokens)))
        text = (self.actions.pop(0) if self.actions else "Done.")[: params.max_tokens]
        out = SimpleNamespace(
            token_ids=[ord(c) for c in text], text=text, finish_reason="stop", logprobs=None
        )
        return SimpleNamespace(outputs=[out])


@pytest.fixture
def agent_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example agent file, run where its policy.yaml is (the test rules)."""
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump({"detection": {"rule_paths": [str(RULES)]}}))
    monkeypatch.chdir(tmp_path)
    return Path(shutil.copy(EXAMPLE, tmp_path / "agent_func.py"))


def rollout(
    openrlhf: dict[str, ModuleType], path: Path, actions: list[str], max_length: int = 4096
) -> tuple[dict[str, Any], ScriptedEngine]:
    executor = openrlhf["openrlhf.trainer.ray.vllm_engine"]._load_agent_executor(str(path))
    assert isinstance(executor, openrlhf["openrlhf.utils.agent"].MultiTurnAgentExecutor)
    engine = ScriptedEngine(actions)
    params = SimpleNamespace(max_tokens=None, logprobs=None)
    out = asyncio.run(executor.execute("Fix the bug.", "label", params, max_length, CharTokenizer(), engine))
    return out, engine


def guard() -> Any:
    return shared_guard(GuardConfig(policy="policy.yaml", run_id="my-run"))


def test_multi_turn_rollout(openrlhf: dict[str, ModuleType], agent_file: Path) -> None:
    out, engine = rollout(
        openrlhf, agent_file, ["<bash>echo from-sandbox</bash>", f"<bash>{BAD}</bash>", "Done."]
    )
    assert "from-sandbox" in engine.prompts[1]  # the tool output reached the model
    assert "not run" in engine.prompts[2] and names_no_rule(engine.prompts[2])
    assert out["reward"] == pytest.approx(-1.0)
    assert out["extra_logs"]["corral/penalty"] == pytest.approx(1.0)
    assert out["extra_logs"]["corral/quarantined"] == 1.0 and out["corral"].quarantined
    assert guard().open_episodes == 0


def test_token_budget_end_closes_the_sandbox(openrlhf: dict[str, ModuleType], agent_file: Path) -> None:
    long_call = "<bash>echo " + "x" * 80 + "</bash>"
    out, engine = rollout(openrlhf, agent_file, [long_call] * 10, max_length=400)
    assert 1 < len(engine.prompts) < 10  # OpenRLHF stopped on the budget, not on `done`
    assert out["corral"].calls >= 1
    assert guard().open_episodes == 0


def test_corral_truncation_is_done(openrlhf: dict[str, ModuleType], agent_file: Path) -> None:
    (agent_file.parent / "policy.yaml").write_text(
        yaml.safe_dump(
            {"detection": {"rule_paths": [str(RULES)]}, "response": {"end_episode": {"min_level": "high"}}}
        )
    )
    cfg = GuardConfig(policy="policy.yaml", run_id="truncating")
    text = agent_file.read_text().replace('run_id="my-run"', 'run_id="truncating"')
    agent_file.write_text(text)
    out, engine = rollout(openrlhf, agent_file, [f"<bash>{BAD}</bash>", "<bash>echo never</bash>"])
    assert len(engine.prompts) == 1 and out["corral"].ended_by_policy
    assert shared_guard(cfg).open_episodes == 0
