"""SkyRL: register the Corral text environment in your job's entry point, then name it in the config.

    uv run --isolated --extra fsdp -m your_package.entrypoint \
        environment.env_class=corral_bash generator.max_turns=8 ...

Register in every process that builds environments (SkyRL's entry point task runs this module).
Subclass CorralTextEnv for the task's own reward and pass entry_point="your_package.env:TaskEnv".
"""

from corral.integrations.skyrl import register_env

ENV_CLASS = "corral_bash"  # environment.env_class=corral_bash
register_env(ENV_CLASS, policy="policy.yaml", run_id="my-run", timeout_s=30)
