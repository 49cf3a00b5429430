"""Loading the ``corral`` app (all that ``--help`` needs) imports none of the library layers.

The command modules import the layers inside the commands; a layer imported at module level again
would make every ``corral ... --help`` pay for it (pyroute2, pydantic models, rule compilers).
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY_LAYERS = (
    "corral.policy",
    "corral.events",
    "corral.images",
    "corral.sandbox",
    "corral.egress",
    "corral.monitor",
    "corral.detect",
    "corral.respond",
    "corral.harness",
    "corral.correlate",
    "corral.report",
    "corral.integrations",
    "corral.redteam",
    "corral.demo",
)
HEAVY_PACKAGES = (
    "pyroute2",
    "pydantic",
    "pydantic_core",
    "yaml",
    "re2",
    "sigma",
    "fastapi",
    "pyarrow",
    "rich",
)

_PROBE = "import json, sys; from corral.cli import app; print(json.dumps(sorted(sys.modules)))"


def _modules_after_loading_the_app() -> list[str]:
    # A fresh interpreter (PYTHONPATH and the rest from the environment): this one has loaded more.
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    modules: list[str] = json.loads(out)
    return modules


def test_loading_the_app_imports_no_library_layer() -> None:
    modules = _modules_after_loading_the_app()
    assert "corral.cli._events" in modules and "corral.errors" in modules  # the probe did load the app
    layers = [m for m in modules if m.startswith(tuple(f"{layer}." for layer in HEAVY_LAYERS))]
    layers += [m for m in modules if m in HEAVY_LAYERS]
    assert layers == []
    packages = sorted({m.split(".")[0] for m in modules} & set(HEAVY_PACKAGES))
    assert packages == []


def test_spelled_out_constants_match_the_library() -> None:
    # Help texts and option defaults that name library values without importing the library.
    from corral.cli import app  # noqa: F401  (first: the command modules load in the app's order)
    from corral.cli._agent import DEFAULT_SOCKET
    from corral.cli._events import EXPORT_FORMATS as EVENTS_EXPORT_FORMATS
    from corral.cli._firewall import DEFAULT_BASE as FIREWALL_DEFAULT_BASE
    from corral.cli._firewall import FORMATS as FIREWALL_FORMATS
    from corral.cli._serve import DEFAULT_SOCKET as SERVE_DEFAULT_SOCKET
    from corral.egress._export import FORMATS
    from corral.egress._netns import DEFAULT_BASE
    from corral.events import EXPORT_FORMATS

    assert FIREWALL_FORMATS == FORMATS
    assert FIREWALL_DEFAULT_BASE == DEFAULT_BASE
    assert EVENTS_EXPORT_FORMATS == EXPORT_FORMATS
    assert SERVE_DEFAULT_SOCKET == DEFAULT_SOCKET
