"""OpenRLHF agent file: pass it as --train.agent_func_path (OpenRLHF takes ``AgentExecutor`` from it).

    ray job submit ... -- python3 -m openrlhf.cli.train_ppo_ray \
        --train.agent_func_path examples/integrations/openrlhf/agent_func.py ...

Each sample runs in its own sandbox; rewards carry minus the safety penalty; extra_logs carry
corral/penalty, corral/quarantined, ... (logged by OpenRLHF); the sample's result has "corral".
"""

from corral.integrations.openrlhf import agent_executor

AgentExecutor = agent_executor(policy="policy.yaml", run_id="my-run", timeout_s=30)
