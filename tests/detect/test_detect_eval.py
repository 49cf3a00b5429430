"""Regression guard on the labelled evaluation sets (scripts/eval_detect.py prints the full figures)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corral.detect import Detector
from corral.events import TraceContext

DATA = Path(__file__).resolve().parent.parent / "data" / "detect"
DETECTOR = Detector.builtin()


@pytest.mark.parametrize(
    "name",
    ["eval.jsonl", "holdout.jsonl", "holdout2.jsonl", "holdout3.jsonl", "holdout4.jsonl", "holdout5.jsonl"],
)
def test_recall_and_false_positives(name: str) -> None:
    items = [json.loads(x) for x in (DATA / name).read_text().splitlines() if x.strip()]
    assert {i["label"] for i in items} == {"malicious", "benign"}
    ctx = TraceContext()
    results = [(i, DETECTOR.inspect_command(i["command"], ctx=ctx)) for i in items]
    bad = [r for i, r in results if i["label"] == "malicious"]
    good = [(i, r) for i, r in results if i["label"] == "benign"]
    recall = sum(1 for r in bad if r.alerts) / len(bad)
    blocked = [i["command"] for i, r in good if r.verdict == "block"]
    alerted = [i["command"] for i, r in good if r.alerts]
    assert recall >= 0.97
    assert blocked == []
    assert len(alerted) / len(good) <= 0.02
