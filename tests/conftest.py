"""Shared fixtures. Tests run as root against the real kernel (bubblewrap, cgroups, namespaces)."""

from __future__ import annotations

import os
import signal

import pytest


@pytest.fixture(autouse=True, scope="session")
def _corral_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Keep event stores of the test run out of the real ~/.corral.
    os.environ["CORRAL_HOME"] = str(tmp_path_factory.mktemp("corral-home"))


def pytest_configure(config: pytest.Config) -> None:
    # A suite started as a background job of a non-interactive shell (nohup ... &) inherits SIGINT
    # ignored, and so would every CLI child it starts: the tests that interrupt one (as Ctrl-C
    # does) would wait for it in vain. Give the run, and so its children, the default disposition.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
