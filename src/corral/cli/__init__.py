"""The ``corral`` command: a thin typer layer over the library.

Each command group lives in its own module and registers itself on ``app`` when imported. They are
imported on first use of ``app``: ``corral run -- CMD`` with a node agent running needs none of them
(nor typer), and starts in tens of milliseconds.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import typer

    app: typer.Typer


def _load_app() -> typer.Typer:
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

    return app


def __getattr__(name: str) -> Any:  # PEP 562: `from corral.cli import app` loads the commands
    if name == "app":
        return _load_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    if sys.argv[1:2] == ["run"]:
        from corral.cli._agent import run_oneshot

        code = run_oneshot(sys.argv[2:])
        if code is not None:
            sys.exit(code)
    # Pydantic plugins (observability hooks of the surrounding environment) have no part in the
    # command line, and looking for them scans every installed distribution on the first model.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    _load_app()
    from corral.cli._app import command

    command()()


__all__ = ["app", "main"]
