"""Read Sigma rule files with pySigma and sort each rule into: compiled, correlation, or not loaded (why).

Corral's own keys live under one custom key per rule::

    corral:
      category: reverse_shell          # Alert.category
      tests:                           # run by the test suite against the real engine
        match: [<command> | {type: network_connection, DestinationPort: 3333, ...}]
        nomatch: [...]

The user override hook is the policy (``detection.exceptions``, ``disabled_rules``,
``level_overrides``) or a Sigma filter file in a rule path; rules are never edited.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from sigma.collection import SigmaCollection
from sigma.conditions import ConditionFieldEqualsValueExpression, ConditionValueExpression
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaError, SigmaRuleLocation
from sigma.rule import SigmaRule

from corral.detect._cache import rule_files
from corral.detect._compile import GroupCompiler, Unsupported
from corral.detect._correlation import CorrelationSpec, correlation_spec
from corral.detect._model import LOGSOURCES, LoadReport, RuleInfo, RuleProblem
from corral.detect._records import CANONICAL, MULTI_FIELDS
from corral.events import Level

_LINUXISH = (None, "linux", "corral", "unix")
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: 3x faster, same safety


@dataclass(frozen=True)
class Overrides:
    disabled: frozenset[str] = frozenset()
    levels: Mapping[str, str] | None = None
    exceptions: Mapping[str, Sequence[Mapping[str, Any]]] | None = None


def logsource_key(rule: SigmaRule) -> str:
    """The Corral log source a rule reads, or raises ``Unsupported`` naming what is missing."""
    ls = rule.logsource
    cat, product, service = ls.category, ls.product, ls.service
    if product not in _LINUXISH:
        raise Unsupported(f"log source product {product!r}: Corral sees Linux sandboxes only")
    if service is not None:
        raise Unsupported(f"log source service {service!r}: Corral has no such events")
    if cat in ("process_creation", "network_connection", "tool_call", "file_event"):
        return str(cat)
    if cat in ("dns", "dns_query"):
        return "dns_query"
    if cat is None and product in ("linux", "corral"):
        return "tool_call"  # generic Linux shell logs (keywords): the agent's command text is that log
    raise Unsupported(f"log source category {cat!r}: Corral has no such events (has {', '.join(LOGSOURCES)})")


def _quoted(reason: str) -> list[str]:
    """Words an error message quotes (``Unknown modifier 'contians'``): where to look for the bad line."""
    return [m for m in re.findall(r"'([^'\n]{2,80})'", reason) if not m.startswith("/")]


class _Lines:
    """Line numbers of a rule file's documents, ids and quoted words, for error messages."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.starts = [0] + [i + 1 for i, ln in enumerate(self.lines) if ln.rstrip() == "---" and i > 0]

    def doc_range(self, rule_id: str | None) -> tuple[int, int]:
        if rule_id:
            for i, ln in enumerate(self.lines):
                if re.match(r"\s*id:\s*['\"]?" + re.escape(rule_id) + r"['\"]?\s*$", ln):
                    start = max((s for s in self.starts if s <= i), default=0)
                    end = min((s for s in self.starts if s > i), default=len(self.lines))
                    return start, end
        return 0, len(self.lines)

    def find(self, rule_id: str | None, reason: str) -> int | None:
        start, end = self.doc_range(rule_id)
        for word in _quoted(reason):
            for i in range(start, end):
                if word in self.lines[i]:
                    return i + 1
        if rule_id:
            for i in range(start, end):
                if rule_id in self.lines[i]:
                    return i + 1
        return start + 1 if self.lines else None


def _inject_exceptions(doc: dict[str, Any], selections: Sequence[Mapping[str, Any]]) -> None:
    det = doc.get("detection")
    if not isinstance(det, dict) or "condition" not in det or not selections:
        return
    for i, sel in enumerate(selections):
        det[f"corral_exception_{i}"] = dict(sel)
    conds = det["condition"] if isinstance(det["condition"], list) else [det["condition"]]
    det["condition"] = [f"({c}) and not 1 of corral_exception_*" for c in conds]


def _info(rule: SigmaRule | SigmaCorrelationRule, path: str, logsource: str, ov: Overrides) -> RuleInfo:
    custom = rule.custom_attributes.get("corral") or {}
    if not isinstance(custom, dict):
        custom = {}
    rid = str(rule.id) if rule.id is not None else (rule.name or rule.title)
    level_name = (ov.levels or {}).get(rid) or (rule.level.name.lower() if rule.level else "medium")
    tags = tuple(f"{t.namespace}.{t.name}" for t in rule.tags)
    category = custom.get("category") or next(
        (t.split(".", 2)[2] for t in tags if t.startswith("corral.category.")), "uncategorized"
    )
    return RuleInfo(
        id=rid,
        title=rule.title,
        level=Level(level_name),
        category=str(category),
        tags=tags,
        logsource=logsource,
        path=path,
        status=rule.status.name.lower() if rule.status else None,
        description=rule.description or "",
        falsepositives=tuple(rule.falsepositives or ()),
        tests=dict(custom.get("tests") or {}),
    )


def _fields(tree: Any) -> tuple[str, ...]:
    out: dict[str, None] = {}
    stack = [tree]
    while stack:
        n = stack.pop()
        if isinstance(n, ConditionFieldEqualsValueExpression):
            out[CANONICAL.get(n.field.lower(), n.field)] = None
        elif not isinstance(n, ConditionValueExpression):
            stack.extend(getattr(n, "args", []) or [])
    return tuple(sorted(out))


@dataclass
class LoadedRules:
    groups: dict[str, GroupCompiler]
    infos: dict[str, list[RuleInfo]]  # per log source, index = compiled rule index
    correlations: list[CorrelationSpec]
    report: LoadReport


MAX_RULE_FILE_CHARS = 1_000_000


def load_rules(paths: Sequence[Path], ov: Overrides) -> LoadedRules:
    report = LoadReport()
    collections: list[SigmaCollection] = []
    origin: dict[int, str] = {}
    texts: dict[str, _Lines] = {}
    for p in paths:
        if not p.exists():
            report.problems.append(RuleProblem(str(p), None, None, "no such file or folder", "invalid"))
    for path in rule_files(paths):
        if not path.exists():
            continue
        report.files += 1
        try:
            text = path.read_text("utf-8")
            if len(text) > MAX_RULE_FILE_CHARS:
                raise ValueError(f"larger than {MAX_RULE_FILE_CHARS} characters")
            docs = [d for d in yaml.load_all(text, Loader=_YAML_LOADER) if d is not None]
        except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError, RecursionError) as exc:
            line = getattr(getattr(exc, "problem_mark", None), "line", None)
            report.problems.append(
                RuleProblem(
                    str(path),
                    None,
                    None,
                    f"cannot read: {exc}",
                    "invalid",
                    None if line is None else line + 1,
                )
            )
            continue
        texts[str(path)] = _Lines(text)
        for d in docs:
            if isinstance(d, dict) and str(d.get("id")) in (ov.exceptions or {}):
                _inject_exceptions(d, (ov.exceptions or {})[str(d.get("id"))])
        try:
            coll = SigmaCollection.from_dicts(
                docs, collect_errors=True, source=SigmaRuleLocation(path), resolve_references=False
            )
        except (SigmaError, TypeError, ValueError, AttributeError) as exc:
            report.problems.append(
                RuleProblem(str(path), None, None, f"not a Sigma rule file: {exc}", "invalid")
            )
            continue
        in_rules = {id(e) for r in coll.rules for e in r.errors}
        for err in (e for e in coll.errors if id(e) not in in_rules):
            report.problems.append(RuleProblem(str(path), None, None, str(err), "invalid"))
        for r in coll.rules:
            origin[id(r)] = str(path)
        collections.append(coll)
    try:
        merged = SigmaCollection.merge(collections, resolve_references=False)
    except SigmaError as exc:  # a filter that cannot be applied
        report.problems.append(RuleProblem("<filters>", None, None, str(exc), "invalid"))
        merged = SigmaCollection.merge(
            [SigmaCollection(list[Any](c.rules)) for c in collections], resolve_references=False
        )

    groups = {ls: GroupCompiler(MULTI_FIELDS, CANONICAL) for ls in LOGSOURCES}
    infos: dict[str, list[RuleInfo]] = {ls: [] for ls in LOGSOURCES}
    correlations: list[CorrelationSpec] = []
    feeding: set[str] = set()  # base rules referenced by a correlation without generate: true
    by_uid: dict[int, RuleInfo] = {}
    pending: list[tuple[SigmaCorrelationRule, str]] = []
    known: set[str] = set()
    for rule in merged.rules:
        src = origin.get(id(rule), "<unknown>")
        rid = str(rule.id) if rule.id is not None else (rule.name or rule.title)
        known.add(rid)
        if rule.errors:
            reason = "; ".join(str(e) for e in rule.errors)
            report.problems.append(RuleProblem(src, rid, rule.title, reason, "invalid"))
            continue
        if rid in ov.disabled:
            continue
        if isinstance(rule, SigmaCorrelationRule):
            pending.append((rule, src))
            continue
        try:
            ls = logsource_key(rule)
            trees = [c.parsed for c in rule.detection.parsed_condition]
            if len(trees) != 1:
                raise Unsupported("more than one condition per rule is not supported")
            groups[ls].add(trees[0])
        except Unsupported as exc:
            report.problems.append(RuleProblem(src, rid, rule.title, str(exc)))
            continue
        except SigmaError as exc:
            report.problems.append(RuleProblem(src, rid, rule.title, str(exc), "invalid"))
            continue
        info = _info(rule, src, ls, ov)
        info = RuleInfo(**{**info.__dict__, "fields": _fields(trees[0])})
        infos[ls].append(info)
        by_uid[id(rule)] = info
        report.loaded += 1
    for corr, src in pending:
        rid = str(corr.id) if corr.id is not None else (corr.name or corr.title)
        try:
            corr.resolve_rule_references(merged)
            spec = correlation_spec(corr, _info(corr, src, "correlation", ov), by_uid)
        except (Unsupported, SigmaError) as exc:
            kind: Literal["unsupported", "invalid"] = (
                "unsupported" if isinstance(exc, Unsupported) else "invalid"
            )
            report.problems.append(RuleProblem(src, rid, corr.title, str(exc), kind))
            continue
        correlations.append(spec)
        if not corr.generate:
            feeding.update(spec.rule_ids)
        report.loaded += 1
    for ls, lst in infos.items():
        infos[ls] = [RuleInfo(**{**i.__dict__, "generate": i.id not in feeding}) for i in lst]
    _check_overrides(ov, known, report)
    for i, prob in enumerate(report.problems):
        lines = texts.get(prob.path)
        if prob.line is None and lines is not None:
            report.problems[i] = RuleProblem(
                prob.path,
                prob.rule_id,
                prob.title,
                prob.reason,
                prob.kind,
                lines.find(prob.rule_id, prob.reason),
            )
    return LoadedRules(groups, infos, correlations, report)


def _check_overrides(ov: Overrides, known: set[str], report: LoadReport) -> None:
    """Overrides naming no rule are errors: a near-miss id in ``disabled_rules`` would keep blocking."""
    for key, ids in (
        ("detection.disabled_rules", sorted(ov.disabled)),
        ("detection.level_overrides", sorted(ov.levels or {})),
        ("detection.exceptions", sorted(ov.exceptions or {})),
    ):
        for rid in ids:
            if rid not in known:
                report.problems.append(
                    RuleProblem(
                        "<policy>",
                        rid,
                        None,
                        f"{key} names rule {rid!r}, which no rule file defines",
                        "invalid",
                    )
                )
