"""The public surface of ``corral.egress`` is pinned: changing it is a deliberate act."""

from __future__ import annotations

import inspect

import corral.egress as egress


def test_public_names() -> None:
    assert sorted(egress.__all__) == [
        "ALWAYS_DENIED",
        "ALWAYS_DENIED_NAMES",
        "Egress",
        "NetworkAttachment",
        "Rules",
        "Verdict",
    ]
    for name in egress.__all__:
        assert getattr(egress, name) is not None


def test_sandbox_facing_signatures() -> None:
    start = inspect.signature(egress.Egress.start)
    assert list(start.parameters)[:3] == ["policy", "emit", "host"]
    assert start.parameters["host"].kind is inspect.Parameter.KEYWORD_ONLY
    assert list(inspect.signature(egress.Egress.attach).parameters) == ["self", "sandbox_id"]
    for method in ("begin_call", "end_call", "check", "close"):
        assert callable(getattr(egress.NetworkAttachment, method))
