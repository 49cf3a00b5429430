"""Running skopeo and umoci: each failure becomes an ImageError naming the reference and what to do."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence

from corral.errors import ImageError

INSTALL_HINT = "install it (apt-get install {tool}, or ./dev setup)"
_MSG = re.compile(r'msg="((?:[^"\\]|\\.)*)"')
_DIGEST_WORDS = ("digest did not match", "does not match digest", "unexpected digest", "digest mismatch")


def tool_path(tool: str, ref: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise ImageError(f"{ref}: {tool} is not installed; {INSTALL_HINT.format(tool=tool)}")
    return path


def run_tool(
    tool: str,
    args: Sequence[str],
    *,
    ref: str,
    what: str,
    hint: str,
    timeout_s: float,
    pass_fds: Sequence[int] = (),
) -> bytes:
    """Run ``tool args``; return stdout, or raise an ImageError with its own message and ``hint``."""
    exe = tool_path(tool, ref)
    try:
        proc = subprocess.run(
            [exe, *args],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout_s,
            pass_fds=tuple(pass_fds),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ImageError(f"{ref}: {what} took longer than {timeout_s:.0f} s; {hint}") from None
    if proc.returncode != 0:
        message = tool_message(proc.stderr.decode("utf-8", "replace")) or f"{tool} exited {proc.returncode}"
        if any(w in message.lower() for w in _DIGEST_WORDS):
            hint = "its content does not match its digest (a corrupt or tampered blob); fetch it again"
        raise ImageError(f"{ref}: {what} failed: {message}; {hint}")
    return proc.stdout


def tool_message(stderr: str) -> str:
    """The useful part of a Go tool's stderr: logrus's msg="...", umoci's "⨯ ..." line, or the last line."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for line in reversed(lines):
        m = _MSG.search(line)
        if m:
            return m.group(1).replace('\\"', '"')
        if line.startswith("⨯"):
            return line.removeprefix("⨯").strip()
    return lines[-1][:500] if lines else ""
