"""custom_reward_function.path: verl's default score minus the trajectory's Corral penalty."""

from verl.utils.reward_score import default_compute_score

from corral.integrations.verl import penalized

compute_score = penalized(default_compute_score)
