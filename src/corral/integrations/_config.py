"""A Guard named by configuration, for frameworks that build adapters from YAML or in worker processes.

verl builds tools from a tool config, ROLL/GEM envs from ``env_config``, TRL's async
trainer pickles the environment factory into a child process: none of them can hand
over a live Guard. They hand over a ``GuardConfig``; ``shared_guard`` gives every
adapter of one process with the same config the same Guard (one Harness, one
breaker, rules compiled once), and a forked or spawned worker its own.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from corral.errors import InputError
from corral.integrations._guard import Guard
from corral.policy import Policy


class GuardConfig(BaseModel):
    """What a framework's config says about Corral. Unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    policy: str | None = None  # a policy file; None: the embedded default
    run_id: str | None = None
    store: str | None = "default"  # an event store path; "default": $CORRAL_HOME/events.db; None: nowhere

    @field_validator("policy", "store")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        """Paths as of now: a worker that later changes directory still means the same file."""
        if value is None or value == "default":
            return value
        return str(Path(value).expanduser().resolve())

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, where: str) -> GuardConfig:
        """Validate the Corral keys of a framework config; errors name ``where`` and the key."""
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '?'}: {e['msg']}" for e in exc.errors())
            raise InputError(f"{where}: {problems}") from None


_guards: dict[tuple[int, GuardConfig], Guard] = {}
_lock = threading.Lock()


def shared_guard(config: GuardConfig) -> Guard:
    """The Guard of this process for ``config`` (made on first use, closed at exit)."""
    key = (os.getpid(), config)
    with _lock:
        guard = _guards.get(key)
        if guard is None:
            policy = Policy.load(config.policy) if config.policy else Policy.default()
            guard = _guards[key] = Guard(policy, run_id=config.run_id, store=config.store)
        return guard


@atexit.register
def _close_all() -> None:
    with _lock:
        mine = [g for (pid, _), g in _guards.items() if pid == os.getpid()]
        _guards.clear()
    for g in mine:
        g.close()
