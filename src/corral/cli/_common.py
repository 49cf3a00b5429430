"""Options and loaders shared by several commands."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from corral.cli._app import fail
from corral.errors import PolicyError

if TYPE_CHECKING:
    from corral.policy import Policy


def load_policy(path: Path | None) -> Policy:
    """The policy at ``path``, or the embedded default; a bad policy exits before anything starts."""
    from corral.policy import Policy

    try:
        return Policy.default() if path is None else Policy.load(path)
    except PolicyError as exc:
        fail(exc)
