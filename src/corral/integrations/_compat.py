"""Using a framework's base class when it is installed, without requiring it."""

from __future__ import annotations

import importlib
from typing import Any


def optional_base(module: str, name: str) -> Any:
    """``module.name`` when importable, else ``object`` (the adapter's own contract still holds)."""
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError:
        return object
