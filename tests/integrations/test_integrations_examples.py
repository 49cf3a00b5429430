"""The configs and scripts in examples/integrations/ are what a user writes: each one runs, or (where it
needs a GPU trainer) names only arguments that exist. verl, OpenRLHF and ROLL configs are checked in
their framework's own tests (test_integrations_verl/openrlhf/gem)."""

from __future__ import annotations

import ast
import dataclasses
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import skyrl_gym
from framework_wheels import ROOT, load_modules, unpack

from corral.integrations import GuardConfig, shared_guard
from corral.integrations.trl import CorralEnvironmentFactory

EXAMPLES = ROOT / "examples" / "integrations"


@pytest.mark.parametrize("script", ["gymnasium/tool_env.py", "verifiers/runtime.py"])
def test_script_runs(script: str, tmp_path: Path) -> None:
    env = {**os.environ, "CORRAL_HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script)], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "not allowed in this environment" in proc.stdout + proc.stderr


def test_gymnasium_example_leaves_no_sandbox(tmp_path: Path) -> None:
    env = {**os.environ, "CORRAL_HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "gymnasium/tool_env.py")], capture_output=True, text=True, env=env
    )
    assert "sandboxes left open: 0" in proc.stdout


def test_skyrl_entrypoint_registers_the_env_class(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "policy.yaml").write_text("{}\n")
    monkeypatch.chdir(tmp_path)
    ns = runpy.run_path(str(EXAMPLES / "skyrl/entrypoint.py"))
    env = skyrl_gym.make(ns["ENV_CLASS"], env_config={}, extras={"max_turns": 2})
    env.init([{"role": "user", "content": "hi"}])
    assert env.step("<bash>echo ok</bash>")["observations"][0]["content"] == "ok\n"
    env.close()
    assert shared_guard(GuardConfig(policy="policy.yaml", run_id="my-run")).open_episodes == 0


def test_areal_example_names_the_adapter(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = unpack("areal", tmp_path_factory.mktemp("wheels"))
    with load_modules(root, ["areal", "areal.api"], [], ["corral.integrations.areal"]) as mods:
        ns = runpy.run_path(str(EXAMPLES / "areal/workflow.py"))
        assert ns["CorralWorkflow"] is mods["corral.integrations.areal"].CorralWorkflow


def _call_kwargs(path: Path, func: str) -> dict[str, object]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == func:
            return {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg}
    raise AssertionError(f"{path}: no call of {func}")


def test_trl_example_factory_arguments() -> None:
    kwargs = _call_kwargs(EXAMPLES / "trl/train.py", "CorralEnvironmentFactory")
    assert set(kwargs) <= {f.name for f in dataclasses.fields(CorralEnvironmentFactory)}
    tree = ast.parse((EXAMPLES / "trl/train.py").read_text())
    calls = [
        n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "GRPOTrainer"
    ]
    trainer_kwargs = {k.arg for n in calls for k in n.keywords}
    assert "environment_factory" in trainer_kwargs
