"""Decoders for the encodings agents use to hide commands: base64, hex, printf escapes."""

from __future__ import annotations

import base64
import binascii
import re

_B64_RE = re.compile(r"^[A-Za-z0-9+/=\s_-]+$")
_HEX_RE = re.compile(r"^(?:[0-9a-fA-F]{2}|\\x[0-9a-fA-F]{2}|\s)+$")


def _printable(text: str) -> bool:
    if not text:
        return False
    bad = sum(1 for ch in text if not (ch.isprintable() or ch in "\n\t\r"))
    return bad <= len(text) // 20


def b64(text: str, min_len: int = 8) -> str | None:
    t = "".join(text.split())
    if not _B64_RE.match(t) or len(t) < min_len:
        return None
    t = t.replace("-", "+").replace("_", "/")
    t += "=" * (-len(t) % 4)
    try:
        out = base64.b64decode(t, validate=False).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return out if _printable(out) else None


def unhex(text: str) -> str | None:
    t = text.replace("\\x", "").replace(" ", "").replace("\n", "")
    if not _HEX_RE.match(text) or len(t) % 2:
        return None
    try:
        out = bytes.fromhex(t).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    return out if _printable(out) else None


_PRINTF_ESC = re.compile(r"\\(x[0-9a-fA-F]{1,2}|0?[0-7]{1,3}|[ntr\\])")


def printf_unescape(s: str) -> str:
    def rep(m: re.Match[str]) -> str:
        e = m.group(1)
        if e[0] == "x":
            return chr(int(e[1:], 16))
        if e[0] in "01234567":
            return chr(int(e, 8))
        return {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}[e]

    return _PRINTF_ESC.sub(rep, s)


_CONVERSION = re.compile(r"%(%|[sbd])")


def printf_format(fmt: str, args: list[str]) -> str | None:
    """What ``printf FMT ARGS...`` prints for formats with only %s, %b, %d and %% (the format
    reused while arguments are left, as the shell does); None for any other conversion."""
    if "%" in _CONVERSION.sub("", fmt):
        return None
    slots = sum(1 for m in _CONVERSION.finditer(fmt) if m.group(1) != "%")
    rounds = max(1, -(-len(args) // slots)) if slots else 1
    out, queue = [], list(args)

    for _ in range(rounds):
        at = 0
        for m in _CONVERSION.finditer(fmt):
            out.append(printf_unescape(fmt[at : m.start()]))  # escapes are the format's, not %s's
            if m.group(1) == "%":
                out.append("%")
            else:
                value = queue.pop(0) if queue else ""
                out.append(printf_unescape(value) if m.group(1) == "b" else value)
            at = m.end()
        out.append(printf_unescape(fmt[at:]))
    return "".join(out)
