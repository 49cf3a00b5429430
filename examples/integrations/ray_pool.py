"""Ray: sandboxes on the node where each rollout runs, events in one store.

.venv/bin/python examples/integrations/ray_pool.py
"""

import ray

from corral import Policy, TraceContext
from corral.ray import SandboxPool

ray.init(num_cpus=2, include_dashboard=False)
pool = SandboxPool(Policy.default(), store_path="/tmp/corral-ray-events.db")


@ray.remote
def rollout(pool: SandboxPool, episode: str) -> str:
    with pool.sandbox() as sb:
        return sb.run("hostname; echo $0", TraceContext(run_id="ray-demo", episode_id=episode)).stdout


print(ray.get([rollout.remote(pool, f"e{i}") for i in range(4)]))
pool.flush()
pool.shutdown()
