"""Compile Sigma condition trees into one Python function per log source, once per rule set.

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import re2  # type: ignore[import-untyped]  # google-re2, a pySigma dependency
from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.types import (
    CompareOperators,
    Placeholder,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SigmaTimestampPart,
    SpecialChars,
)

from corral.detect._prefilter import required_literals

Matcher = Callable[[Mapping[str, Any]], list[int]]


LONG_TEXT = 2048  # above this, regexes run on RE2 (linear time) so a crafted command cannot stall us


class DualRegex:
    """Python's ``re`` for short texts (cheapest per call), RE2 for long ones (linear time)."""

    __slots__ = ("py", "r2")

    def __init__(self, pattern: str, flags: int) -> None:
        self.py = re.compile(pattern, flags)
        inline = "".join(c for f, c in ((re.I, "i"), (re.M, "m"), (re.S, "s")) if flags & f)
        try:
            self.r2: Any = re2.compile(f"(?{inline}){pattern}" if inline else pattern)
        except Exception:  # RE2 lacks the feature (pySigma already refuses such rules); Python's re it is
            self.r2 = None

    def search(self, s: str) -> Any:
        if len(s) > LONG_TEXT and self.r2 is not None:
            return self.r2.search(s)
        return self.py.search(s)

    def fullmatch(self, s: str) -> Any:
        if len(s) > LONG_TEXT and self.r2 is not None:
            return self.r2.fullmatch(s)
        return self.py.fullmatch(s)


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


def cmp(v: Any, op: CompareOperators, num: float) -> bool:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return False
    if op is CompareOperators.LT:
        return x < num
    if op is CompareOperators.LTE:
        return x <= num
    if op is CompareOperators.GT:
        return x > num
    if op is CompareOperators.GTE:
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
class _Fields:
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


class _Builder:
    def __init__(self, fields: _Fields, consts: list[Any]) -> None:
        self.f = fields
        self.k = consts

    def const(self, v: Any) -> str:
        self.k.append(v)
        return f"K[{len(self.k) - 1}]"

    def expr(self, node: Any) -> str:
        if isinstance(node, ConditionAND):
            return "(" + " and ".join(self.expr(a) for a in node.args) + ")"
        if isinstance(node, ConditionOR):
            return self.set_test(node.args) or "(" + " or ".join(self.expr(a) for a in node.args) + ")"
        if isinstance(node, ConditionNOT):
            return "(not " + self.expr(node.args[0]) + ")"
        if isinstance(node, ConditionFieldEqualsValueExpression):
            return self.field_test(node.field, node.value)
        if isinstance(node, ConditionValueExpression):
            self.f.keywords = True
            return self.keyword(node.value)
        raise Unsupported(f"condition element {type(node).__name__} is not supported")

    def set_test(self, args: Sequence[Any]) -> str | None:
        """An OR of ``field: value`` or ``field|endswith: /name`` leaves on one field as one set lookup."""
        if len(args) < 3 or not all(isinstance(a, ConditionFieldEqualsValueExpression) for a in args):
            return None
        name = args[0].field
        if any(a.field != name for a in args) or self.f.is_multi(name):
            return None
        plain: set[str] = set()
        bases: set[str] = set()
        for a in args:
            v = a.value
            if isinstance(v, SigmaNumber) and not isinstance(v, SigmaTimestampPart):
                plain.add(str(v.number).lower())
                continue
            if not isinstance(v, SigmaString) or isinstance(v, SigmaCasedString):
                return None
            parts = list(v.s)
            texts = [p for p in parts if isinstance(p, str)]
            if len(texts) == len(parts):
                plain.add("".join(texts).lower())
            elif (
                len(parts) == 2
                and parts[0] == SpecialChars.WILDCARD_MULTI
                and isinstance(parts[1], str)
                and parts[1].startswith("/")
                and "/" not in parts[1][1:]
            ):
                bases.add(parts[1][1:].lower())
            else:
                return None
        out = []
        if plain:
            out.append(f"({self.f.var(name, 'l')} in {self.const(frozenset(plain))})")
        if bases:
            out.append(f"({self.f.var(name, 'b')} in {self.const(frozenset(bases))})")
        return "(" + " or ".join(out) + ")"

    def keyword(self, value: Any) -> str:
        if isinstance(value, SigmaExpansion):
            return "(" + " or ".join(self.keyword(v) for v in value.values) + ")"
        if isinstance(value, SigmaRegularExpression):
            return self.regex_test(value, "kw", "kw")
        if isinstance(value, SigmaString) and not isinstance(value, SigmaCasedString):
            parts = list(value.s)
            if not parts or parts[0] != SpecialChars.WILDCARD_MULTI:
                parts.insert(0, SpecialChars.WILDCARD_MULTI)
            if parts[-1] != SpecialChars.WILDCARD_MULTI:
                parts.append(SpecialChars.WILDCARD_MULTI)
            return self.string(parts, "kw", lower=True)
        if isinstance(value, SigmaNumber):
            return f"({self.const(str(value.number))} in kw)"
        raise Unsupported(f"keyword of type {type(value).__name__} is not supported")

    def field_test(self, name: str, value: Any) -> str:
        if isinstance(value, SigmaExpansion):
            return "(" + " or ".join(self.field_test(name, v) for v in value.values) + ")"
        multi = self.f.is_multi(name)
        if isinstance(value, SigmaNull):
            return f"(not {self.f.var(name, 'l')})" if not multi else f"(not any({self.f.var(name, 'l')}))"
        if isinstance(value, SigmaExists):
            v = self.f.var(name, "v")
            return f"(({v} is not None) is {bool(value.exists)})"
        form, test = self.test(name, value, prefilter=not multi)
        var = self.f.var(name, form)
        if multi:
            return f"any({test.replace('§', 'x')} for x in {var})"
        if "¤" in test:
            test = test.replace("¤", self.f.var(name, "l"))
        return test.replace("§", var)

    def test(self, name: str, value: Any, prefilter: bool = True) -> tuple[str, str]:
        """(variable form, expression with § for the variable and ¤ for its lower-cased form)."""
        if isinstance(value, SigmaTimestampPart):
            raise Unsupported("timestamp part modifiers (minute, hour, ...) are not supported")
        if isinstance(value, SigmaCasedString):
            return "s", self.string(list(value.s), "§", lower=False)
        if isinstance(value, SigmaString):
            return "l", self.string(list(value.s), "§", lower=True)
        if isinstance(value, SigmaBool):
            return "l", f"(§ == {self.const('true' if value.boolean else 'false')})"
        if isinstance(value, SigmaNumber):
            return "l", f"(§ == {self.const(str(value.number).lower())})"
        if isinstance(value, SigmaRegularExpression):
            return "s", self.regex_test(value, "§", "¤" if prefilter else None)
        if isinstance(value, SigmaCIDRExpression):
            return "s", f"cidr({self.const(value.network)}, §)"
        if isinstance(value, SigmaCompareExpression):
            return "s", f"cmp(§, {self.const(value.op)}, {self.const(float(value.number.number))})"
        if isinstance(value, SigmaFieldReference):
            if self.f.is_multi(value.field):
                raise Unsupported("fieldref to a multi-valued field is not supported")
            other = self.f.var(value.field, "l")
            if value.starts_with:
                return "l", f"§.startswith({other})"
            if value.ends_with:
                return "l", f"§.endswith({other})"
            return "l", f"(§ == {other})"
        raise Unsupported(f"value type {type(value).__name__} is not supported")

    def regex_test(self, value: SigmaRegularExpression, var: str, lowered: str | None) -> str:
        pattern = self.regex(value)
        lits = required_literals(self.k[-1].py) if lowered is not None else None
        if not lits:
            return f"({pattern}.search({var}) is not None)"
        if len(lits) <= 3:
            pre = " or ".join(f"{self.const(lit)} in {lowered}" for lit in sorted(lits))
        else:
            pre = f"anyin({self.const(tuple(sorted(lits)))}, {lowered})"
        return f"(({pre}) and {pattern}.search({var}) is not None)"

    def regex(self, value: SigmaRegularExpression) -> str:
        flags = 0
        for fl in value.flags:
            flags |= {
                SigmaRegularExpressionFlag.IGNORECASE: re.IGNORECASE,
                SigmaRegularExpressionFlag.MULTILINE: re.MULTILINE,
                SigmaRegularExpressionFlag.DOTALL: re.DOTALL,
            }[fl]
        try:
            return self.const(DualRegex(str(value.regexp), flags))
        except re.error as exc:
            raise Unsupported(f"regular expression not supported by Python's re: {exc}") from exc

    def string(self, parts: Sequence[Any], var: str, lower: bool) -> str:
        if any(isinstance(p, Placeholder) for p in parts):
            raise Unsupported("placeholders (expand modifier) need a processing pipeline; not supported")
        norm = [p.lower() if isinstance(p, str) and lower else p for p in parts]
        specials = [i for i, p in enumerate(norm) if isinstance(p, SpecialChars)]
        multi = SpecialChars.WILDCARD_MULTI
        texts = [p for p in norm if isinstance(p, str)]
        if not specials:
            return f"({var} == {self.const(''.join(texts))})"
        if len(norm) == 1 and norm[0] == multi:
            return f"bool({var})"
        if len(norm) == 3 and norm[0] == multi and norm[2] == multi and isinstance(norm[1], str):
            return f"({self.const(norm[1])} in {var})"
        if len(norm) == 2 and norm[1] == multi and isinstance(norm[0], str):
            return f"{var}.startswith({self.const(norm[0])})"
        if len(norm) == 2 and norm[0] == multi and isinstance(norm[1], str):
            return f"{var}.endswith({self.const(norm[1])})"
        pattern = "".join(re.escape(p) if isinstance(p, str) else (".*" if p == multi else ".") for p in norm)
        return f"({self.const(DualRegex(pattern, re.DOTALL))}.fullmatch({var}) is not None)"


@dataclass(frozen=True)
class Compiled:
    """One rule's condition as source text, with the program basenames it requires (if any)."""

    expr: str
    images: frozenset[str] | None


def required_images(tree: Any) -> frozenset[str] | None:
    """Basenames one of which the event's ``Image`` must have for ``tree`` to match, if that is implied."""
    children = tree.args if isinstance(tree, ConditionAND) else [tree]
    for child in children:
        leaves = list(child.args) if isinstance(child, ConditionOR) else [child]
        names: set[str] = set()
        for leaf in leaves:
            if isinstance(leaf, ConditionOR):
                leaves.extend(leaf.args)
                continue
            if not (isinstance(leaf, ConditionFieldEqualsValueExpression) and leaf.field == "Image"):
                break
            v = leaf.value
            if not isinstance(v, SigmaString) or isinstance(v, SigmaCasedString):
                break
            parts = list(v.s)
            if len(parts) == 2 and parts[0] == SpecialChars.WILDCARD_MULTI and isinstance(parts[1], str):
                text = parts[1].lower()
            elif len(parts) == 1 and isinstance(parts[0], str):
                text = parts[0].lower()
            else:
                break
            if "/" not in text:
                break
            names.add(text.rsplit("/", 1)[1])
        else:
            if names and all(names):
                return frozenset(names)
    return None


class GroupCompiler:
    """Collects rule conditions for one log source and builds its matcher."""

    def __init__(self, multi: frozenset[str], canonical: Mapping[str, str]) -> None:
        self.fields = _Fields(multi, canonical)
        self.consts: list[Any] = []
        self.rules: list[Compiled] = []

    def add(self, tree: Any) -> int:
        """Compile one rule's condition; raises ``Unsupported`` and leaves the group unchanged."""
        saved = (dict(self.fields.used), len(self.consts), self.fields.keywords)
        try:
            expr = _Builder(self.fields, self.consts).expr(tree)
        except Unsupported:
            self.fields.used, self.fields.keywords = saved[0], saved[2]
            del self.consts[saved[1] :]
            raise
        self.rules.append(Compiled(expr, required_images(tree)))
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
        base = self._function(always)
        indexed = {name: self._function(ids) for name, ids in by_image.items()}
        if not indexed:
            return base
        get = indexed.get

        def match(rec: Mapping[str, Any]) -> list[int]:
            hits = base(rec)
            image = rec.get("Image")
            if isinstance(image, str) and image:
                fn = get(image.rsplit("/", 1)[-1].lower())
                if fn is not None:
                    hits = hits + fn(rec)
            return hits

        return match

    def _function(self, ids: list[int]) -> Matcher:
        if not ids:
            return lambda rec: []
        body = [f"    if {self.rules[i].expr}: hits.append({i})" for i in ids]
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
        src = "def _match(rec):\n" + "\n".join([*prep, "    hits = []", *body, "    return hits"]) + "\n"
        namespace: dict[str, Any] = {**_HELPERS, "K": tuple(self.consts)}
        exec(compile(src, "<corral-sigma>", "exec"), namespace)  # source built from our own templates only
        matcher: Matcher = namespace["_match"]
        return matcher

    def const_name(self, name: str) -> str:
        self.consts.append(name)
        return f"K[{len(self.consts) - 1}]"
