"""``corral demo``: a small RL loop whose agent misbehaves in some episodes, end to end."""

from corral.demo._agent import MISBEHAVIOURS, Misbehaviour
from corral.demo._main import DemoConfig, DemoOutput, print_summary, run_demo

__all__ = ["MISBEHAVIOURS", "DemoConfig", "DemoOutput", "Misbehaviour", "print_summary", "run_demo"]
