"""A call's command as given (a shell string or an argv list), and what running it produced."""

from __future__ import annotations

import shlex
import uuid
from dataclasses import dataclass

from corral.errors import InputError
from corral.sandbox._callio import RawOutcome
from corral.sandbox._scope import CallScope


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def normalize_command(command: object) -> tuple[list[str], str]:
    """argv to run and its display text. A string runs under ``/bin/sh -c``."""
    if isinstance(command, str):
        if not command.strip():
            raise InputError("command is empty")
        if "\x00" in command:
            raise InputError("command contains a NUL byte")
        return ["/bin/sh", "-c", command], command
    if isinstance(command, (list, tuple)) and command and all(isinstance(a, str) for a in command):
        if any("\x00" in a for a in command):
            raise InputError("command contains a NUL byte")
        return list(command), shlex.join(command)
    raise InputError(f"command must be a non-empty string or list of strings, got {type(command).__name__}")


@dataclass(frozen=True)
class CallOutcome:
    scope: CallScope
    raw: RawOutcome
    command_text: str
    lingering: bool = False  # episode mode: processes of the call still run
