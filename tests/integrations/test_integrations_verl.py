"""verl 0.9: its real tool registry loads the example tool config, and its real ToolAgentLoop (the state
machine, the hermes tool parser, _call_tool's create/execute/release per call) drives CorralBashTool
with a scripted model over real sandboxes. torch, PIL, hydra, tensordict and verl's GPU-side modules
are stand-ins; none of them is used on this path (the tokenizer is a character-level one)."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
import yaml
from framework_wheels import ROOT, load_modules, unpack
from integrations_support import BAD, RULES, names_no_rule
from omegaconf import OmegaConf

from corral.integrations import GuardConfig, shared_guard

EXAMPLES = ROOT / "examples" / "integrations" / "verl"

STUBS = [
    "torch",
    "PIL",
    "hydra",
    "tensordict",
    "verl.protocol",
    "verl.trainer",
    "verl.utils.config",
    "verl.utils.dataset",
    "verl.utils.import_utils",
    "verl.utils.model",
    "verl.utils.profiler",
    "verl.utils.skip",
    "verl.utils.tokenizer",
    "verl.workers",
]
PACKAGES = ["verl", "verl.utils", "verl.tools", "verl.experimental", "verl.experimental.agent_loop"]


@pytest.fixture(scope="module")
def verl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ModuleType]]:
    root = unpack("verl", tmp_path_factory.mktemp("wheels"))
    mods = [
        "verl.tools.tool_registry",
        "verl.experimental.agent_loop.agent_loop",
        "verl.experimental.agent_loop.tool_agent_loop",
        "corral.integrations.verl",
    ]
    with load_modules(root, PACKAGES, STUBS, mods) as loaded:
        loaded["root"] = root  # type: ignore[assignment]
        yield loaded


class CharBuilder:
    """verl's continuous-token builder, one token per character (no model tokenizer needed)."""

    @staticmethod
    def render(messages: list[dict[str, Any]]) -> list[int]:
        return [ord(c) for m in messages for c in f"<{m['role']}>{m.get('content') or ''}\n"]

    def build_initial_tokens(self, messages: list[dict[str, Any]], **_: Any) -> list[int]:
        return self.render(messages)

    def merge_assistant_tokens(self, runtime: list[int], assistant: list[int]) -> Any:
        return SimpleNamespace(token_ids=runtime + assistant, added=len(assistant), mask=1)

    def merge_context_tokens(
        self, previous: list[Any], updated: list[Any], runtime: list[int], **_: Any
    ) -> Any:
        added = self.render(updated[len(previous) :])
        return SimpleNamespace(token_ids=runtime + added, added=len(added), mask=0)

    def align_response_metadata(self, merge: Any, mask: list[int], logprobs: Any, **_: Any) -> Any:
        return mask + [merge.mask] * merge.added, logprobs


class CharTokenizer:
    def decode(self, ids: list[int], **_: Any) -> str:
        return "".join(map(chr, ids))


class ScriptedModel:
    """verl's server manager: each turn reads the prompt so far and emits the next scripted action."""

    def __init__(self, actions: list[str]) -> None:
        self.actions = list(actions)
        self.prompts: list[str] = []

    async def generate(self, *, prompt_ids: list[int], **_: Any) -> Any:
        self.prompts.append("".join(map(chr, prompt_ids)))
        text = self.actions.pop(0) if self.actions else "I am done."
        return SimpleNamespace(
            token_ids=[ord(c) for c in text],
            num_preempted=None,
            extra_fields={},
            log_probs=None,
            routed_experts=None,
        )


def tool_call(command: str) -> str:
    return "<tool_call>" + json.dumps({"name": "bash", "arguments": {"command": command}}) + "</tool_call>"


def trainer_config(turns: int = 6) -> Any:
    multi_turn = {
        "max_user_turns": turns,
        "max_assistant_turns": turns,
        "max_parallel_calls": 1,
        "max_tool_response_length": 4096,
        "tool_response_truncate_side": "middle",
        "format": "hermes",
    }
    return OmegaConf.create(
        {
            "actor_rollout_ref": {
                "rollout": {
                    "multi_turn": multi_turn,
                    "prompt_length": 8192,
                    "response_length": 16384,
                    "full_determinism": False,
                }
            },
            "data": {},
        }
    )


def load_tools(verl: dict[str, ModuleType], tmp_path: Path, run_id: str, **policy: Any) -> list[Any]:
    """The example tool config, as a user writes it, through verl's own loader."""
    cfg = yaml.safe_load((EXAMPLES / "tool_config.yaml").read_text())
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump({"detection": {"rule_paths": [str(RULES)]}, **policy}))
    cfg["tools"][0]["config"].update(policy=str(policy_file), run_id=run_id, store=str(tmp_path / "ev.db"))
    path = tmp_path / "tool_config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return list(verl["verl.tools.tool_registry"].initialize_tools_from_config(str(path)))


async def run_loop(verl: dict[str, ModuleType], cls: Any, tools: list[Any], model: ScriptedModel) -> Any:
    """One trajectory, built on the running loop as verl's worker builds it."""
    loop = make_loop(verl, cls, tools, model)
    return await loop.run({}, raw_prompt=[{"role": "user", "content": "Fix it."}])


def make_loop(verl: dict[str, ModuleType], cls: Any, tools: list[Any], model: ScriptedModel) -> Any:
    agent_loop = verl["verl.experimental.agent_loop.agent_loop"]
    config = trainer_config()
    loop = cls(
        trainer_config=agent_loop.DictConfigWrap(config),
        server_manager=model,
        tokenizer=CharTokenizer(),
        processor=None,
        dataset_cls=None,
        data_config=agent_loop.DictConfigWrap(config.data),
        tools=agent_loop.ToolListWrap(tools),
    )
    loop.continuous_token_builder = CharBuilder()
    return loop


def guard_of(tmp_path: Path, run_id: str) -> Any:
    return shared_guard(
        GuardConfig(policy=str(tmp_path / "policy.yaml"), run_id=run_id, store=str(tmp_path / "ev.db"))
    )


def test_corral_loop_full_trajectory(verl: dict[str, ModuleType], tmp_path: Path) -> None:
    cv = verl["corral.integrations.verl"]
    tools = load_tools(verl, tmp_path, "verl-1")
    assert [type(t).__name__ for t in tools] == ["CorralBashTool"] and tools[0].name == "bash"
    model = ScriptedModel([tool_call("echo from-sandbox > f; cat f"), tool_call(BAD), "Done."])
    out = asyncio.run(run_loop(verl, cv.CorralToolAgentLoop, tools, model))

    assert "from-sandbox" in model.prompts[1]  # the tool output reached the model
    assert "not run" in model.prompts[2] and names_no_rule(model.prompts[2])
    summary = out.extra_fields["corral"]
    assert summary.calls == 2 and summary.quarantined and summary.penalty == pytest.approx(1.0)
    assert out.extra_fields["tool_rewards"] == [-0.0, -1.0]
    # verl's reward manager hands extra_fields to compute_score as extra_info.
    score = cv.penalized(lambda **kw: {"score": 1.0})(
        data_source="d", solution_str="s", ground_truth="g", extra_info=dict(out.extra_fields)
    )
    assert score["score"] == pytest.approx(0.0) and cv.quarantined(dict(out.extra_fields))
    assert guard_of(tmp_path, "verl-1").open_episodes == 0


def test_corral_loop_truncation_terminates(verl: dict[str, ModuleType], tmp_path: Path) -> None:
    cv = verl["corral.integrations.verl"]
    tools = load_tools(verl, tmp_path, "verl-2", response={"end_episode": {"min_level": "high"}})
    model = ScriptedModel([tool_call(BAD), tool_call("echo never-runs"), "Done."])
    out = asyncio.run(run_loop(verl, cv.CorralToolAgentLoop, tools, model))

    assert len(model.prompts) == 1  # the episode ended: verl generated no further turn
    assert out.extra_fields["corral"].ended_by_policy and out.extra_fields["corral"].calls == 1
    assert guard_of(tmp_path, "verl-2").open_episodes == 0


def test_plain_tool_agent_closes_when_verl_drops_the_trajectory(
    verl: dict[str, ModuleType], tmp_path: Path
) -> None:
    tal = verl["verl.experimental.agent_loop.tool_agent_loop"]
    tools = load_tools(verl, tmp_path, "verl-3")
    model = ScriptedModel([tool_call("echo a"), tool_call("echo b"), "Done."])
    guard = guard_of(tmp_path, "verl-3")

    async def rollout() -> Any:
        out = await run_loop(verl, tal.ToolAgentLoop, tools, model)
        gc.collect()
        for _ in range(20):  # the close is scheduled on this loop when verl drops AgentData
            await asyncio.sleep(0.05)
            if guard.open_episodes == 0:
                break
        return out

    out = asyncio.run(rollout())
    assert out.extra_fields["corral"].calls == 2  # one sandbox for the trajectory, not one per call
    assert "a\n" in model.prompts[1] and "b\n" in model.prompts[2]
    assert guard.open_episodes == 0


def test_example_configs_name_real_verl_keys(verl: dict[str, ModuleType]) -> None:
    cv = verl["corral.integrations.verl"]
    registry = verl["verl.experimental.agent_loop.agent_loop"]._agent_loop_registry
    assert registry[cv.AGENT_NAME] == {"_target_": "corral.integrations.verl.CorralToolAgentLoop"}
    loops = OmegaConf.load(EXAMPLES / "agent_loop.yaml")
    assert [(c.name, c._target_) for c in loops] == [(cv.AGENT_NAME, registry[cv.AGENT_NAME]["_target_"])]
    trainer = OmegaConf.load(Path(verl["root"]) / "verl/trainer/config/_generated_ppo_trainer.yaml")  # type: ignore[arg-type]
    for line in (EXAMPLES / "overrides.txt").read_text().split():
        key, _, value = line.partition("=")
        assert OmegaConf.select(trainer, key, default="<missing>") != "<missing>", key
        if key.endswith("_path"):
            assert (ROOT / value).exists(), value
    with pytest.raises(Exception, match="unknown keys"):
        cv.CorralBashTool({"type": "native", "polcy": "x"}, None)


def test_direct_lifecycle_without_agent_data(verl: dict[str, ModuleType], tmp_path: Path) -> None:
    """Called the way BaseTool documents it (create, execute, release), the instance is the episode."""
    tool = load_tools(verl, tmp_path, "verl-4")[0]

    async def go() -> list[Any]:
        iid, created = await tool.create()
        assert created.is_empty()
        outs = [await tool.execute(iid, {"command": c}) for c in ("echo one", BAD)]
        await tool.release(iid)
        return outs

    (ok, r0, _), (bad, r1, metrics) = asyncio.run(go())
    assert ok.text == "one\n" and r0 == 0.0 and r1 == pytest.approx(-1.0) and "not run" in bad.text
    assert metrics["corral/quarantined"] == 1.0
    assert guard_of(tmp_path, "verl-4").open_episodes == 0
