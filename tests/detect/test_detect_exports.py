"""The signatures other layers call in corral.detect (its names are pinned by tests/test_public_api.py)."""

from __future__ import annotations

import inspect

import corral.detect as detect


def test_detector_signatures() -> None:
    sig = inspect.signature(detect.Detector.inspect_command)
    assert list(sig.parameters) == ["self", "command", "ctx", "sandbox_id", "language"]
    assert sig.parameters["ctx"].kind is inspect.Parameter.KEYWORD_ONLY
    assert list(inspect.signature(detect.Detector.observe).parameters) == ["self", "event"]
    assert list(inspect.signature(detect.Detector.from_policy).parameters) == ["policy"]
    assert list(inspect.signature(detect.verdict_for).parameters) == ["level", "section"]
