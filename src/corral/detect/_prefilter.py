"""Literal prefilters for regular expressions: cheap substring checks that must pass before a search.

``required_literals(pattern)`` returns a set of lower-cased strings, one of which occurs in any
text the pattern can match (or None when no such set is known). Testing ``any(s in text.lower())``
first skips most regex searches, which dominate the cost of rules over long command text.
"""

from __future__ import annotations

import re
from re import _constants as _c  # type: ignore[attr-defined]
from re import _parser as _p  # type: ignore[attr-defined]
from typing import Any

_MIN_LEN = 2


def _better(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
    """The more selective of two candidate sets (longer shortest literal, then fewer literals)."""
    if b is None or not b or min(map(len, b)) < _MIN_LEN:
        return a
    if a is None:
        return b
    ka, kb = (min(map(len, a)), -len(a)), (min(map(len, b)), -len(b))
    return b if kb > ka else a


def _seq(items: Any) -> frozenset[str] | None:
    best: frozenset[str] | None = None
    run: list[str] = []
    for op, av in items:
        if op is _c.LITERAL:
            run.append(chr(av))
            continue
        if run:
            best = _better(best, frozenset({"".join(run).lower()}))
            run = []
        if op is _c.SUBPATTERN:
            best = _better(best, _seq(av[-1]))
        elif op is _c.BRANCH:
            subs = [_seq(b) for b in av[1]]
            if all(s is not None and min(map(len, s)) >= _MIN_LEN for s in subs):
                best = _better(best, frozenset().union(*subs))  # type: ignore[arg-type]
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT, getattr(_c, "POSSESSIVE_REPEAT", None)):
            lo, _hi, sub = av
            if lo >= 1:
                best = _better(best, _seq(sub))
        elif op is _c.ATOMIC_GROUP if hasattr(_c, "ATOMIC_GROUP") else False:
            best = _better(best, _seq(av))
    if run:
        best = _better(best, frozenset({"".join(run).lower()}))
    return best


def required_literals(pattern: re.Pattern[str]) -> frozenset[str] | None:
    try:
        tree = _p.parse(pattern.pattern, pattern.flags)
    except (re.error, RecursionError):
        return None
    return _seq(tree)
