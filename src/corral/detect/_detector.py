"""The Detector: compiled rule sets, tool-call inspection and streaming runtime detection."""

from __future__ import annotations

import functools
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from corral.detect._analyze import analyze, basename
from corral.detect._correlation import Correlator, Fired
from corral.detect._model import (
    EVENT_LOGSOURCE,
    LOGSOURCES,
    Inspection,
    LoadReport,
    RuleInfo,
    RuleProblem,
    verdict_for,
)
from corral.detect._records import enrich_process, records
from corral.detect._ruleset import RuleSet, ruleset
from corral.detect._wrappers import interpreter_key, shell_key
from corral.errors import Problem, RuleError
from corral.events import Alert, Event, Level, TraceContext
from corral.policy import DetectionSection, Policy

_MATCHED_MAX_CHARS = 512
# Memos of rule hits: training repeats the same commands and programs across thousands of episodes.
_MEMO_MAX = 8192
_MEMO_TEXT_MAX = 8192  # longer tool calls are inspected afresh every time
_ENVELOPE = frozenset({"sandbox_id", "run_id", "episode_id", "step", "turn", "tool_call_id", "host"})
_DERIVED = ("argv", "ArgvName", "Renamed", "ScriptFromStdin")  # enrich_process reads/writes these
_Hit = tuple[RuleInfo, Mapping[str, Any]]
_BUDGET_TITLES = {
    "depth": "Command nested deeper than inspection follows",
    "commands": "Command starts more programs than inspection follows",
    "size": "Command larger than inspection reads",
}


def builtin_rule_paths(maturity: Sequence[str] = ("stable", "test")) -> list[Path]:
    root = Path(str(resources.files("corral.data").joinpath("rules")))
    return [root / m for m in maturity if (root / m).is_dir()]


def _clip(v: Any) -> Any:
    if isinstance(v, str) and len(v) > _MATCHED_MAX_CHARS:
        return v[:_MATCHED_MAX_CHARS] + "..."
    if isinstance(v, tuple):
        return [_clip(x) for x in v]
    return v


def _alert(info: RuleInfo, rec: Mapping[str, Any], seq: int | None = None) -> Alert:
    matched = {f: _clip(rec.get(f)) for f in info.fields if rec.get(f) not in (None, "", ())}
    return Alert(
        rule_id=info.id,
        title=info.title,
        level=info.level,
        category=info.category,
        tags=list(info.tags),
        matched=matched,
        source_seq=seq,
    )


def _fired_alert(f: Fired, seq: int | None = None) -> Alert:
    info = f.spec.info
    matched: dict[str, Any] = {**f.group, "count": f.count, "rules": list(f.spec.rule_ids)}
    return Alert(
        rule_id=info.id,
        title=info.title,
        level=info.level,
        category=info.category,
        tags=list(info.tags),
        matched=matched,
        source_seq=seq,
    )


def _budget_alert(budget: str) -> Alert:
    """Going over an inspection budget is a finding: what was not inspected must not pass unseen."""
    return Alert(
        rule_id=f"corral.inspection_budget.{budget}",
        title=_BUDGET_TITLES[budget],
        level=Level.high,
        category="defense_evasion",
        tags=["attack.defense-evasion", "attack.t1027"],
        matched={"budget": budget},
    )


def _record_key(names: frozenset[str]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """The values of ``names`` in a record, as a hashable key (types kept: True and 1 differ)."""
    order = tuple(sorted(names))

    def key(rec: Mapping[str, Any]) -> tuple[Any, ...]:
        out: list[Any] = []
        for v in map(rec.get, order):
            if v is None or v.__class__ is str:
                out.append(v)
            elif isinstance(v, list | tuple):
                out.append(tuple(x if x.__class__ is str else (x.__class__, x) for x in v))
            else:
                out.append((v.__class__, v))
        return tuple(out)

    return key


def rule_error(problems: Sequence[RuleProblem]) -> RuleError:
    """One ``RuleError`` listing every problem, each naming its file, line and rule."""
    out = []
    for p in problems:
        who = None
        if p.rule_id or p.title:
            who = f"rule {p.rule_id or p.title}"
            if p.title and p.rule_id and p.title != p.rule_id:
                who += f" ({p.title})"
        out.append(Problem(f"{p.kind}: {p.reason}", file=p.path, path=who, line=p.line))
    return RuleError(out)


class Detector:
    """Sigma rules compiled once; ``inspect_command`` before a call runs, ``observe`` on events after.

    Compiled rule sets are cached per (files, overrides), so building a Detector per sandbox is
    cheap; each Detector keeps its own correlation state and payload cache.
    """

    def __init__(self, rules: RuleSet, section: DetectionSection | None = None) -> None:
        self.section = section or DetectionSection()
        self._infos = rules.infos
        self._matchers = rules.matchers
        self._correlator = Correlator(rules.correlations)
        self._report = rules.report
        self._by_id = {i.id: i for lst in rules.infos.values() for i in lst}
        self._by_id.update({c.info.id: c.info for c in rules.correlations})
        # Training runs repeat the same commands across thousands of episodes: rule hits on a
        # command's payload depend on its text only, so they are cached (bounded).
        self._payload_cache = functools.lru_cache(maxsize=4096)(self._payload_uncached)
        # Hits on a process record depend only on the fields its rules read (and the payload on
        # argv): memoised by those values. A tool call's hits depend on its text, as long as no
        # rule reads the trace context. Keyword rules read every field: no memo then.
        reads = rules.reads
        proc = reads.get("process_creation")
        self._proc_key = _record_key(proc | set(_DERIVED)) if proc is not None else None
        self._proc_memo: dict[tuple[Any, ...], tuple[tuple[int, ...], tuple[tuple[str, _Hit], ...]]] = {}
        call_reads = [reads.get(ls) for ls in ("tool_call", "process_creation", "file_event")]
        self._call_memo_on = all(r is not None and not r & _ENVELOPE for r in call_reads)
        self._call_memo: dict[tuple[str, str], tuple[tuple[_Hit, ...], frozenset[str]]] = {}

    # -- construction -----------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        paths: Sequence[Path],
        section: DetectionSection | None = None,
        *,
        strict: bool = True,
        lenient_under: Sequence[Path] = (),
    ) -> Detector:
        """Rules from these files/folders only (no built-in pack unless listed).

        All or nothing: any rule or override problem raises ``RuleError`` naming file, line,
        rule and reason. ``strict=False`` loads what it can and lists the rest in ``load_report``
        (for auditing a third-party pack); problems in files under ``lenient_under`` are
        reported instead of raised.
        """
        section = section or DetectionSection()
        overrides = {
            "disabled": sorted(section.disabled_rules),
            "levels": dict(section.level_overrides),
            "exceptions": {k: [dict(x) for x in v] for k, v in section.exceptions.items()},
        }
        rules = ruleset([Path(p) for p in paths], overrides)
        if strict:
            roots = [str(Path(r)) + "/" for r in lenient_under]
            fatal = [p for p in rules.report.problems if not any(p.path.startswith(r) for r in roots)]
            if fatal:
                raise rule_error(fatal)
        return cls(rules, section)

    @classmethod
    def from_policy(cls, policy: Policy) -> Detector:
        """The built-in pack (the maturities the policy names) plus the policy's ``rule_paths``.

        Raises ``RuleError`` for any rule or override problem; ``detection.on_rule_error: warn``
        downgrades problems in the built-in ``test`` rules only.
        """
        d = policy.detection
        paths = builtin_rule_paths(d.builtin_maturity) + [Path(p) for p in d.rule_paths]
        lenient = builtin_rule_paths(("test",)) if d.on_rule_error == "warn" else []
        return cls.load(paths, d, lenient_under=lenient)

    @classmethod
    def builtin(cls) -> Detector:
        return cls.from_policy(Policy())

    @property
    def load_report(self) -> LoadReport:
        return self._report

    @property
    def rules(self) -> list[RuleInfo]:
        return list(self._by_id.values())

    def rule(self, rule_id: str) -> RuleInfo:
        return self._by_id[rule_id]

    # -- matching ---------------------------------------------------------------------------------

    def evaluate(self, logsource: str, rec: Mapping[str, Any]) -> list[RuleInfo]:
        """Rules of ``logsource`` whose condition matches the flat record (stateless; no correlation)."""
        infos = self._infos[logsource]
        if logsource == "process_creation" and "ArgvName" not in rec:
            rec = dict(rec)
            enrich_process(rec)
        return [infos[i] for i in self._matchers[logsource](rec)]

    def match_command(self, command: str, language: str = "shell") -> list[RuleInfo]:
        """Every rule a tool call's records match, including rules that only feed correlations."""
        return [info for info, _ in self._hits(records(analyze(command, language), {}, language)).values()]

    def _hits(self, recs: Mapping[str, list[dict[str, Any]]]) -> dict[str, _Hit]:
        hits: dict[str, _Hit] = {}
        for ls in LOGSOURCES:
            lst = recs.get(ls)
            if not lst:
                continue
            match, infos = self._matchers[ls], self._infos[ls]
            for rec in lst:
                for i in match(rec):
                    info = infos[i]
                    if info.id not in hits:
                        hits[info.id] = (info, rec)
        return hits

    def inspect_command(
        self, command: str, *, ctx: TraceContext, sandbox_id: str | None = None, language: str = "shell"
    ) -> Inspection:
        """Verdict on a tool call before it runs. Any internal error blocks the call (fail closed)."""
        if not self.section.enabled:
            return Inspection("allow", None, [], [])
        try:
            envelope = {
                "sandbox_id": sandbox_id,
                "run_id": ctx.run_id,
                "episode_id": ctx.episode_id,
                "step": ctx.step,
                "turn": ctx.turn,
                "tool_call_id": ctx.tool_call_id,
            }
            hits, exceeded = self._call_hits(command, language, envelope)
            alerts = [_alert(info, rec) for info, rec in hits if info.generate]
            alerts.extend(_budget_alert(b) for b in sorted(exceeded))
            now = time.time_ns()
            for info, _ in hits:
                alerts.extend(_fired_alert(f) for f in self._correlator.feed(info.id, envelope, now))
        except Exception as exc:  # a bug in inspection must not let the call through
            alerts = [
                Alert(
                    rule_id="corral.inspection_error",
                    title="Command inspection failed",
                    level=Level.critical,
                    category="inspection_error",
                    matched={"error": f"{type(exc).__name__}: {exc}"},
                )
            ]
        level = max((a.level for a in alerts), key=lambda lv: lv.rank, default=None)
        verdict = verdict_for(level, self.section)
        return Inspection(verdict, level, alerts, [a.rule_id for a in alerts])

    def _call_hits(
        self, command: str, language: str, envelope: dict[str, Any]
    ) -> tuple[tuple[_Hit, ...], frozenset[str]]:
        key = (command, language)
        memo = self._call_memo_on and len(command) <= _MEMO_TEXT_MAX
        got = self._call_memo.get(key) if memo else None
        if got is None:
            analysis = analyze(command, language)
            got = (
                tuple(self._hits(records(analysis, envelope, language)).values()),
                frozenset(analysis.exceeded),
            )
            if memo:
                if len(self._call_memo) >= _MEMO_MAX:
                    self._call_memo.clear()
                self._call_memo[key] = got
        return got

    def _process_hits(self, rec: dict[str, Any]) -> tuple[tuple[int, ...], tuple[tuple[str, _Hit], ...]]:
        """Matcher hits and payload hits of a process record, memoised by the fields rules read."""
        key: tuple[Any, ...] | None = None
        if self._proc_key is not None:
            try:
                key = self._proc_key(rec)
                got = self._proc_memo.get(key)
            except TypeError:  # an unhashable value: no memo for this record
                key = got = None
            if got is not None:
                if got[0] or got[1]:
                    enrich_process(rec)  # alerts copy the fields they matched from the record
                return got
        enrich_process(rec)
        got = (tuple(self._matchers["process_creation"](rec)), tuple(self._payload_hits(rec).items()))
        if key is not None:
            if len(self._proc_memo) >= _MEMO_MAX:
                self._proc_memo.clear()
            self._proc_memo[key] = got
        return got

    def observe(self, event: Event) -> list[Event]:
        """Runtime detection on one collector/egress event; returns alert events (thread-safe)."""
        ls = EVENT_LOGSOURCE.get(event.type)
        if ls is None or not self.section.enabled:
            return []
        rec = event.record()
        found: dict[str, _Hit] = {}
        infos = self._infos[ls]
        if ls == "process_creation":
            idxs, payload = self._process_hits(rec)
            for i in idxs:
                found.setdefault(infos[i].id, (infos[i], rec))
            for rid, hit in payload:
                found.setdefault(rid, hit)
        else:
            for i in self._matchers[ls](rec):
                found.setdefault(infos[i].id, (infos[i], rec))
        out = [_alert(info, r, event.seq) for info, r in found.values() if info.generate]
        for info, _ in found.values():
            out.extend(_fired_alert(f, event.seq) for f in self._correlator.feed(info.id, rec, event.time_ns))
        return [
            Event(time_ns=event.time_ns, host=event.host, sandbox_id=event.sandbox_id, ctx=event.ctx, data=a)
            for a in out
        ]

    def _payload_hits(self, rec: Mapping[str, Any]) -> dict[str, _Hit]:
        """A started shell/interpreter with inline code: inspect the code as a tool call would be."""
        argv = rec.get("argv") or []
        image = rec.get("Image") or ""
        if len(argv) < 3 or not isinstance(image, str):
            return {}
        name = basename(image)
        if shell_key(name):
            if not any(a[:1] == "-" and "c" in a for a in argv[1:] if isinstance(a, str)):
                return {}
        elif interpreter_key(name) is None:
            return {}
        text = shlex.join(str(a) for a in argv)
        return dict(self._payload_cache(text))

    def _payload_uncached(self, text: str) -> tuple[tuple[str, _Hit], ...]:
        recs = records(analyze(text), {}, "shell")
        recs["process_creation"] = recs["process_creation"][1:]  # the first is this very process
        return tuple(self._hits(recs).items())
