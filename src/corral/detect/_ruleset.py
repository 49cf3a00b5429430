"""Compiled, immutable rule sets: built from rule files once, shared in-process, cached on disk."""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from corral.detect import _cache
from corral.detect._compile import GroupCompiler, Matcher
from corral.detect._correlation import CorrelationSpec
from corral.detect._model import LOGSOURCES, LoadReport, RuleInfo, RuleProblem
from corral.detect._records import CANONICAL
from corral.events import Level


@dataclass(frozen=True)
class RuleSet:
    """Compiled rules: shared by every Detector built from the same files and overrides."""

    matchers: Mapping[str, Matcher]
    infos: Mapping[str, list[RuleInfo]]
    correlations: list[CorrelationSpec]
    report: LoadReport
    from_cache: bool = False
    # Per log source, the record fields its matcher reads (None: every field, as keyword rules do).
    reads: Mapping[str, frozenset[str] | None] = field(default_factory=dict)


class _BuiltOnUse(dict[str, Matcher]):
    """Each log source's matcher, compiled to Python when first asked for.

    The expressions were checked when the cache was read; compiling them all up front cost a
    one-shot ``corral policy check`` (which matches nothing) a tenth of its run.
    """

    def __init__(self, groups: Mapping[str, GroupCompiler]) -> None:
        super().__init__()
        self._groups = groups

    def __missing__(self, logsource: str) -> Matcher:
        # Two threads may both build one source: the results are equal and either may win.
        matcher = self[logsource] = self._groups[logsource].build()
        return matcher


def _reads(groups: Mapping[str, GroupCompiler]) -> dict[str, frozenset[str] | None]:
    return {
        ls: None if g.fields.keywords else frozenset({"Image", *(name for name, _ in g.fields.used)})
        for ls, g in groups.items()
    }


def _info_data(i: RuleInfo) -> dict[str, Any]:
    d = {f.name: getattr(i, f.name) for f in fields(RuleInfo)}
    d["level"] = i.level.value
    return d


def _info(d: Mapping[str, Any]) -> RuleInfo:
    names = {f.name for f in fields(RuleInfo)}
    if set(d) != names:
        raise _cache.CacheInvalid("rule metadata fields differ")
    kw = dict(d)
    kw["level"] = Level(kw["level"])
    for k in ("tags", "falsepositives", "fields"):
        kw[k] = tuple(str(x) for x in kw[k])
    return RuleInfo(**kw)


def _to_doc(groups: Mapping[str, GroupCompiler], loaded: Any) -> dict[str, Any]:
    return {
        "groups": {ls: g.to_data(_cache.encode_const) for ls, g in groups.items()},
        "infos": {ls: [_info_data(i) for i in lst] for ls, lst in loaded.infos.items()},
        "correlations": [
            {**{f.name: getattr(c, f.name) for f in fields(CorrelationSpec)}, "info": _info_data(c.info)}
            for c in loaded.correlations
        ],
        "report": {
            "loaded": loaded.report.loaded,
            "files": loaded.report.files,
            "problems": [p.__dict__ for p in loaded.report.problems],
        },
    }


def _from_doc(doc: Mapping[str, Any]) -> RuleSet:
    groups = {
        ls: GroupCompiler.from_data(doc["groups"][ls], CANONICAL, _cache.decode_const, _cache.check_expr)
        for ls in LOGSOURCES
    }
    infos = {ls: [_info(i) for i in doc["infos"][ls]] for ls in LOGSOURCES}
    for ls in LOGSOURCES:
        if len(infos[ls]) != len(groups[ls].rules):
            raise _cache.CacheInvalid("rule count differs")
    corrs = []
    for c in doc["correlations"]:
        kw = dict(c)
        kw["info"] = _info(kw["info"])
        kw["rule_ids"] = tuple(kw["rule_ids"])
        kw["group_by"] = tuple(kw["group_by"])
        corrs.append(CorrelationSpec(**kw))
    rep = doc["report"]
    report = LoadReport(int(rep["loaded"]), int(rep["files"]), [RuleProblem(**p) for p in rep["problems"]])
    return RuleSet(_BuiltOnUse(groups), infos, corrs, report, from_cache=True, reads=_reads(groups))


def _compile(paths: Sequence[Path], overrides: Mapping[str, Any]) -> tuple[RuleSet, dict[str, Any]]:
    from corral.detect._loader import Overrides, load_rules  # pySigma is needed only on a cache miss

    ov = Overrides(frozenset(overrides["disabled"]), overrides["levels"], overrides["exceptions"])
    loaded = load_rules(list(paths), ov)
    doc = _to_doc(loaded.groups, loaded)
    matchers = {ls: g.build() for ls, g in loaded.groups.items()}
    rules = RuleSet(matchers, loaded.infos, loaded.correlations, loaded.report, reads=_reads(loaded.groups))
    return rules, doc


@functools.lru_cache(maxsize=16)
def _in_process(key: str, paths: tuple[str, ...], overrides: str, use_disk: bool) -> RuleSet:
    if use_disk:
        doc = _cache.read(key)
        if doc is not None:
            try:
                return _from_doc(doc)
            except Exception:  # corrupt or foreign: never trusted, rebuilt below
                pass
    rules, doc = _compile([Path(p) for p in paths], json.loads(overrides))
    if use_disk and not rules.report.problems:
        with contextlib.suppress(TypeError, ValueError):  # a constant we cannot represent: not cached
            _cache.write(key, doc)
    return rules


def ruleset(paths: Sequence[Path], overrides: Mapping[str, Any], *, use_disk: bool = True) -> RuleSet:
    """The compiled rules for these files and overrides (in-process cache, then the disk cache)."""
    ov = json.dumps(overrides, sort_keys=True, default=list)
    key = _cache.cache_key(_cache.rule_files(paths), ov, _engine())
    return _in_process(key, tuple(str(p) for p in paths), ov, use_disk)


@functools.lru_cache(maxsize=1)
def _engine() -> str:
    return _cache.engine_version()
