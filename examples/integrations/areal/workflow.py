"""AReaL: wrap your tool-using RolloutWorkflow; its tools run commands in the trajectory's sandbox.

    workflow = CorralWorkflow(MyToolWorkflow(...), policy="policy.yaml", run_id="my-run")
    # hand `workflow` to AReaL's rollout (e.g. rollout.submit(data, workflow=workflow))

Inside MyToolWorkflow.arun_episode, run each tool call with:

    report = await current_episode().run(command, timeout=30)
    observation = report.observation          # append it to the model's context

A quarantined trajectory comes back as None (AReaL drops it); otherwise the penalty is taken off
result["rewards"].
"""

from corral.integrations.areal import CorralWorkflow, current_episode

__all__ = ["CorralWorkflow", "current_episode"]
