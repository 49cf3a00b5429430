"""Loading scenario files (safe YAML; every problem names its file and line) and filling placeholders."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path

import yaml
from pydantic import ValidationError

from corral.errors import InputError, Problem
from corral.redteam._model import Scenario

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")


def builtin_scenario_dir() -> Path:
    return Path(str(resources.files("corral.data").joinpath("redteam")))


def _line_of(text: str, name: object) -> int | None:
    for i, line in enumerate(text.splitlines(), 1):
        if re.match(rf"\s*-?\s*name:\s*['\"]?{re.escape(str(name))}['\"]?\s*$", line):
            return i
    return None


def _field_line(text: str, start: int | None, key: object) -> int | None:
    """The line of ``key:`` inside the scenario starting at ``start`` (else the scenario's own line)."""
    if start is None:
        return None
    lines = text.splitlines()
    for i in range(start, len(lines)):
        if re.match(r"\s*-\s*name:", lines[i]):
            break  # the next scenario
        if re.match(rf"\s+{re.escape(str(key))}\s*:", lines[i]):
            return i + 1
    return start


def _load_file(path: Path, problems: list[Problem]) -> list[Scenario]:
    text = path.read_text("utf-8")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problems.append(Problem(f"invalid YAML: {exc}", str(path), line=mark.line + 1 if mark else None))
        return []
    items = doc.get("scenarios") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        problems.append(Problem("expected a mapping with a 'scenarios' list", str(path)))
        return []
    out: list[Scenario] = []
    for i, item in enumerate(items):
        name = item.get("name") if isinstance(item, dict) else None
        line = _line_of(text, name) if name else None
        if not isinstance(item, dict):
            problems.append(Problem("each scenario is a mapping", str(path), f"scenarios[{i}]"))
            continue
        try:
            sc = Scenario.model_validate({**item, "source": str(path), "base_dir": str(path.parent)})
        except ValidationError as exc:
            for e in exc.errors():
                loc = ".".join(str(x) for x in e["loc"])
                where = f"{name or f'scenarios[{i}]'}.{loc}"
                problems.append(Problem(e["msg"], str(path), where, _field_line(text, line, e["loc"][0])))
            continue
        for rel in sc.files.values():
            if not rel.startswith("@") and not (path.parent / rel).is_file():
                problems.append(
                    Problem(f"file {rel!r} not found next to the scenario file", str(path), sc.name, line)
                )
        out.append(sc)
    return out


def load_scenarios(dirs: Sequence[Path] | None = None, *, builtin: bool = True) -> list[Scenario]:
    """Scenarios from the built-in set (unless ``builtin=False``) and every ``*.yaml`` in ``dirs``.

    All problems are collected in one pass; any problem raises ``InputError`` listing them all.
    Names must be unique across every directory.
    """
    roots = ([builtin_scenario_dir()] if builtin else []) + [Path(d) for d in dirs or ()]
    problems: list[Problem] = []
    found: list[Scenario] = []
    for root in roots:
        if not root.is_dir():
            problems.append(Problem("scenario directory not found", str(root)))
            continue
        for path in sorted(root.glob("*.yaml")) + sorted(root.glob("*.yml")):
            found.extend(_load_file(path, problems))
    seen: dict[str, str] = {}
    for sc in found:
        if sc.name in seen:
            problems.append(
                Problem(f"duplicate scenario name (first in {seen[sc.name]})", sc.source, sc.name)
            )
        seen.setdefault(sc.name, sc.source)
    if problems:
        raise InputError("invalid red-team scenarios:\n" + "\n".join(str(p) for p in problems))
    return found


def select(scenarios: Iterable[Scenario], only: Sequence[str]) -> list[Scenario]:
    """Scenarios named in ``only`` (a name, or a category); unknown names are an error."""
    all_ = list(scenarios)
    if not only:
        return all_
    wanted = set(only)
    picked = [s for s in all_ if s.name in wanted or s.category in wanted]
    unknown = wanted - {s.name for s in all_} - {s.category for s in all_}
    if unknown:
        raise InputError(
            f"unknown scenario or category: {', '.join(sorted(unknown))} (see corral redteam --list)"
        )
    return picked


def render(text: str, values: Mapping[str, str], *, where: str) -> str:
    """Fill ``{{name}}`` placeholders; an unknown name is an error (never left for the shell)."""

    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in values:
            raise InputError(
                f"{where}: unknown placeholder {{{{{key}}}}}; known: {', '.join(sorted(values))}"
            )
        return values[key]

    return _PLACEHOLDER.sub(sub, text)
