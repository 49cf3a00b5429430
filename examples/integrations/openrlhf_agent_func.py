"""OpenRLHF: pass this file as --agent_func_path. OpenRLHF imports ``AgentInstance`` from it.

Each sample gets a sandbox at ``reset``; ``step`` runs the command in ``<bash>...</bash>``
and returns rewards (minus the safety penalty), feedback, done and extra_logs
(corral_penalty, corral_quarantined) that OpenRLHF logs to W&B.
"""

from corral import Policy
from corral.integrations import Guard
from corral.integrations.openrlhf import corral_agent_instance

AgentInstance = corral_agent_instance(Guard(Policy.default(), run_id="openrlhf-demo"), timeout_s=30)

if __name__ == "__main__":
    import asyncio

    async def demo() -> None:
        agent = AgentInstance()
        await agent.reset({"observation": "Fix the bug."})
        for action in ("<bash>echo hi</bash>", "<bash>cat /etc/shadow</bash>", "Done."):
            out = await agent.step({"action_text": action})
            print(action, out["rewards"], out["extra_logs"], out["done"])

    asyncio.run(demo())
