"""The public surface is pinned: every package's ``__all__`` matches tests/data/public_api.json.

Adding or removing a public name is a deliberate change: update the JSON in the same commit.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

PINNED: dict[str, list[str]] = json.loads((Path(__file__).parent / "data" / "public_api.json").read_text())


@pytest.mark.parametrize("module", sorted(PINNED))
def test_exported_members(module: str) -> None:
    mod = importlib.import_module(module)
    exported = sorted(getattr(mod, "__all__", []))
    assert exported == PINNED[module]
    missing = [name for name in exported if not hasattr(mod, name)]
    assert missing == []


def test_design_contract_imports() -> None:
    from corral import Policy, Sandbox, TraceContext  # noqa: F401  (DESIGN.md's contract)
    from corral.ray import SandboxPool  # noqa: F401
