"""The ``corral`` command: a thin typer layer over the library.

Each command group lives in its own module and registers itself on ``app``.
"""

from __future__ import annotations

from corral.cli._app import app
from corral.cli import _correlate, _demo, _events, _firewall, _policy, _redteam, _run, _scan, _serve  # noqa: F401  (registers commands)


def main() -> None:
    app()


__all__ = ["app", "main"]
