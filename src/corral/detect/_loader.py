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

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from sigma.collection import SigmaCollection
from sigma.conditions import ConditionFieldEqualsValueExpression, ConditionValueExpression
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaError, SigmaRuleLocation
from sigma.rule import SigmaRule

from corral.detect._compile import GroupCompiler, Unsupported
from corral.detect._correlation import CorrelationSpec, correlation_spec
from corral.detect._model import LOGSOURCES, LoadReport, RuleInfo, RuleProblem
from corral.detect._records import CANONICAL, MULTI_FIELDS
from corral.events import Level

_LINUXISH = (None, "linux", "corral", "unix")


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


def rule_files(paths: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(x for x in p.rglob("*") if x.suffix in (".yml", ".yaml") and x.is_file()))
        else:
            out.append(p)
    return out


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


def load_rules(paths: Sequence[Path], ov: Overrides) -> LoadedRules:
    report = LoadReport()
    collections: list[SigmaCollection] = []
    origin: dict[int, str] = {}
    for path in rule_files(paths):
        report.files += 1
        try:
            docs = [d for d in yaml.safe_load_all(path.read_text("utf-8")) if d is not None]
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            report.problems.append(RuleProblem(str(path), None, None, f"cannot read: {exc}", "invalid"))
            continue
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
    for rule in merged.rules:
        src = origin.get(id(rule), "<unknown>")
        rid = str(rule.id) if rule.id is not None else (rule.name or rule.title)
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
    return LoadedRules(groups, infos, correlations, report)
