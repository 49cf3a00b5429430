"""The public surface of ``corral.correlate`` and ``corral.report``: pinned, importable, documented."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from types import ModuleType

import pytest

import corral.correlate
import corral.report

PINNED = json.loads((Path(__file__).parents[1] / "data" / "public_api.json").read_text())


@pytest.mark.parametrize("module", [corral.correlate, corral.report], ids=lambda m: m.__name__)
def test_public_names_are_pinned_and_documented(module: ModuleType) -> None:
    names = sorted(module.__all__)
    assert names == PINNED[module.__name__]
    for name in names:
        obj = getattr(module, name)
        assert obj is not None
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"{name} has no docstring"
