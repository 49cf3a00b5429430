"""Finding the command in a model's text action, shared by the text-environment adapters."""

from __future__ import annotations

import re
from collections.abc import Callable

CommandParser = Callable[[str], str | None]

_PATTERNS = (
    re.compile(r"<bash>(.*?)</bash>", re.S),
    re.compile(r"```(?:bash|sh|shell)\n(.*?)```", re.S),
)


def extract_command(text: str) -> str | None:
    """The command in ``<bash>...</bash>`` or a ```bash fence; None when the action holds no tool call."""
    for pat in _PATTERNS:
        m = pat.search(text)
        if m:
            cmd = m.group(1).strip()
            return cmd or None
    return None
