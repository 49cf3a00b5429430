"""Fixtures for collector tests (helpers live in monitor_cgroups.py)."""

from monitor_cgroups import make_scope

__all__ = ["make_scope"]
