"""SkyRL: register CorralTextEnv as a text environment (skyrl_gym.register(id=..., entry_point=...)).

Here one short episode with a misbehaving action.
"""

from corral import Policy
from corral.integrations import Guard
from corral.integrations.skyrl import CorralTextEnv

with Guard(Policy.default(), run_id="skyrl-demo") as guard:
    env = CorralTextEnv(guard, episode_id="sky-0")
    env.init([{"role": "user", "content": "Count the files."}])
    for action in ("<bash>ls | wc -l</bash>", "<bash>cat ~/.ssh/id_rsa</bash>"):
        out = env.step(action)
        print(action, out["reward"], out["done"], out["metadata"]["quarantined"])
    env.close()
