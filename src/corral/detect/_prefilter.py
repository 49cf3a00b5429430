"""Literal prefilters for regular expressions: cheap substring checks that must pass before a search.

``required_literals(pattern)`` returns a set of lower-cased strings, one of which occurs in any
text the pattern can match (or None when no such set is known). Testing ``any(s in text.lower())``
first skips most regex searches, which dominate the cost of rules over long command text.

Runs of the pattern that can match only a few exact texts (literals, small character classes,
alternations of those, ``x?``) are spelt out, so ``(nc|ncat)\\|`` gives ``nc|`` and ``ncat|``
even where the parser has factored out a common prefix; zero-width assertions keep a run going.
With ``spaces=True`` every run of whitespace counts as one space (``\\s``, ``\\s+`` are ``" "``,
``\\s*`` is ``""`` or ``" "``): such literals are looked for in text passed through ``normalized``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from re import _constants as _c  # type: ignore[attr-defined]
from re import _parser as _p  # type: ignore[attr-defined]
from typing import Any

import ahocorasick  # type: ignore[import-not-found]  # pyahocorasick: a C extension without stubs

_MIN_LEN = 2
_MAX_SET = 64  # spelt-out runs with more texts than this are cut short
_MAX_CLASS = 8
# Characters ``re.IGNORECASE`` equates with an ASCII letter that ``str.lower`` does not turn into it
# (dotless i, long s, and the combining dot that lower() leaves after a dotted capital I): folded
# before literals are looked for, so a case-insensitive match always shows its literal.
FOLD = str.maketrans({"\u0131": "i", "\u017f": "s", "\u0307": None})
_SPACE_RUN = re.compile(" {2,}")
_REPEATS = tuple(x for x in (_c.MAX_REPEAT, _c.MIN_REPEAT, getattr(_c, "POSSESSIVE_REPEAT", None)) if x)


def better(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
    """The more selective of two candidate sets (longer shortest literal, then fewer literals)."""
    if b is None or not b or min(map(len, b)) < _MIN_LEN:
        return a
    if a is None:
        return b
    ka, kb = (min(map(len, a)), -len(a)), (min(map(len, b)), -len(b))
    return b if kb > ka else a


def _minimal(texts: set[str]) -> frozenset[str]:
    """Drop texts that contain a shorter member: where they occur, that member occurs too."""
    out: list[str] = []
    for t in sorted(texts, key=len):
        if not any(s in t for s in out):
            out.append(t)
    return frozenset(out)


def _cross(a: set[str], b: frozenset[str] | set[str]) -> set[str] | None:
    if len(a) * len(b) > _MAX_SET:
        return None
    return {x + y for x in a for y in b}


def _class(members: Any, spaces: bool) -> frozenset[str] | None:
    out = set()
    for op, av in members:
        if op is _c.LITERAL:
            out.add(" " if spaces and chr(av).isspace() else chr(av))
        elif spaces and op is _c.CATEGORY and av is _c.CATEGORY_SPACE:
            out.add(" ")
        else:
            return None  # ranges, other categories, negation: too many texts
    return frozenset(out) if len(out) <= _MAX_CLASS else None


def _exact(items: Any, spaces: bool = False) -> frozenset[str] | None:
    """Every text ``items`` can match, when that is a small finite set (assertions match '')."""
    out: set[str] = {""}
    for op, av in items:
        if op is _c.LITERAL:
            texts: frozenset[str] | None = frozenset({" " if spaces and chr(av).isspace() else chr(av)})
        elif op is _c.AT:
            continue
        elif op is _c.IN:
            texts = _class(av, spaces)
        elif op is _c.SUBPATTERN:
            texts = _exact(av[-1], spaces)
        elif op is _c.BRANCH:
            alts = [_exact(b, spaces) for b in av[1]]
            texts = None if any(x is None for x in alts) else frozenset().union(*alts)  # type: ignore[arg-type]
        elif op in _REPEATS and spaces and _exact(av[2], spaces) == frozenset({" "}):
            texts = frozenset({" "}) if av[0] >= 1 else frozenset({"", " "})  # a blank run is one space
        elif op in _REPEATS and av[:2] == (0, 1):
            sub = _exact(av[2], spaces)
            texts = None if sub is None else sub | {""}
        else:
            return None
        grown = _cross(out, texts) if texts is not None else None
        if grown is None:
            return None
        out = grown
    return frozenset(out)


def _seq(items: Any, spaces: bool = False) -> frozenset[str] | None:
    best: frozenset[str] | None = None
    run: set[str] = {""}

    def flush(restart: frozenset[str] | None = None) -> None:
        nonlocal best, run
        best = better(best, _minimal(run))
        run = set(restart) if restart is not None else {""}

    for op, av in items:
        exact = _exact([(op, av)], spaces)
        if exact is not None:
            grown = _cross(run, exact)
            if grown is not None:
                run = grown
            else:
                flush(exact)
            continue
        if op in _REPEATS and av[0] >= 1 and (sub := _exact(av[2], spaces)) is not None:
            # at least one copy follows the run; the last copy starts the next run
            grown = _cross(run, sub)
            if grown is not None:
                run = grown
            flush(sub)
            continue
        flush()
        if op is _c.SUBPATTERN:
            best = better(best, _seq(av[-1], spaces))
        elif op is _c.BRANCH:
            subs = [_seq(b, spaces) for b in av[1]]
            if all(s is not None and min(map(len, s)) >= _MIN_LEN for s in subs):
                best = better(best, frozenset().union(*subs))  # type: ignore[arg-type]
        elif op in _REPEATS:
            if av[0] >= 1:
                best = better(best, _seq(av[2], spaces))
        elif op is getattr(_c, "ATOMIC_GROUP", None):
            best = better(best, _seq(av, spaces))
    flush()
    return best


def required_literals(pattern: re.Pattern[str], spaces: bool = False) -> frozenset[str] | None:
    try:
        tree = _p.parse(pattern.pattern, pattern.flags)
    except (re.error, RecursionError):
        return None
    lits = _seq(tree, spaces)
    if not lits:
        return None
    if not spaces:
        return frozenset(x.lower() for x in lits)
    # Collapsing blank runs keeps containment: if S occurs in T, collapsed S occurs in collapsed T.
    out = frozenset(_SPACE_RUN.sub(" ", normalized(x)) for x in lits)
    return out if min(map(len, out)) >= _MIN_LEN else None


def normalized(text: str) -> str:
    """``text`` as ``spaces=True`` literals are looked for in: lower-cased, folded, a blank run one space."""
    text = text.lower()
    if not text.isascii():
        text = text.translate(FOLD)
    out = " ".join(text.split())
    if out != text:  # keep a blank at either end: a literal may start or end with one
        if text[:1].isspace():
            out = " " + out
        if text[-1:].isspace() and out != " ":
            out += " "
    return out


class LiteralGate:
    """Which of several named regexes can match somewhere in a text, from one Aho-Corasick pass.

    ``possible(text)`` is a sound over-approximation: a name is left out only when none of its
    pattern's required literals occurs in ``text`` (so the pattern cannot match any part of it).
    """

    def __init__(self, patterns: Mapping[str, re.Pattern[str]]) -> None:
        always: set[str] = set()
        by_lit: dict[str, set[str]] = {}
        for name, pat in patterns.items():
            lits = required_literals(pat, spaces=True)
            if not lits or not all(x.isascii() for x in lits):
                always.add(name)
                continue
            for lit in lits:
                by_lit.setdefault(lit, set()).add(name)
        self.always = frozenset(always)
        self._auto = ahocorasick.Automaton()
        for lit, names in by_lit.items():
            self._auto.add_word(lit, tuple(sorted(names)))
        if by_lit:
            self._auto.make_automaton()
        self._empty = not by_lit

    def possible(self, text: str) -> set[str]:
        found = set(self.always)
        if not self._empty:
            for _end, names in self._auto.iter(normalized(text)):
                found.update(names)
        return found
