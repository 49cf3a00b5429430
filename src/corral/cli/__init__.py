"""The ``corral`` command: a thin typer layer over the library.

Each command group lives in its own module and registers itself on ``app`` when imported.
"""

from __future__ import annotations

from corral.cli import (  # noqa: F401  (importing a command module registers its commands)
    _correlate,
    _demo,
    _events,
    _firewall,
    _image,
    _policy,
    _redteam,
    _rules,
    _run,
    _scan,
    _serve,
    _watch,
)
from corral.cli._app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
