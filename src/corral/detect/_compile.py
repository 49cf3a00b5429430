"""Matchers: one Python function per log source, built from compiled rule conditions, once per rule set.

Each rule's condition becomes a Python expression over local variables that hold
the event's field values, prepared once per event (lower-cased for Sigma's
case-insensitive matching, raw for ``re``/``cased``/``cidr``). All values taken
from rule files are passed in a constants tuple ``K``, never spliced into the
source, so rule data cannot become code. Rules whose condition requires a
specific program (``Image|endswith: /nc``) are indexed by basename, so an event
only runs the rules that can apply to its program.
"""

from __future__ import annotations

import ipaddress
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import ahocorasick  # type: ignore[import-not-found]  # pyahocorasick: a C extension without stubs
import re2  # type: ignore[import-untyped]  # google-re2, a pySigma dependency

from corral.detect._prefilter import normalized

Matcher = Callable[[Mapping[str, Any]], list[int]]


LONG_TEXT = 2048  # above this, regexes run on RE2 (linear time) so a crafted command cannot stall us


class DualRegex:
    """Python's ``re`` for short texts (cheapest per call), RE2 for long ones (linear time).

    ``lazy``: compiled on first use, for patterns read back from the rule cache (a few hundred
    regexes cost a cold start about 0.4 s, most of them for rules that never see a candidate). A
    cached pattern that no longer compiles raises on use, which inspection reports and blocks.
    """

    __slots__ = ("_py", "_r2", "flags", "pattern")

    def __init__(self, pattern: str, flags: int, *, lazy: bool = False) -> None:
        self.pattern = pattern
        self.flags = flags
        self._py: re.Pattern[str] | None = None
        self._r2: Any = None
        if not lazy:
            self._compile()

    def _compile(self) -> re.Pattern[str]:
        py = re.compile(self.pattern, self.flags)
        inline = "".join(c for f, c in ((re.I, "i"), (re.M, "m"), (re.S, "s")) if self.flags & f)
        try:
            self._r2 = re2.compile(f"(?{inline}){self.pattern}" if inline else self.pattern)
        except Exception:  # RE2 lacks the feature (pySigma already refuses such rules); Python's re it is
            self._r2 = None
        self._py = py
        return py

    def _late(self) -> re.Pattern[str]:
        try:
            return self._compile()
        except re.error as exc:
            raise re.error(f"cached rule pattern {self.pattern!r} does not compile: {exc}") from None

    @property
    def py(self) -> re.Pattern[str]:
        return self._py if self._py is not None else self._late()

    def search(self, s: str) -> Any:
        py = self._py if self._py is not None else self._late()
        if len(s) > LONG_TEXT and self._r2 is not None:
            return self._r2.search(s)
        return py.search(s)

    def fullmatch(self, s: str) -> Any:
        py = self._py if self._py is not None else self._late()
        if len(s) > LONG_TEXT and self._r2 is not None:
            return self._r2.fullmatch(s)
        return py.fullmatch(s)


# Rules whose gates are checked with one Aho-Corasick pass; below this many, testing them is cheaper.
_MIN_GATED = 4


def _gate_value(v: Any, multi: bool) -> str:
    """A field value as its gate text holds it: lower-cased (multi-valued: each value, between marks)."""
    if multi and isinstance(v, list | tuple):
        try:
            return "\0".join(v)
        except TypeError:
            return "\0".join(low(x) for x in v)
    return low(v)


def _candidates(
    gates: Mapping[int, frozenset[tuple[str, str]]], fields: list[str], multi: frozenset[str]
) -> Callable[[tuple[Any, ...]], set[int]]:
    """Rules one of whose gate literals occurs in the fields' gate text, from one Aho-Corasick pass.

    The text is every field's value between marks (``\\0``), lower-cased and normalized; a literal
    found in another field than its own only makes a rule a candidate needlessly, never the reverse.
    """
    by_lit: dict[str, list[int]] = {}
    for rule, pairs in gates.items():
        for _f, lit in pairs:
            by_lit.setdefault(lit, []).append(rule)
    auto = ahocorasick.Automaton()
    for lit, rules in by_lit.items():
        auto.add_word(lit, tuple(rules))
    auto.make_automaton()
    scan = auto.iter
    many = tuple(f in multi for f in fields)

    def cands(values: tuple[Any, ...]) -> set[int]:
        texts = [v if v.__class__ is str else _gate_value(v, m) for v, m in zip(values, many, strict=True)]
        found: set[int] = set()
        for _end, rules in scan(normalized("\0" + "\0".join(texts) + "\0")):
            found.update(rules)
        return found

    return cands


def _gate_data(d: Any) -> frozenset[tuple[str, str]] | None:
    """A gate as the on-disk cache stores it, validated (a non-empty list of [field, literal])."""
    if d is None:
        return None
    ok = isinstance(d, list) and d and all(isinstance(x, list) and len(x) == 2 for x in d)
    if not ok or not all(isinstance(v, str) and v for x in d for v in x):
        raise ValueError("bad rule gate")
    return frozenset((f, lit) for f, lit in d)


class Unsupported(Exception):
    """A rule feature Corral cannot evaluate; the message is the reason shown in the load report."""


def low(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v.lower()
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list | tuple):
        return " ".join(str(x) for x in v).lower()
    return str(v).lower()


def raw(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list | tuple):
        return " ".join(str(x) for x in v)
    return str(v)


def lows(v: Any) -> tuple[str, ...]:
    if v is None:
        return ()
    if isinstance(v, list | tuple):
        return tuple(low(x) for x in v)
    return (low(v),)


def raws(v: Any) -> tuple[str, ...]:
    if v is None:
        return ()
    if isinstance(v, list | tuple):
        return tuple(raw(x) for x in v)
    return (raw(v),)


@lru_cache(maxsize=65536)
def _ip(s: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(s.strip("[]"))
    except ValueError:
        return None


def cidr(net: ipaddress.IPv4Network | ipaddress.IPv6Network, s: str) -> bool:
    ip = _ip(s)
    return ip is not None and ip.version == net.version and ip in net


def cmp(v: Any, op: str, num: float) -> bool:
    """Sigma's lt/lte/gt/gte/neq, ``op`` being the operator's name."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return False
    if op == "LT":
        return x < num
    if op == "LTE":
        return x <= num
    if op == "GT":
        return x > num
    if op == "GTE":
        return x >= num
    return x != num


def anyin(lits: tuple[str, ...], text: str) -> bool:
    for lit in lits:  # noqa: SIM110  (a plain loop is faster than any() over a generator here)
        if lit in text:
            return True
    return False


def bname(v: Any) -> str:
    """Lower-cased basename of a path; a sentinel when there is no ``/`` (so ``endswith('/x')`` holds)."""
    s = low(v)
    i = s.rfind("/")
    return s[i + 1 :] if i >= 0 else "\0"


def keyword_text(rec: Mapping[str, Any]) -> str:
    return "\n".join(low(v) for v in rec.values() if isinstance(v, str | list | tuple)).lower()


_HELPERS: dict[str, Any] = {"cidr": cidr, "cmp": cmp, "low": low, "raw": raw, "lows": lows, "raws": raws}
_HELPERS.update(keyword_text=keyword_text, anyin=anyin, bname=bname)


@dataclass
class Fields:
    """Variables the generated code prepares, per field and form (l: lower, s: raw str, v: value)."""

    multi: frozenset[str]
    canonical: Mapping[str, str]
    used: dict[tuple[str, str], str] = field(default_factory=dict)
    keywords: bool = False

    def var(self, name: str, form: str) -> str:
        name = self.canonical.get(name.lower(), name)
        key = (name, form)
        if key not in self.used:
            self.used[key] = f"{form}{len(self.used)}"
        return self.used[key]

    def is_multi(self, name: str) -> bool:
        return self.canonical.get(name.lower(), name) in self.multi


@dataclass(frozen=True)
class Compiled:
    """One rule's condition as source text, with the program basenames it requires (if any).

    ``gate``: (field, literal) pairs such that the rule can only match when one of the literals
    occurs in that field's gate text (see ``_builder.gate``); None when unknown.
    """

    expr: str
    images: frozenset[str] | None
    gate: frozenset[tuple[str, str]] | None = None


class GroupCompiler:
    """Collects rule conditions for one log source and builds its matcher."""

    def __init__(self, multi: frozenset[str], canonical: Mapping[str, str]) -> None:
        self.fields = Fields(multi, canonical)
        self.consts: list[Any] = []
        self.rules: list[Compiled] = []
        self._lock = threading.Lock()

    def to_data(self, encode: Callable[[Any], Any]) -> dict[str, Any]:
        """The group as data (for the on-disk cache): rule expressions, constants, prepared fields."""
        return {
            "multi": sorted(self.fields.multi),
            "used": [[name, form, var] for (name, form), var in self.fields.used.items()],
            "keywords": self.fields.keywords,
            "consts": [encode(c) for c in self.consts],
            "rules": [
                [
                    r.expr,
                    sorted(r.images) if r.images is not None else None,
                    sorted([f, lit] for f, lit in r.gate) if r.gate is not None else None,
                ]
                for r in self.rules
            ],
        }

    @classmethod
    def from_data(
        cls,
        data: Mapping[str, Any],
        canonical: Mapping[str, str],
        decode: Callable[[Any], Any],
        check: Callable[[str, int], None],
    ) -> GroupCompiler:
        """Rebuild from ``to_data``; every expression passes ``check`` before it is compiled."""
        g = cls(frozenset(data["multi"]), canonical)
        g.consts = [decode(c) for c in data["consts"]]
        for name, form, var in data["used"]:
            if not (isinstance(name, str) and form in ("l", "s", "v", "b") and var == f"{form}{var[1:]}"):
                raise ValueError("bad field variable")
            if not var[1:].isdigit():
                raise ValueError("bad field variable")
            g.fields.used[(name, form)] = var
        g.fields.keywords = bool(data["keywords"])
        for expr, images, gate in data["rules"]:
            check(expr, len(g.consts))
            imgs = frozenset(images) if images is not None else None
            g.rules.append(Compiled(expr, imgs, _gate_data(gate)))
        return g

    def add(self, tree: Any) -> int:
        """Compile one rule's condition; raises ``Unsupported`` and leaves the group unchanged."""
        from corral.detect._builder import Builder, gate, required_images  # pySigma: only when compiling

        saved = (dict(self.fields.used), len(self.consts), self.fields.keywords)
        try:
            expr = Builder(self.fields, self.consts).expr(tree)
        except Unsupported:
            self.fields.used, self.fields.keywords = saved[0], saved[2]
            del self.consts[saved[1] :]
            raise
        self.rules.append(Compiled(expr, required_images(tree), gate(tree, self.fields.canonical)))
        return len(self.rules) - 1

    def build(self) -> Matcher:
        by_image: dict[str, list[int]] = {}
        always: list[int] = []
        for i, r in enumerate(self.rules):
            if r.images is None:
                always.append(i)
            else:
                for name in r.images:
                    by_image.setdefault(name, []).append(i)
        with self._lock:
            base = self._function(always)
        if not by_image:
            return base
        # A program's rules are compiled when a record of that program first comes: most of the
        # hundred-odd programs never appear in a run, and compiling them all was most of a
        # one-shot ``corral scan``.
        indexed: dict[str, Matcher] = {}
        get = indexed.get

        def program_rules(name: str) -> Matcher | None:
            ids = by_image.get(name)
            if ids is None:
                return None
            with self._lock:  # const_name appends to the shared constants
                fn = indexed.get(name)
                if fn is None:
                    fn = indexed[name] = self._function(ids)
            return fn

        def match(rec: Mapping[str, Any]) -> list[int]:
            hits = base(rec)
            image = rec.get("Image")
            if isinstance(image, str) and image:
                name = image.rsplit("/", 1)[-1].lower()
                fn = get(name) or program_rules(name)
                if fn is not None:
                    hits = hits + fn(rec)
            return hits

        return match

    def _function(self, ids: list[int]) -> Matcher:
        if not ids:
            return lambda rec: []
        used_vars = set()
        for i in ids:
            used_vars.update(re.findall(r"\b[lsvb]\d+\b", self.rules[i].expr))
        prep = ["    g = rec.get"]
        for (name, form), var in self.fields.used.items():
            if var not in used_vars:
                continue
            multi = name in self.fields.multi
            fn = {"l": "lows" if multi else "low", "s": "raws" if multi else "raw", "b": "bname"}
            call = f"g({self.const_name(name)})"
            prep.append(f"    {var} = {fn[form]}({call})" if form in fn else f"    {var} = {call}")
        if any("kw" in self.rules[i].expr for i in ids):
            prep.append("    kw = keyword_text(rec)")
        namespace: dict[str, Any] = {**_HELPERS}
        gated = [i for i in ids if self.rules[i].gate is not None]
        # A field that gates fewer than two rules costs more to scan than those rules cost to test.
        uses: dict[str, int] = {}
        for i in gated:
            for f in {f for f, _ in self.rules[i].gate}:  # type: ignore[union-attr]
                uses[f] = uses.get(f, 0) + 1
        gated = [i for i in gated if all(uses[f] >= 2 for f, _ in self.rules[i].gate)]  # type: ignore[union-attr]
        body = []
        if len(gated) >= _MIN_GATED:
            gates = {i: self.rules[i].gate for i in gated}
            fields = sorted({f for g in gates.values() for f, _ in g})  # type: ignore[union-attr]
            namespace["cands"] = _candidates(gates, fields, self.fields.multi)  # type: ignore[arg-type]
            prep.append(f"    c = cands(({', '.join(f'g({self.const_name(name)})' for name in fields)},))")
            body = [
                f"    if {i} in c and {self.rules[i].expr}: hits.append({i})"
                if i in gated
                else f"    if {self.rules[i].expr}: hits.append({i})"
                for i in ids
            ]
        else:
            body = [f"    if {self.rules[i].expr}: hits.append({i})" for i in ids]
        src = "def _match(rec):\n" + "\n".join([*prep, "    hits = []", *body, "    return hits"]) + "\n"
        namespace["K"] = tuple(self.consts)
        exec(compile(src, "<corral-sigma>", "exec"), namespace)  # source built from our own templates only
        matcher: Matcher = namespace["_match"]
        return matcher

    def const_name(self, name: str) -> str:
        self.consts.append(name)
        return f"K[{len(self.consts) - 1}]"
