"""TRL: GRPOTrainer (or AsyncGRPOTrainer) with Corral's environment factory.

    python examples/integrations/trl/train.py   # needs a GPU, a model and TRL's own dependencies

TRL exposes the environment's one public tool, ``bash``; ``get_reward`` adds minus the safety penalty
to the task's reward functions.
"""

from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from corral.integrations.trl import CorralEnvironmentFactory

factory = CorralEnvironmentFactory(policy="policy.yaml", run_id="my-run", timeout_s=30)


def solved(completions, environments, **kwargs):  # the task's reward, next to Corral's
    return [float("PASSED" in str(c)) for c in completions]


if __name__ == "__main__":
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": "Make the tests in /work pass."}]}])
    trainer = GRPOTrainer(
        model="Qwen/Qwen3-0.6B",
        args=GRPOConfig(output_dir="out", max_completion_length=1024),
        train_dataset=data,
        reward_funcs=[solved],
        environment_factory=factory,
    )
    trainer.train()
