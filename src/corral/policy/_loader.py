"""YAML loading that keeps line numbers, so every error names file, key path and line.

Policy files may come from anyone, so the loader has budgets and refuses instead of crashing.
It builds plain Python values straight from the parser's events, without recursion:

- only plain YAML types: a tag that constructs objects is refused, never run;
- at most ``MAX_POLICY_BYTES`` of text, nesting at most ``MAX_DEPTH`` deep and at most
  ``MAX_NODES`` values counted with every alias expanded: an alias bomb ("billion laughs")
  stops at the budget, in milliseconds, because an alias shares the anchored value instead of
  copying it; an alias inside its own anchor is an error;
- scalars read by their tag without raising: ``!!int x``, an integer of 5,000 digits or
  ``!!bool maybe`` are problems reported like any other; plain dates, ``<<`` and ``=`` stay
  strings (no timestamps, merge keys or value keys).

Whatever the input, the result is a ``Policy`` or a ``PolicyError``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError

from corral.errors import PolicyError, Problem
from corral.policy._model import Policy

MAX_POLICY_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_NODES = 20_000

Loc = tuple[str | int, ...]
_YAML = "tag:yaml.org,2002:"
_STR, _NULL, _BOOL, _INT, _FLOAT = (f"{_YAML}{t}" for t in ("str", "null", "bool", "int", "float"))
_MAP, _SEQ = f"{_YAML}map", f"{_YAML}seq"
_SCALAR_TAGS = {"!", _STR, _NULL, _BOOL, _INT, _FLOAT}
_NULLS = {"", "~", "null", "Null", "NULL"}
# Newer libyaml refuses deep nesting itself, and its scanner looks ahead over a whole flow
# collection, so its refusal can come before our own depth check sees the 65th level.
_LIBYAML_TOO_DEEP = "exceeded maximum nesting depth"
_KIND = {_INT: "an integer", _FLOAT: "a number", _BOOL: "a boolean (true or false)", _NULL: "null"}


class _Resolver(yaml.resolver.Resolver):
    """YAML 1.1 implicit types, less timestamps, merge keys and value keys."""

    yaml_implicit_resolvers = {  # noqa: RUF012  (PyYAML's class-level table)
        first: [(tag, rx) for tag, rx in resolvers if tag in (_BOOL, _INT, _FLOAT, _NULL)]
        for first, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
    }


class _Budget(Exception):
    """The input went over a budget; loading stops with this one problem."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


class _PyParser(yaml.SafeLoader):
    """The pure-Python parser, used only where PyYAML was built without libyaml."""

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        # This scanner looks ahead over every '[' that may start a key, in quadratic time: stop
        # at the depth limit before it reads the rest.
        if self.flow_level >= MAX_DEPTH:
            raise _Budget(f"nested deeper than {MAX_DEPTH} levels", self.get_mark().line + 1)
        super().fetch_flow_collection_start(TokenClass)


def _events(text: str, libyaml: bool = yaml.__with_libyaml__) -> Iterator[yaml.Event]:
    parser = yaml.CSafeLoader(text) if libyaml else _PyParser(text)
    try:
        while parser.check_event():
            ev = parser.get_event()
            if ev is not None:
                yield ev
    finally:
        parser.dispose()


@dataclass
class _Frame:
    """A collection being built. ``skip`` frames swallow a refused subtree."""

    kind: Literal["map", "seq", "skip"]
    value: Any
    loc: Loc
    anchor: str | None
    size: int = 1  # values in this subtree, aliases expanded
    height: int = 1  # collections nested in this subtree, itself included
    open: int = 1  # skip frames: starts minus ends seen
    want_key: bool = True  # map frames: the next node is a key
    key: str | None = None  # map frames: where the value goes; None drops it (a bad key)
    is_key: bool = False  # skip frames: the refused subtree is a mapping key


@dataclass
class _Builder:
    """Turns parser events into plain values, recording the line of every key path."""

    src: str
    problems: list[Problem] = field(default_factory=list)
    lines: dict[Loc, int] = field(default_factory=dict)
    bad: set[Loc] = field(default_factory=set)  # where a problem was reported
    root: Any = None
    _stack: list[_Frame] = field(default_factory=list)
    _anchors: dict[str, tuple[Any, int, int]] = field(default_factory=dict)  # value, size, height
    _open_anchors: set[str] = field(default_factory=set)
    _nodes: int = 0
    _documents: int = 0
    _resolver: _Resolver = field(default_factory=_Resolver)
    _constructor: yaml.constructor.SafeConstructor = field(default_factory=yaml.constructor.SafeConstructor)

    def problem(self, message: str, loc: Loc, line: int | None) -> None:
        self.problems.append(Problem(message, self.src, _dotted(loc), line))
        self.bad.add(loc)

    @property
    def empty(self) -> bool:
        """The document held no value at all (an empty file gives the defaults)."""
        return self._nodes == 0

    def reported(self, loc: Loc) -> bool:
        return any(loc[:n] in self.bad for n in range(len(loc), -1, -1))

    def feed(self, ev: yaml.Event) -> None:
        line = _line(ev)
        if isinstance(ev, yaml.StreamStartEvent | yaml.StreamEndEvent | yaml.DocumentEndEvent):
            return
        if isinstance(ev, yaml.DocumentStartEvent):
            self._documents += 1
            if self._documents > 1:
                raise _Budget("a policy is one YAML document; another one starts here", line)
            return
        top = self._stack[-1] if self._stack else None
        if top is not None and top.kind == "skip":
            self._skip(top, ev)
            return
        if top is not None and top.kind == "map" and top.want_key:
            self._key(top, ev, line)
            return
        if isinstance(ev, yaml.CollectionEndEvent):
            assert top is not None  # the parser pairs starts and ends
            self._stack.pop()
            self._deliver(top.value, top.size, top.height, top.anchor)
            return
        loc = self._child_loc(top)
        self.lines.setdefault(loc, line)  # a map value keeps its key's line
        self._count(1, line)
        if isinstance(ev, yaml.ScalarEvent):
            self._deliver(self._scalar(ev, loc, line), 1, 0, ev.anchor)
        elif isinstance(ev, yaml.AliasEvent):
            self._alias(ev, loc, line)
        elif isinstance(ev, yaml.CollectionStartEvent):
            self._start(ev, loc, line)

    def _child_loc(self, top: _Frame | None) -> Loc:
        if top is None:
            return ()
        if top.kind == "seq":
            return (*top.loc, len(top.value))
        return (*top.loc, top.key if top.key is not None else "?")

    def _count(self, n: int, line: int) -> None:
        self._nodes += n
        if self._nodes > MAX_NODES:
            raise _Budget(f"more than {MAX_NODES} values, counting each alias at its full size", line)

    def _start(self, ev: yaml.CollectionStartEvent, loc: Loc, line: int) -> None:
        if len(self._stack) >= MAX_DEPTH:
            raise _Budget(f"nested deeper than {MAX_DEPTH} levels", line)
        is_map = isinstance(ev, yaml.MappingStartEvent)
        if ev.tag not in (None, "!", _MAP if is_map else _SEQ):
            self.problem(f"YAML tag {_short(ev.tag)} is not allowed here", loc, line)
            self._stack.append(_Frame("skip", None, loc, None))
            return
        if ev.anchor is not None:
            self._open_anchors.add(ev.anchor)
        value: Any = {} if is_map else []
        self._stack.append(_Frame("map" if is_map else "seq", value, loc, ev.anchor))

    def _skip(self, top: _Frame, ev: yaml.Event) -> None:
        if isinstance(ev, yaml.CollectionStartEvent):
            top.open += 1
            if len(self._stack) - 1 + top.open > MAX_DEPTH:
                raise _Budget(f"nested deeper than {MAX_DEPTH} levels", _line(ev))
        elif isinstance(ev, yaml.CollectionEndEvent):
            top.open -= 1
        if top.open > 0:
            return
        self._stack.pop()
        parent = self._stack[-1] if self._stack else None
        if top.is_key and parent is not None:  # a refused key: drop the value that follows it too
            parent.want_key = False
            parent.key = None
        else:
            self._deliver(None, 1, 0, None)

    def _key(self, top: _Frame, ev: yaml.Event, line: int) -> None:
        if isinstance(ev, yaml.MappingEndEvent):
            self._stack.pop()
            self._deliver(top.value, top.size, top.height, top.anchor)
            return
        top.want_key = False
        top.key = None
        if isinstance(ev, yaml.CollectionStartEvent):
            self.problem("mapping keys must be plain strings", top.loc, line)
            self._stack.append(_Frame("skip", None, top.loc, None, is_key=True))
            return
        if not isinstance(ev, yaml.ScalarEvent) or _scalar_tag(self._resolver, ev) not in _SCALAR_TAGS:
            self.problem("mapping keys must be plain strings", top.loc, line)
            return
        key = ev.value
        loc = (*top.loc, key)
        if key == "<<" and ev.implicit[0]:  # plain, not quoted
            self.problem("YAML merge keys (<<) are not supported: write the keys out", loc, line)
        elif key in top.value:
            self.problem(f"duplicate key {_preview(key)}", loc, line)
        else:
            top.key = key
            self.lines[loc] = line

    def _alias(self, ev: yaml.AliasEvent, loc: Loc, line: int) -> None:
        name = ev.anchor
        if name in self._open_anchors:
            self.problem("recursive YAML alias: a value contains itself", loc, line)
            self._deliver(None, 1, 0, None)
            return
        if name not in self._anchors:
            self.problem(f"YAML alias *{name} has no anchor &{name} before it", loc, line)
            self._deliver(None, 1, 0, None)
            return
        value, size, height = self._anchors[name]
        self._count(size - 1, line)
        if len(self._stack) + height > MAX_DEPTH:
            raise _Budget(f"nested deeper than {MAX_DEPTH} levels, aliases expanded", line)
        self._deliver(value, size, height, None)

    def _deliver(self, value: Any, size: int, height: int, anchor: str | None) -> None:
        if anchor is not None:
            self._open_anchors.discard(anchor)
            self._anchors[anchor] = (value, size, height)
        if not self._stack:
            self.root = value
            return
        top = self._stack[-1]
        top.size += size
        top.height = max(top.height, height + 1)
        if top.kind == "seq":
            top.value.append(value)
        elif top.kind == "map":
            if top.key is not None:
                top.value[top.key] = value
            top.want_key = True
            top.key = None

    def _scalar(self, ev: yaml.ScalarEvent, loc: Loc, line: int) -> Any:
        tag, value = _scalar_tag(self._resolver, ev), ev.value
        if tag in ("!", _STR):
            return value
        if tag not in _SCALAR_TAGS:
            self.problem(f"YAML tag {_short(tag)} is not allowed", loc, line)
            return None
        if tag == _NULL:
            if value in _NULLS:
                return None
        elif tag == _BOOL:
            found = self._constructor.bool_values.get(value.lower())
            if found is not None:
                return found
        else:
            node = yaml.ScalarNode(tag, value)
            try:  # PyYAML's own readers, which raise ValueError, IndexError, ... on bad text
                if tag == _INT:
                    return self._constructor.construct_yaml_int(node)
                return self._constructor.construct_yaml_float(node)
            except Exception:  # any failure to read a scalar is the file's problem, reported below
                pass
        extra = " (too many digits)" if tag == _INT and len(value) > 4300 else ""
        self.problem(f"{_preview(value)} is not {_KIND[tag]}{extra}", loc, line)
        return None


def _scalar_tag(resolver: _Resolver, ev: yaml.ScalarEvent) -> str:
    if ev.tag is None:
        return str(resolver.resolve(yaml.ScalarNode, ev.value, ev.implicit))  # type: ignore[no-untyped-call]
    return str(ev.tag)


def _line(ev: yaml.Event) -> int:
    return ev.start_mark.line + 1 if ev.start_mark is not None else 0


def _short(tag: str | None) -> str:
    tag = tag or "?"
    return "!!" + tag[len(_YAML) :] if tag.startswith(_YAML) else tag


def _preview(value: str, width: int = 40) -> str:
    return repr(value if len(value) <= width else value[:width] + "...")


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_for(loc: Loc, lines: dict[Loc, int]) -> int | None:
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def _parse(text: str, source: str, libyaml: bool) -> _Builder:
    builder = _Builder(source)
    try:
        for ev in _events(text, libyaml):
            builder.feed(ev)
    except _Budget as exc:
        raise PolicyError([Problem(str(exc), source, None, exc.line)]) from None
    except yaml.reader.ReaderError as exc:
        at = text.count("\n", 0, exc.position) + 1
        char = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "\0")
        msg = f"not valid YAML: character #x{char:04x} is not allowed"
        raise PolicyError([Problem(msg, source, None, at)]) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        if problem == _LIBYAML_TOO_DEEP:  # libyaml's own depth limit is larger than ours
            problem = f"nested deeper than {MAX_DEPTH} levels"
            raise PolicyError([Problem(problem, source, None, line)]) from None
        raise PolicyError([Problem(f"not valid YAML: {problem}", source, None, line)]) from exc
    except UnicodeError as exc:
        raise PolicyError([Problem("not valid text (not encodable as UTF-8)", source)]) from exc
    return builder


def load_policy_text(text: str, source: str = "<string>", *, libyaml: bool = yaml.__with_libyaml__) -> Policy:
    """The policy in ``text``; PolicyError naming ``source``, key path and line otherwise."""
    if len(text) > MAX_POLICY_BYTES:
        raise PolicyError([Problem(f"policy is larger than {MAX_POLICY_BYTES} bytes", source)])
    builder = _parse(text, source, libyaml)
    problems, lines = builder.problems, builder.lines
    data: Any = {} if builder.empty else builder.root
    if not isinstance(data, dict):
        problems.append(Problem("a policy must be a mapping of sections", source, None, lines.get(())))
        raise PolicyError(problems)
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            if builder.reported(loc):
                continue  # the loader already said what is wrong there
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            problems.append(Problem(msg, source, _dotted(loc), _line_for(loc, lines)))
    if problems:
        raise PolicyError(problems)
    return policy


def load_policy_file(path: str | Path) -> Policy:
    p = Path(path)
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_POLICY_BYTES + 1)  # never more: the path may be /dev/zero or a huge file
    except FileNotFoundError as exc:
        raise PolicyError([Problem("policy file not found", str(p))]) from exc
    except IsADirectoryError as exc:
        raise PolicyError([Problem("is a directory, not a policy file", str(p))]) from exc
    except OSError as exc:
        raise PolicyError([Problem(f"cannot read policy file: {exc.strerror or exc}", str(p))]) from exc
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyError([Problem(f"policy file is larger than {MAX_POLICY_BYTES} bytes", str(p))])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise PolicyError([Problem("not UTF-8 text", str(p), None, line)]) from exc
    return load_policy_text(text, str(p))
