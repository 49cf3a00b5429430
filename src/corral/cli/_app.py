"""The root typer app and helpers shared by command modules.

The command modules import only the standard library, typer, corral.errors and each other at module
level; the library layers, and rich, load inside the commands, so ``--help`` and a command that
prints plain lines do not pay for them (tests/cli/test_cli_imports.py holds them to it).
"""

from __future__ import annotations

import functools
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from corral.errors import CorralError

if TYPE_CHECKING:
    from rich.console import Console

app = typer.Typer(
    name="corral",
    help="Corral: sandboxed tool calls, default-deny egress and trace-attributed detection for RL agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def command() -> Any:
    """The app as the click command it runs as, with every flag (``--help`` too) shown as taking no
    value: typer prints a flag's type, ``<bool>``, as if it took one."""
    from typer.core import TyperOption

    root = typer.main.get_command(app)

    def visit(cmd: Any) -> None:
        for p in cmd.params:
            if isinstance(p, TyperOption) and p.is_flag and p.metavar is None:
                p.metavar = ""
        find_help = cmd.get_help_option

        def help_option(ctx: Any) -> Any:
            opt = find_help(ctx)
            if opt is not None and opt.metavar is None:
                opt.metavar = ""
            return opt

        cmd.get_help_option = help_option
        for sub in (getattr(cmd, "commands", None) or {}).values():
            visit(sub)

    visit(root)
    return root


@functools.cache
def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def fail(exc: CorralError | str, code: int = 2) -> NoReturn:
    """Print a harness error to stderr and exit non-zero (never mixed into a tool's output)."""
    # Escaped: the text quotes user data (a policy key, a path), which must never be read as markup.
    from rich.markup import escape

    text = escape(str(exc))
    err_console().print(f"[bold red]corral:[/] {text}", markup=True, highlight=False)
    sys.exit(code)


def missing_extra(extra: str, command: str, exc: ModuleNotFoundError) -> NoReturn:
    """A command whose optional dependencies are not installed: say which extra brings them."""
    fail(f"`corral {command}` needs {exc.name}, from the {extra} extra: pip install 'corral[{extra}]'")
