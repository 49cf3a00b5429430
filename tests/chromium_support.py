"""Rendering a page in real headless Chromium, for the tests of every HTML report.

Imported as ``chromium_support`` (the tests folder is on sys.path through its conftest).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Flags for a closed network: without the background-networking ones Chromium dials out at start.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--hide-scrollbars",
)


@dataclass(frozen=True)
class Rendered:
    returncode: int
    stdout: str  # the DOM, when asked for
    stderr: str

    @property
    def console(self) -> list[str]:
        """Console messages the page logged (errors included)."""
        return [ln for ln in self.stderr.splitlines() if ":CONSOLE" in ln]


def chromium(html_file: Path, tmp: Path, *extra: str) -> Rendered:
    assert CHROMIUM, "chromium is required (apt package 'chromium'; listed in ./dev)"
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp / 'chromium-profile'}", *extra, html_file.as_uri()]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)
    return Rendered(p.returncode, p.stdout, p.stderr)


def screenshot(html_file: Path, tmp: Path, *, size: str = "1400,2000") -> tuple[Path, Rendered]:
    shot = tmp / (html_file.stem + ".png")
    r = chromium(html_file, tmp, f"--screenshot={shot}", f"--window-size={size}")
    return shot, r
