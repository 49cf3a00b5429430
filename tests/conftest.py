"""Shared fixtures. Tests run as root against the real kernel (bubblewrap, cgroups, namespaces)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _corral_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Keep event stores of the test run out of the real ~/.corral.
    os.environ["CORRAL_HOME"] = str(tmp_path_factory.mktemp("corral-home"))
