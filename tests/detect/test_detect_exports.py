"""The public surface of corral.detect (pinned, like httpx's exported-members test)."""

from __future__ import annotations

import inspect

import corral.detect as detect


def test_exported_members() -> None:
    assert sorted(detect.__all__) == sorted(
        [
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
    )
    for name in detect.__all__:
        assert getattr(detect, name) is not None


def test_detector_signatures() -> None:
    sig = inspect.signature(detect.Detector.inspect_command)
    assert list(sig.parameters) == ["self", "command", "ctx", "sandbox_id", "language"]
    assert sig.parameters["ctx"].kind is inspect.Parameter.KEYWORD_ONLY
    assert list(inspect.signature(detect.Detector.observe).parameters) == ["self", "event"]
    assert list(inspect.signature(detect.Detector.from_policy).parameters) == ["policy"]
    assert list(inspect.signature(detect.verdict_for).parameters) == ["level", "section"]
