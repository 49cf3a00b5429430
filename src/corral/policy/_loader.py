"""YAML loading that keeps line numbers, so every error names file, key path and line.

Only the safe YAML loader is used: tags that construct objects are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from corral.errors import PolicyError, Problem
from corral.policy._model import Policy

Loc = tuple[str | int, ...]
_PLAIN_TAGS = {"!"} | {
    f"tag:yaml.org,2002:{t}" for t in ("map", "seq", "str", "int", "float", "bool", "null")
}


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys."""


def _build(node: yaml.Node, loc: Loc, lines: dict[Loc, int], problems: list[Problem], src: str) -> Any:
    lines[loc] = node.start_mark.line + 1
    if node.tag not in _PLAIN_TAGS:
        # Only plain YAML types: a tag that constructs objects is refused, never run.
        problems.append(Problem(f"YAML tag {node.tag} is not allowed", src, _dotted(loc), lines[loc]))
        return None
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if not isinstance(key_node, yaml.ScalarNode):
                problems.append(Problem("mapping keys must be plain strings", src, _dotted(loc), lines[loc]))
                continue
            if key in out:
                problems.append(
                    Problem(f"duplicate key {key!r}", src, _dotted((*loc, key)), key_node.start_mark.line + 1)
                )
                continue
            out[key] = _build(value_node, (*loc, key), lines, problems, src)
            lines[(*loc, key)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(v, (*loc, i), lines, problems, src) for i, v in enumerate(node.value)]
    if isinstance(node, yaml.ScalarNode):
        return _LineLoader("").construct_object(node)
    problems.append(Problem("unsupported YAML node", src, _dotted(loc), lines[loc]))
    return None


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


def load_policy_text(text: str, source: str = "<string>") -> Policy:
    problems: list[Problem] = []
    try:
        root = yaml.compose(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise PolicyError(
            [Problem(f"not valid YAML: {getattr(exc, 'problem', exc)}", source, None, line)]
        ) from exc
    lines: dict[Loc, int] = {}
    data: Any = {} if root is None else _build(root, (), lines, problems, source)
    if not isinstance(data, dict):
        raise PolicyError([Problem("a policy must be a mapping of sections", source, None, lines.get(()))])
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
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
        text = p.read_text("utf-8")
    except FileNotFoundError as exc:
        raise PolicyError([Problem("policy file not found", str(p))]) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError([Problem(f"cannot read policy file: {exc}", str(p))]) from exc
    return load_policy_text(text, str(p))
