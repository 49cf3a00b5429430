"""``corral demo``: a small RL loop whose agent misbehaves, end to end.

Every run has the incident's two acts at fixed episodes (a reverse SSH tunnel and a
miner left running in the background) and other misbehaviours at random. The node
firewall's log is written as attempts happen and a ``Watcher`` follows it: each
attribution is shown live, the guilty episode is quarantined, and a burst trips the
circuit breaker that halts the run. The report opens with the incident's story.
"""

from corral.demo._agent import ACTS, MISBEHAVIOURS, Act, Misbehaviour, act_episodes
from corral.demo._main import DEMO_SETTINGS, DemoConfig, DemoOutput, demo_policy, run_demo
from corral.demo._summary import next_commands, print_summary

__all__ = [
    "ACTS",
    "DEMO_SETTINGS",
    "MISBEHAVIOURS",
    "Act",
    "DemoConfig",
    "DemoOutput",
    "Misbehaviour",
    "act_episodes",
    "demo_policy",
    "next_commands",
    "print_summary",
    "run_demo",
]
