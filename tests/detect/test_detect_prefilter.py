"""Literal prefilters: the literals a regex needs, and the one-pass gate over several regexes."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.detect._prefilter import LiteralGate, normalized, required_literals

# (pattern, literals without spaces mode, literals with spaces mode); None: no literal is required
CASES: list[tuple[str, set[str] | None, set[str] | None]] = [
    ("abc", {"abc"}, {"abc"}),
    ("(?i)ABC", {"abc"}, {"abc"}),
    ("a?b", None, None),
    # the parser factors 'n' out of nc|ncat|netcat; the run spells it back
    (r"(^|\|)(nc|ncat|netcat)\|", {"nc|", "ncat|", "netcat|"}, {"nc|", "ncat|", "netcat|"}),
    (r"tcp[46]?-l", {"tcp-l", "tcp4-l", "tcp6-l"}, {"tcp-l", "tcp4-l", "tcp6-l"}),
    (r"[ab]{2}x", {"ax", "bx"}, {"ax", "bx"}),
    (r"/[?*]{2,}", {"/?", "/*"}, {"/?", "/*"}),
    (r"\bsh\s+-p\b", {"sh"}, {"sh -p"}),
    (r"[\w:.]+\s*\(\)\s*\{", {"()"}, {"(){", "() {"}),
    (r"a \s+b", {"a "}, {"a b"}),
    (r"\d+", None, None),
]


@pytest.mark.parametrize(("pattern", "plain", "spaced"), CASES)
def test_required_literals(pattern: str, plain: set[str] | None, spaced: set[str] | None) -> None:
    rx = re.compile(pattern)
    assert required_literals(rx) == (frozenset(plain) if plain else None)
    assert required_literals(rx, spaces=True) == (frozenset(spaced) if spaced else None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [(" a  b\t", " a b "), ("\t", " "), ("A\u2003\u2003B", "a b"), ("ſH ıD", "sh id"), ("İd", "id")],
)
def test_normalized(text: str, expected: str) -> None:
    assert normalized(text) == expected


PATTERNS = [
    r"\bnc\s+-e\s+/bin/(ba)?sh",
    r"(?i)(curl|wget)\s.*\|\s*(ba)?sh\b",
    r"(^|[\s;&|(`])/[?*]{2,}[a-z?*]*/",
    r"(?i)\bsh\s+-p\b",
    r"base64\s+(-d|--decode)",
]
PIECES = [*"ncbashsheurlwgt-/| \t\n\u2003ſıİdeo?*;&(`64", "nc -e /bin/sh", "curl x | sh"]
ALPHABET = st.sampled_from(PIECES)


@settings(max_examples=400, deadline=None)
@given(st.lists(ALPHABET, max_size=30).map("".join))
def test_a_match_always_shows_its_literals(text: str) -> None:
    for pattern in PATTERNS:
        rx = re.compile(pattern)
        if rx.search(text) is None:
            continue
        spaced = required_literals(rx, spaces=True)
        assert spaced is None or any(lit in normalized(text) for lit in spaced), pattern
        plain = required_literals(rx)
        if text.isascii():
            assert plain is None or any(lit in text.lower() for lit in plain), pattern


def test_gate_names_only_patterns_whose_literals_occur() -> None:
    gate = LiteralGate({"dev": re.compile(r"/dev/(tcp|udp)/"), "digits": re.compile(r"\d{4}")})
    assert gate.possible("cat /dev/tcp/host/1") == {"dev", "digits"}  # digits has no literal: always
    assert gate.possible("ls -la") == {"digits"}
    assert gate.possible("cat /DEV/TCP/x") >= {"dev"}  # case never hides a literal
