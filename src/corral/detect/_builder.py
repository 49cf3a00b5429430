"""Sigma condition trees (pySigma objects) to Python expressions over prepared field variables.

Each rule's condition becomes a Python expression over local variables that hold
the event's field values (see ``_compile.Fields``). All values taken from rule
files go into the constants list ``K``, never into the source, so rule data
cannot become code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.types import (
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

from corral.detect._compile import DualRegex, Fields, Unsupported
from corral.detect._prefilter import normalized, required_literals


class Builder:
    def __init__(self, fields: Fields, consts: list[Any]) -> None:
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
            return "s", f"cmp(§, {self.const(value.op.name)}, {self.const(float(value.number.number))})"
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
        longest = max(texts, key=len, default="")
        pre = f"{self.const(longest)} in {var} and " if len(longest) >= 2 else ""
        if len(norm) > 2 and norm[0] == multi and norm[-1] == multi:
            norm = norm[1:-1]  # fullmatch('.*P.*') is search('P'), without the backtracking
            method = "search"
        else:
            method = "fullmatch"
        pattern = "".join(re.escape(p) if isinstance(p, str) else (".*" if p == multi else ".") for p in norm)
        return f"({pre}{self.const(DualRegex(pattern, re.DOTALL))}.{method}({var}) is not None)"


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


Gate = frozenset[tuple[str, str]]  # (field, literal): the rule needs one literal in that field's text
MARK = "\0"  # bounds each value in a gate text, so whole values and prefixes can be gate literals


def _literal(field: str, text: str, exact_start: bool = False, exact_end: bool = False) -> Gate | None:
    # Non-ASCII literals can change length or context under lower(): never used to skip a rule.
    lit = normalized(text)
    if not lit.isascii() or MARK in lit or (len(lit) < 2 and not (exact_start or exact_end)):
        return None
    return frozenset({(field, (MARK if exact_start else "") + lit + (MARK if exact_end else ""))})


def _value_gate(field: str, value: Any) -> Gate | None:
    if isinstance(value, SigmaExpansion):
        return _union([_value_gate(field, v) for v in value.values])
    if isinstance(value, SigmaString):  # cased or not: the raw text holds it, so the lowered text does
        parts = list(value.s)
        if any(isinstance(p, Placeholder) for p in parts):
            return None
        texts = [p for p in parts if isinstance(p, str)]
        if len(texts) == len(parts):
            return _literal(field, "".join(texts), True, True)
        multi = SpecialChars.WILDCARD_MULTI
        if len(parts) == 2 and isinstance(parts[0], str) and parts[1] == multi:
            return _literal(field, parts[0], exact_start=True)
        if len(parts) == 2 and parts[0] == multi and isinstance(parts[1], str):
            return _literal(field, parts[1], exact_end=True)
        return _literal(field, max(texts, key=len)) if texts else None
    if isinstance(value, SigmaBool):
        return _literal(field, "true" if value.boolean else "false", True, True)
    if isinstance(value, SigmaNumber) and not isinstance(value, SigmaTimestampPart):
        return _literal(field, str(value.number), True, True)
    if isinstance(value, SigmaRegularExpression):
        flags = 0
        for fl in value.flags:
            flags |= {
                SigmaRegularExpressionFlag.IGNORECASE: re.IGNORECASE,
                SigmaRegularExpressionFlag.MULTILINE: re.MULTILINE,
                SigmaRegularExpressionFlag.DOTALL: re.DOTALL,
            }[fl]
        try:
            lits = required_literals(re.compile(str(value.regexp), flags), spaces=True)
        except re.error:
            return None
        return _union([_literal(field, x) for x in lits]) if lits else None
    return None  # null, exists, cidr, comparisons, field references: no literal is implied


def _union(gates: Sequence[Gate | None]) -> Gate | None:
    if not gates or any(g is None for g in gates):
        return None
    return frozenset().union(*gates)  # type: ignore[arg-type]


def _rank(g: Gate) -> tuple[int, int]:
    return min(len(lit) for _, lit in g), -len(g)


def gate(tree: Any, canonical: Mapping[str, str]) -> Gate | None:
    """(field, literal) pairs, one of which must occur in that field's gate text for ``tree`` to match.

    The gate text of a value is ``MARK + normalized(value) + MARK`` (multi-valued fields: each
    value so bounded), so a literal may be a whole value, a prefix, a suffix or any substring.
    A sound over-approximation (None: no such literal is known): a matcher may skip the rule when
    none occurs. AND keeps its most selective child, OR needs a gate on every branch, NOT implies
    nothing.
    """
    if isinstance(tree, ConditionAND):
        best: Gate | None = None
        for child in tree.args:
            g = gate(child, canonical)
            if g is not None and (best is None or _rank(g) > _rank(best)):
                best = g
        return best
    if isinstance(tree, ConditionOR):
        return _union([gate(child, canonical) for child in tree.args])
    if isinstance(tree, ConditionFieldEqualsValueExpression):
        return _value_gate(canonical.get(tree.field.lower(), tree.field), tree.value)
    return None
