"""File writes, deletions and permission changes implied by a command's name and arguments."""

from __future__ import annotations

import re
from dataclasses import dataclass

_CHMOD_FLAGS = frozenset("RvcfhHLP")  # chmod's own one-letter options; any other "-..." is a mode (-x)
_GRANT = re.compile(r"[ugoa]*\+[rwxXst]+")


@dataclass(frozen=True)
class FileOp:
    path: str
    op: str  # write, append, delete, modify, chmod, permit (a chmod that only grants), link, truncate
    argv: tuple[str, ...]
    contents: str | None = None


def file_ops(name: str, argv: list[str], stdin: str | None) -> list[FileOp]:
    """Files a command writes, deletes or changes, from its name and arguments."""
    operands = [a for a in argv[1:] if not a.startswith("-")]
    me = tuple(argv)
    files: list[FileOp] = []
    if name == "tee":
        for p in operands:
            files.append(FileOp(p, "append" if "-a" in argv else "write", me, stdin))
    elif name in ("cp", "mv", "install", "ln", "rsync", "scp") and len(operands) >= 2:
        if name in ("rsync", "scp") and ":" in operands[-1]:
            return files
        files.append(FileOp(operands[-1], "link" if name == "ln" else "write", me, None))
        if name == "mv":  # the source is gone from where the tests (or logs) expect it
            files.extend(FileOp(p, "delete", me, None) for p in operands[:-1])
    elif name in ("rm", "unlink", "shred", "rmdir", "srm", "wipe"):
        for p in operands:
            files.append(FileOp(p, "delete", me, None))
    elif name == "chmod":
        mode, paths = _chmod_args(argv)
        op = "permit" if mode is not None and _only_grants(mode) else "chmod"
        files.extend(FileOp(p, op, me, None) for p in paths)
    elif name in ("chown", "chgrp", "chattr", "setfacl", "setcap") and len(operands) >= 2:
        for p in operands[1:]:
            files.append(FileOp(p, "chmod", me, None))
    elif name in ("truncate", "touch"):
        for p in operands:
            if not p.isdigit():
                files.append(FileOp(p, "truncate" if name == "truncate" else "touch", me, None))
    elif name == "sed" and any(a.startswith("-i") or a == "--in-place" for a in argv):
        rest = operands if any(a in ("-e", "--expression") for a in argv) else operands[1:]
        for p in rest:
            files.append(FileOp(p, "modify", me, None))
    elif name == "find" and "-delete" in argv:
        for p in argv[1:]:
            if p.startswith(("-", "(", "!")):
                break
            files.append(FileOp(p, "delete", me, None))
    elif name == "dd":
        for a in argv[1:]:
            if a.startswith("of="):
                files.append(FileOp(a[3:], "write", me, None))
    return files


def _chmod_args(argv: list[str]) -> tuple[str | None, list[str]]:
    """chmod's mode (None when taken from ``--reference``) and the paths it changes."""
    mode: str | None = None
    paths: list[str] = []
    reference = False
    for a in argv[1:]:
        if mode is None and not reference:
            if a.startswith("--"):
                reference = a.startswith("--reference")
                continue
            if a.startswith("-") and len(a) > 1 and set(a[1:]) <= _CHMOD_FLAGS:
                continue
            mode = a
            continue
        paths.append(a)
    return mode, paths


def _only_grants(mode: str) -> bool:
    """A mode that takes nothing away: ``+x``/``u+rw,g+r``, or octal that leaves the owner read
    access (``755``, ``644``). Removing access (``-x``, ``000``, ``a=``) is what disables a file."""
    if mode.isdigit() and all(c in "01234567" for c in mode):
        return bool((int(mode, 8) >> 6) & 4)
    return all(_GRANT.fullmatch(clause) for clause in mode.split(","))
