"""The help a new user meets: every option says what it does, and flags show as flags."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from typer.core import TyperOption

from corral.cli._app import command

CORRAL = [sys.executable, "-c", "from corral.cli import main; main()"]


def _commands(cmd: Any, path: tuple[str, ...] = ("corral",)) -> list[tuple[tuple[str, ...], Any]]:
    out = [(path, cmd)]
    for name, sub in (getattr(cmd, "commands", None) or {}).items():
        out += _commands(sub, (*path, name))
    return out


def test_every_option_of_every_command_has_a_description() -> None:
    import corral.cli

    corral.cli._load_app()
    missing = [
        f"{' '.join(path)} {p.opts[0]}"
        for path, cmd in _commands(command())
        for p in cmd.params
        if isinstance(p, TyperOption) and not p.hidden and not (p.help or "").strip()
    ]
    assert missing == []


@pytest.mark.parametrize("args", [[], ["run"], ["events"], ["image", "ls"], ["policy", "check"], ["demo"]])
def test_help_shows_flags_without_a_value(args: list[str]) -> None:
    env = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}
    out = subprocess.run([*CORRAL, *args, "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "--help" in out.stdout and "Show this message and exit." in out.stdout
    assert "<bool>" not in out.stdout  # typer's type label for a flag, as if it took a value
    help_line = next(line for line in out.stdout.splitlines() if "--help" in line)
    assert help_line.split("--help", 1)[1].split("Show", 1)[0].strip() == ""
