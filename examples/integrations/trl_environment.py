"""TRL: GRPOTrainer(environment_factory=..., reward_funcs=[..., corral_penalty_reward]).

TRL exposes the environment's public methods as tools: CorralEnvironment has one, ``bash``.
Here the factory is driven by hand.
"""

from corral import Policy
from corral.integrations import Guard
from corral.integrations.trl import corral_environment_factory, corral_penalty_reward, corral_quarantine_mask

with Guard(Policy.default(), run_id="trl-demo") as guard:
    factory = corral_environment_factory(guard, timeout_s=30)
    envs = [factory() for _ in range(2)]
    for env in envs:
        env.reset()
    print(envs[0].bash("echo clean"))
    print(envs[1].bash("cat /proc/self/environ; env | grep -i key"))
    print("penalty rewards:", corral_penalty_reward([None, None], envs))
    print("drop from update:", corral_quarantine_mask(envs))
